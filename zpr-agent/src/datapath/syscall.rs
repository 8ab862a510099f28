//! The bpf(2) commands aya does not wrap.

/// Runs `command` with `attr`, a zero-padded prefix of `union bpf_attr` in
/// the layout the command reads. Returns the syscall's result (-1 with
/// errno set on failure).
pub(super) fn bpf<const N: usize>(command: libc::c_long, attr: &mut [u32; N]) -> libc::c_long {
    // SAFETY: `attr` is valid for its whole size, which is passed along;
    // any pointers it carries are the caller's, valid for the call.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    }
}

/// A pointer as the two u32 halves of a bpf_attr `__aligned_u64`.
pub(super) fn pointer_halves<T>(pointer: *mut T) -> [u32; 2] {
    let address = pointer as u64;
    [address as u32, (address >> 32) as u32]
}
