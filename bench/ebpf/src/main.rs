//! Reference programs for `cargo xtask bench`: for each path zpr's programs
//! take, a program doing only the work that path cannot avoid, so zpr's cost
//! is reported as a ratio to the least any design could pay.
//!
//! They share zpr's key layouts (zpr-common) and map sizes, so hashing and
//! trie walks cost the same per lookup; their maps are their own, filled by
//! the bench from the same Plan.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod flow;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod programs;

// `cargo test --workspace` builds every member for the host; there this
// crate is an empty binary.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves every path terminates; a panic path is never taken.
    loop {}
}
