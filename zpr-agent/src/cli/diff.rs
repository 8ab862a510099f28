//! `zpr diff`: before a change goes live, exactly which paths it opens and
//! closes. Exit 0 when nothing changes, 2 when something does, 1 on error
//! (like `terraform plan -detailed-exitcode`), so CI can gate on it.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context as _, bail};

use super::Output;
use super::agent_paths::AgentPaths;
use super::diff_live::revoked_flows;
use super::input_files::{InputFiles, reported};
use crate::compile::Report;
use crate::compile::{Tables, compile_pair, diff};
use crate::inputs::text::{MAX_INPUT_BYTES, text_of};
use crate::inputs::{Checker, InputText, Inputs};
use crate::lang::policy_name_from_path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The policy repository before the change: a directory holding
    /// `inventory.yaml` and the `*.zpr` files (with --base: the directory
    /// to compare, default `.`).
    #[arg(value_name = "OLD")]
    pub old: Option<PathBuf>,
    /// The policy repository after the change.
    #[arg(value_name = "NEW")]
    pub new: Option<PathBuf>,
    /// Compare the working tree's directory against this git revision of it.
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Also list the connections in the live conntrack tables that the
    /// change would cut when applied (root; the agent's paths below).
    #[arg(long)]
    pub live: bool,
    #[command(flatten)]
    pub paths: AgentPaths,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

const NOTHING_CHANGES: u8 = 0;
const ERROR: u8 = 1;
const SOMETHING_CHANGES: u8 = 2;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match compare(&args) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(error) => {
            eprintln!("zpr diff: {error:#}");
            Ok(ExitCode::from(ERROR))
        }
    }
}

fn compare(args: &Args) -> anyhow::Result<u8> {
    // One checker for both sides, as the agent checks (its Plans hold the
    // tables of the endpoints with an interface, whose fit it counts):
    // NEW parses only the statements and the inventory that differ from
    // OLD's, and compiles from OLD's Plan.
    // Both sides are trees under review: their symlinks must stay inside.
    let mut checker = Checker::remembering(Tables::Local).within_their_directories();
    let (old, new) = match (&args.base, &args.old, &args.new) {
        (Some(revision), directory, None) => {
            let directory = directory.clone().unwrap_or_else(|| PathBuf::from("."));
            (
                load_revision(revision, &directory, &mut checker)?,
                load(&directory, &mut checker)?,
            )
        }
        (None, Some(old), Some(new)) => (load(old, &mut checker)?, load(new, &mut checker)?),
        (Some(_), _, Some(_)) => bail!("--base REV takes one directory, not two"),
        (None, _, _) => bail!("give two directories, OLD and NEW, or --base REV [DIR]"),
    };
    let (Some(old), Some(new)) = (old, new) else {
        // The checker has printed the problems.
        return Ok(ERROR);
    };
    let [before, after] = compile_pair(
        (&old.policies, &old.inventory),
        (&new.policies, &new.inventory),
    );
    let mut report = Report::new(&diff(&before, &after));
    if args.live {
        report.revoked = Some(revoked_flows(
            &args.paths.pins(),
            &args.paths.run_dir,
            &old,
            &new,
        )?);
    }
    let mut stdout = std::io::stdout().lock();
    match args.output {
        Output::Text => write!(stdout, "{report}")?,
        Output::Json => {
            serde_json::to_writer_pretty(&mut stdout, &report)?;
            writeln!(stdout)?;
        }
    }
    let code = if report.is_empty() {
        NOTHING_CHANGES
    } else {
        SOMETHING_CHANGES
    };
    // The process ends here: freeing two Plans and the checker's memory, a
    // few million small allocations at size, would only delay the answer.
    std::mem::forget((checker, old, new, before, after));
    Ok(code)
}

/// A policy repository's inputs, checked by the one checker.
fn load(directory: &Path, checker: &mut Checker) -> anyhow::Result<Option<Inputs>> {
    let mut policies: Vec<PathBuf> = std::fs::read_dir(directory)
        .with_context(|| format!("reading {}", directory.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", directory.display()))?;
    policies.retain(|path| is_policy(path));
    policies.sort();
    if policies.is_empty() {
        bail!("{} holds no *.zpr files", directory.display());
    }
    InputFiles {
        inventory: directory.join(INVENTORY),
        policies,
    }
    .load_with(checker)
}

const INVENTORY: &str = "inventory.yaml";

fn is_policy(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "zpr")
}

/// A policy repository's inputs as of a git revision, read from git's
/// objects and checked by the one checker. Nothing is written to disk, so
/// nothing planted there (in a temporary directory, say) can change what
/// is read.
fn load_revision(
    revision: &str,
    directory: &Path,
    checker: &mut Checker,
) -> anyhow::Result<Option<Inputs>> {
    if revision.starts_with('-') {
        bail!("--base {revision}: a git revision does not start with '-'");
    }
    let entries = revision_entries(revision, directory)?;
    let origin = |name: &Path| format!("{revision}:{}", directory.join(name).display());
    let text = |entry: &TreeEntry, what: &str| -> anyhow::Result<String> {
        let content = content(entry, &entries, &origin(&entry.name))?;
        text_of(content.to_vec(), &origin(&entry.name), what)
    };
    let Some(inventory) = entries.iter().find(|entry| entry.name == Path::new(INVENTORY)) else {
        bail!("{} does not exist", origin(Path::new(INVENTORY)));
    };
    let inventory = InputText::inventory(origin(&inventory.name), text(inventory, "inventory")?);
    let policies = entries
        .iter()
        .filter(|entry| is_policy(&entry.name))
        .map(|entry| {
            Ok(InputText::policy(
                origin(&entry.name),
                policy_name_from_path(&entry.name),
                text(entry, "policy")?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if policies.is_empty() {
        bail!("{} holds no *.zpr files", origin(Path::new("")));
    }
    reported(checker.check(Some(&inventory), &policies))
}

/// One entry of a git tree: a file, a symlink (its content is where it
/// points) or something else (a directory, a submodule).
struct TreeEntry {
    name: PathBuf,
    kind: EntryKind,
    content: Vec<u8>,
}

#[derive(PartialEq)]
enum EntryKind {
    File,
    Symlink,
    Other,
}

/// What a tree entry holds: a file's content, or that of the file a
/// symlink names beside it. A symlink is followed within the directory
/// only, as in the working tree.
fn content<'a>(
    entry: &'a TreeEntry,
    entries: &'a [TreeEntry],
    origin: &str,
) -> anyhow::Result<&'a [u8]> {
    let target = match entry.kind {
        EntryKind::File => return Ok(&entry.content),
        EntryKind::Other => bail!("{origin} is not a file"),
        EntryKind::Symlink => Path::new(OsStr::from_bytes(&entry.content)),
    };
    let beside = target.strip_prefix("./").unwrap_or(target);
    match entries.iter().find(|other| other.name == beside) {
        Some(file) if beside.components().count() == 1 && file.kind == EntryKind::File => {
            Ok(&file.content)
        }
        _ => bail!(
            "{origin} is a symlink to something other than a file beside it; zpr diff --base \
             follows a symlink only to a file in the same directory"
        ),
    }
}

/// The entries of `directory` at `revision` that zpr reads: the inventory
/// and the policies, with their contents. `-z` keeps names as they are
/// (git quotes others, such as `café.zpr`, and ends them at a newline).
fn revision_entries(revision: &str, directory: &Path) -> anyhow::Result<Vec<TreeEntry>> {
    let listing = git(directory, &["ls-tree", "-z", revision, "--", "."], None)?;
    let mut entries = Vec::new();
    let mut objects = String::new();
    for record in listing.split(|&byte| byte == 0).filter(|r| !r.is_empty()) {
        let malformed = || anyhow::anyhow!("git ls-tree printed an entry zpr cannot read");
        let tab = record.iter().position(|&b| b == b'\t').ok_or_else(malformed)?;
        let header = std::str::from_utf8(&record[..tab]).map_err(|_| malformed())?;
        let name = PathBuf::from(OsStr::from_bytes(&record[tab + 1..]));
        let [mode, kind, object] = header.split(' ').collect::<Vec<_>>()[..] else {
            return Err(malformed());
        };
        if name != Path::new(INVENTORY) && !is_policy(&name) {
            continue;
        }
        let kind = match (mode, kind) {
            ("120000", _) => EntryKind::Symlink,
            (_, "blob") => EntryKind::File,
            _ => EntryKind::Other,
        };
        if kind != EntryKind::Other {
            objects += object;
            objects.push('\n');
        }
        entries.push((name, kind));
    }
    let mut contents = blobs(directory, &objects)?.into_iter();
    entries
        .into_iter()
        .map(|(name, kind)| {
            let content = match kind {
                EntryKind::Other => Vec::new(),
                _ => contents.next().context("git cat-file printed too few objects")?,
            };
            Ok(TreeEntry {
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
    let mut output = &git(directory, &["cat-file", "--batch"], Some(objects))?[..];
    let mut blobs = Vec::new();
    while !output.is_empty() {
        let malformed = || anyhow::anyhow!("git cat-file printed something zpr cannot read");
        let end = output.iter().position(|&b| b == b'\n').ok_or_else(malformed)?;
        let header = std::str::from_utf8(&output[..end]).map_err(|_| malformed())?;
        let size: u64 = match header.split(' ').collect::<Vec<_>>()[..] {
            [_, "blob", size] => size.parse().map_err(|_| malformed())?,
            _ => bail!("git cat-file: {header}"),
        };
        if size > MAX_INPUT_BYTES {
            bail!(
                "a file at the base revision is larger than {} MiB, the most zpr reads",
                MAX_INPUT_BYTES >> 20
            );
        }
        let start = end + 1;
        let stop = start + size as usize;
        blobs.push(output.get(start..stop).ok_or_else(malformed)?.to_vec());
        // Each object's content ends with a newline of git's own.
        output = output.get(stop + 1..).ok_or_else(malformed)?;
    }
    Ok(blobs)
}

/// What `git -C directory ARGUMENTS` prints, given `input`.
fn git(directory: &Path, arguments: &[&str], input: Option<&str>) -> anyhow::Result<Vec<u8>> {
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
    let input = input.unwrap_or_default();
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
