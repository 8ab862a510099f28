//! Ctrl-C and SIGTERM: noted, not fatal, so the run stops at the next
//! checkpoint and unwinds through every guard (namespaces, rules, the
//! agent, pins, scratch files). Children in the foreground process group
//! (iperf3, the agent) get the signal too and end their part early.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::bail;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { libc::signal(signal, note as *const () as libc::sighandler_t) };
    }
}

/// Fails once a stop was asked for.
pub fn checkpoint() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted; cleaning up");
    }
    Ok(())
}
