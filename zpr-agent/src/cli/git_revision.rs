//! A directory's files as of a git revision, read straight from git's
//! objects (`git ls-tree -z`, `git cat-file --batch`): nothing is written
//! to disk, so nothing planted there (a predictable temporary directory, a
//! symlink in it) can change what is read, and `-z` keeps names as they
//! are (git would quote `café.zpr` and end a name at a newline).

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::inputs::text::MAX_INPUT_BYTES;

/// The files directly in `directory` at `revision` whose names are
/// `wanted`, with their contents, in git's order. A symlink among them is
/// read as the file beside it that it names, as in a working tree under
/// review; one that leads anywhere else is an error naming it.
pub fn files_at(
    revision: &str,
    directory: &Path,
    wanted: impl Fn(&Path) -> bool,
) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    if revision.starts_with('-') {
        bail!("{revision}: a git revision does not start with '-'");
    }
    let listed = list(revision, directory)?;
    let chosen: Vec<&Entry> = listed.iter().filter(|entry| wanted(&entry.name)).collect();
    let links: Vec<&str> = chosen
        .iter()
        .filter(|entry| entry.kind == Kind::Symlink)
        .map(|entry| entry.object.as_str())
        .collect();
    let mut targets = blobs(directory, &links)?.into_iter();
    let files = chosen
        .iter()
        .map(|entry| {
            let file = match entry.kind {
                Kind::File => Some(*entry),
                Kind::Symlink => targets
                    .next()
                    .and_then(|target| file_beside(&target, &listed)),
                Kind::Other => None,
            };
            file.map(|file| file.object.as_str()).with_context(|| {
                format!(
                    "{}: not a file, nor a symlink to a file beside it (a symlink in a base \
                     revision is followed only to such a file)",
                    origin(revision, directory, &entry.name)
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let contents = blobs(directory, &files)?;
    Ok(chosen
        .into_iter()
        .map(|entry| entry.name.clone())
        .zip(contents)
        .collect())
}

/// How a file at a revision is named in messages: `REV:PATH`, as git
/// names it.
pub fn origin(revision: &str, directory: &Path, name: &Path) -> String {
    format!("{revision}:{}", directory.join(name).display())
}

/// One entry of a git tree: a file, a symlink (its blob holds where it
/// points) or something else (a directory, a submodule).
struct Entry {
    name: PathBuf,
    kind: Kind,
    object: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    File,
    Symlink,
    Other,
}

/// The file a symlink pointing at `target` leads to when it is one beside
/// it (`name` or `./name`).
fn file_beside<'a>(target: &[u8], listed: &'a [Entry]) -> Option<&'a Entry> {
    let target = Path::new(OsStr::from_bytes(target));
    let beside = target.strip_prefix("./").unwrap_or(target);
    if beside.components().count() != 1 {
        return None;
    }
    listed
        .iter()
        .find(|entry| entry.name == beside && entry.kind == Kind::File)
}

/// The entries directly in `directory` at `revision`.
fn list(revision: &str, directory: &Path) -> anyhow::Result<Vec<Entry>> {
    let listing = git(directory, &["ls-tree", "-z", revision, "--", "."], "")?;
    let malformed = || anyhow::anyhow!("git ls-tree printed an entry zpr cannot read");
    listing
        .split(|&byte| byte == 0)
        .filter(|record| !record.is_empty())
        .map(|record| {
            // "MODE TYPE OBJECT\tNAME"
            let tab = record
                .iter()
                .position(|&b| b == b'\t')
                .ok_or_else(malformed)?;
            let header = std::str::from_utf8(&record[..tab]).map_err(|_| malformed())?;
            let [mode, kind, object] = header.split(' ').collect::<Vec<_>>()[..] else {
                return Err(malformed());
            };
            let kind = match (mode, kind) {
                ("120000", _) => Kind::Symlink,
                (_, "blob") => Kind::File,
                _ => Kind::Other,
            };
            Ok(Entry {
                name: PathBuf::from(OsStr::from_bytes(&record[tab + 1..])),
                kind,
                object: object.to_owned(),
            })
        })
        .collect()
}

/// The contents of the blobs `objects`, in order, all from one `git
/// cat-file --batch`.
fn blobs(directory: &Path, objects: &[&str]) -> anyhow::Result<Vec<Vec<u8>>> {
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let input: String = objects.iter().map(|object| format!("{object}\n")).collect();
    let mut output = &git(directory, &["cat-file", "--batch"], &input)?[..];
    let mut blobs = Vec::new();
    let malformed = || anyhow::anyhow!("git cat-file printed something zpr cannot read");
    while !output.is_empty() {
        // "OBJECT TYPE SIZE\n" then the content and a newline.
        let end = output
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(malformed)?;
        let header = std::str::from_utf8(&output[..end]).map_err(|_| malformed())?;
        let size: u64 = match header.split(' ').collect::<Vec<_>>()[..] {
            [_, "blob", size] => size.parse().map_err(|_| malformed())?,
            _ => bail!("git cat-file: {header}"),
        };
        if size > MAX_INPUT_BYTES {
            bail!(
                "a file of the base revision is larger than {} MiB, the most zpr reads",
                MAX_INPUT_BYTES >> 20
            );
        }
        let start = end + 1;
        let stop = start + size as usize;
        blobs.push(output.get(start..stop).ok_or_else(malformed)?.to_vec());
        output = output.get(stop + 1..).ok_or_else(malformed)?;
    }
    Ok(blobs)
}

/// What `git -C directory ARGUMENTS` prints, given `input`.
fn git(directory: &Path, arguments: &[&str], input: &str) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(directory)
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running git")?;
    let mut stdin = child.stdin.take().context("git's input")?;
    // Written beside the reading: git answers before it has read all.
    let output = std::thread::scope(|scope| {
        scope.spawn(move || stdin.write_all(input.as_bytes()));
        child.wait_with_output()
    })
    .context("running git")?;
    if !output.status.success() {
        bail!(
            "git {}: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}
