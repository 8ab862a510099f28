//! Pinning the calling thread to one CPU, undone on drop: measurements
//! then do not migrate mid-run, and senders and receivers keep apart.

use anyhow::bail;

pub struct Pinned {
    previous: libc::cpu_set_t,
}

impl Pinned {
    pub fn to(cpu: usize) -> anyhow::Result<Pinned> {
        // SAFETY: cpu_set_t is plain data; the calls only read/write the sets we own.
        unsafe {
            let mut previous: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut previous) != 0 {
                bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
            }
            let mut only: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut only);
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &only) != 0 {
                bail!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error());
            }
            Ok(Pinned { previous })
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: restores the set sched_getaffinity filled.
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &self.previous) };
    }
}

/// The highest-numbered CPU (the first one tends to take more interrupts).
pub fn last() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from) - 1
}
