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
/// read as the wanted file beside it that it names, as in a working tree
/// under review; one that leads anywhere else is an error naming it.
pub fn files_at(
    revision: &str,
    directory: &Path,
    wanted: impl Fn(&Path) -> bool,
) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    if revision.starts_with('-') {
        bail!("{revision}: a git revision does not start with '-'");
    }
    let entries = entries(revision, directory, wanted)?;
    entries
        .iter()
        .map(|entry| {
            let named = origin(revision, directory, &entry.name);
            let content = content(entry, &entries).with_context(|| named)?;
            Ok((entry.name.clone(), content.to_vec()))
        })
        .collect()
}

/// How a file at a revision is named in messages: `REV:PATH`, as git
/// names it.
pub fn origin(revision: &str, directory: &Path, name: &Path) -> String {
    format!("{revision}:{}", directory.join(name).display())
}

/// One entry of a git tree: a file, a symlink (its content is where it
/// points) or something else (a directory, a submodule).
struct Entry {
    name: PathBuf,
    kind: Kind,
    content: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    File,
    Symlink,
    Other,
}

/// What a tree entry holds: a file's content, or that of the file a
/// symlink names beside it.
fn content<'a>(entry: &'a Entry, entries: &'a [Entry]) -> anyhow::Result<&'a [u8]> {
    let target = match entry.kind {
        Kind::File => return Ok(&entry.content),
        Kind::Other => bail!("not a file"),
        Kind::Symlink => Path::new(OsStr::from_bytes(&entry.content)),
    };
    let beside = target.strip_prefix("./").unwrap_or(target);
    match entries.iter().find(|other| other.name == beside) {
        Some(file) if beside.components().count() == 1 && file.kind == Kind::File => {
            Ok(&file.content)
        }
        _ => bail!(
            "a symlink to something other than an input file beside it; a symlink in a base \
             revision is followed only to such a file"
        ),
    }
}

/// The wanted entries of `directory` at `revision`, with their contents.
fn entries(
    revision: &str,
    directory: &Path,
    wanted: impl Fn(&Path) -> bool,
) -> anyhow::Result<Vec<Entry>> {
    let listing = git(directory, &["ls-tree", "-z", revision, "--", "."], "")?;
    let mut listed = Vec::new();
    let mut objects = String::new();
    let malformed = || anyhow::anyhow!("git ls-tree printed an entry zpr cannot read");
    for record in listing.split(|&byte| byte == 0).filter(|r| !r.is_empty()) {
        // "MODE TYPE OBJECT\tNAME"
        let tab = record.iter().position(|&b| b == b'\t').ok_or_else(malformed)?;
        let name = PathBuf::from(OsStr::from_bytes(&record[tab + 1..]));
        let header = std::str::from_utf8(&record[..tab]).map_err(|_| malformed())?;
        let [mode, kind, object] = header.split(' ').collect::<Vec<_>>()[..] else {
            return Err(malformed());
        };
        if !wanted(&name) {
            continue;
        }
        let kind = match (mode, kind) {
            ("120000", _) => Kind::Symlink,
            (_, "blob") => Kind::File,
            _ => Kind::Other,
        };
        if kind != Kind::Other {
            objects += object;
            objects.push('\n');
        }
        listed.push((name, kind));
    }
    let mut contents = blobs(directory, &objects)?.into_iter();
    listed
        .into_iter()
        .map(|(name, kind)| {
            let content = match kind {
                Kind::Other => Vec::new(),
                _ => contents
                    .next()
                    .context("git cat-file printed too few objects")?,
            };
            Ok(Entry {
                name,
                kind,
                content,
            })
        })
        .collect()
}

/// The contents of the blobs named one a line in `objects`, in order, all
/// from one `git cat-file --batch`.
fn blobs(directory: &Path, objects: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut output = &git(directory, &["cat-file", "--batch"], objects)?[..];
    let mut blobs = Vec::new();
    let malformed = || anyhow::anyhow!("git cat-file printed something zpr cannot read");
    while !output.is_empty() {
        // "OBJECT TYPE SIZE\n" then the content and a newline.
        let end = output.iter().position(|&b| b == b'\n').ok_or_else(malformed)?;
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
