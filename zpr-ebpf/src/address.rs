//! 16-byte addresses copied between keys a word at a time. `Address` is a
//! byte array, so a plain copy is 16 byte loads and 16 byte stores (the
//! verifier refuses unaligned stack access, so LLVM assumes nothing wider);
//! every key it is copied between starts it word-aligned (asserted in
//! zpr-common).

use zpr_common::Address;

/// Copies `src` into `dst` as four 32-bit words.
///
/// # Safety
/// Both must start 4-byte aligned, as the address fields of `FlowKey`,
/// `LocalAddressKey` and `HostKey` do.
#[inline(always)]
pub unsafe fn copy_aligned(dst: &mut Address, src: &Address) {
    // SAFETY: 16 bytes each, word-aligned by the caller's contract, and
    // distinct (`dst` is borrowed mutably).
    unsafe {
        core::ptr::copy_nonoverlapping(
            (src as *const Address).cast::<u32>(),
            (dst as *mut Address).cast::<u32>(),
            4,
        )
    }
}
