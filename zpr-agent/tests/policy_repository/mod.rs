//! Policy repositories for the tests that run `zpr diff` and `zpr check`:
//! fresh directories holding Oracle's three-tier example (or a change to
//! it), removed on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const POLICY: &str = "three-tier.zpr";
pub const INVENTORY: &str = "inventory.yaml";

/// A file of examples/three-tier.
pub fn example(file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/three-tier")
            .join(file),
    )
    .unwrap()
}

/// The example's (policy, inventory).
pub fn three_tier() -> (String, String) {
    (example(POLICY), example(INVENTORY))
}

/// A fresh directory for one test's repositories, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let directory = std::env::temp_dir().join(format!(
            "zpr-repositories-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&directory).unwrap();
        Scratch(directory)
    }

    /// A repository named `name` holding `(policy, inventory)`.
    pub fn repository(&self, name: &str, (policy, inventory): &(String, String)) -> PathBuf {
        let directory = self.0.join(name);
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::write(directory.join(POLICY), policy).unwrap();
        std::fs::write(directory.join(INVENTORY), inventory).unwrap();
        directory
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
