//! A bounds-checked view of packet bytes, the same for XDP and TC.

/// The linear packet data between two kernel-provided pointers.
#[derive(Clone, Copy)]
pub struct Packet {
    pub start: usize,
    pub end: usize,
}

impl Packet {
    #[inline(always)]
    pub fn len(&self) -> u64 {
        (self.end - self.start) as u64
    }

    /// A pointer to a `T` at `offset`, if the packet holds all of it.
    #[inline(always)]
    pub fn ptr_at<T>(&self, offset: usize) -> Option<*const T> {
        let at = self.start + offset;
        if at + core::mem::size_of::<T>() > self.end {
            return None;
        }
        Some(at as *const T)
    }

    /// A copy of the `T` at `offset`.
    #[inline(always)]
    pub fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        // SAFETY: ptr_at checked that the packet holds all of it.
        self.ptr_at::<T>(offset)
            .map(|ptr| unsafe { ptr.read_unaligned() })
    }
}
