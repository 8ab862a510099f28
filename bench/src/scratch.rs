//! A private temporary directory, removed with everything in it on drop.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("zpr-bench-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `text` at `name` atomically (a rename, as editors do), so a
    /// watcher never reads half a file.
    pub fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, text)
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("replacing {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: removing {}: {err}", self.dir.display());
        }
    }
}
