//! The binary's allocator: the system's, with large blocks cache-line
//! aligned. A module of the binary, not of the library: a library that
//! exported it would invite every program linking barge to take on a
//! process-wide choice that is the binary's to make.
//!
//! glibc returns blocks 16 bytes past a page (or cache line) boundary, and
//! the kernel's copy into user memory (`read` from a file or a socket into
//! a transfer's chunk) runs about three times slower into a destination
//! that is not 64-byte aligned: measured on this project's machines, 0.57 s
//! against 0.18 s to read 1 GiB from the page cache in 256 KiB chunks, and
//! 54% of a 1 GiB FTP upload's CPU samples in that copy. Byte blocks
//! (alignment 1: the copy buffers, listing text) of [`LARGE`] bytes or
//! more are therefore asked for 64-byte aligned. Everything else keeps the
//! system's own path: an aligned block grows by allocate-copy-free, where
//! glibc's realloc can move a large block's pages without copying, and
//! that would cost the big `Vec<Entry>` listings peak memory.

use std::alloc::{GlobalAlloc, Layout, System};

/// From this size on, a block is cache-line aligned.
pub const LARGE: usize = 16 * 1024;
/// A cache line.
pub const ALIGN: usize = 64;

/// [`System`], with byte blocks of [`LARGE`] bytes or more aligned to [`ALIGN`].
/// Install it in a binary with `#[global_allocator]`.
pub struct CacheAlignedLarge;

/// The layout actually asked of the system for `layout`. A function of the
/// size and alignment only, so a block is freed (and grown) with the same
/// layout it was made with.
fn widened(layout: Layout) -> Layout {
    if layout.size() >= LARGE && layout.align() == 1 {
        // Fails only for a size within 63 bytes of isize::MAX; that block
        // then keeps its layout, the same way at every call.
        Layout::from_size_align(layout.size(), ALIGN).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every block is made and released by `System` with the layout
// `widened` gives for it, which depends only on the caller's layout; a
// widened alignment is still a power of two and at least the one asked.
unsafe impl GlobalAlloc for CacheAlignedLarge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(widened(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(widened(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, widened(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = widened(layout);
        // The caller promises this layout is valid; a null says "failed"
        // (the old block stays) should it not be.
        let Ok(asked) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = widened(asked);
        if new.align() == old.align() {
            return unsafe { System.realloc(ptr, old, new_size) };
        }
        // Crossing LARGE: a new block of the other alignment, then a copy.
        let moved = unsafe { System.alloc(new) };
        if !moved.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, moved, old.size().min(new_size));
                System.dealloc(ptr, old);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aligned(ptr: *mut u8) -> bool {
        !ptr.is_null() && (ptr as usize).is_multiple_of(ALIGN)
    }

    #[test]
    fn large_blocks_are_aligned_through_growth_and_shrinking() {
        let a = CacheAlignedLarge;
        // SAFETY: every block is used within its size and freed once, with
        // the layout it has at that point.
        unsafe {
            let small = Layout::from_size_align(100, 1).unwrap();
            let p = a.alloc(small);
            assert!(!p.is_null());
            p.write_bytes(7, 100);
            // Small to large: moved to an aligned block, contents kept.
            let p = a.realloc(p, small, 256 * 1024);
            assert!(aligned(p));
            assert!(std::slice::from_raw_parts(p, 100).iter().all(|&b| b == 7));
            let large = Layout::from_size_align(256 * 1024, 1).unwrap();
            p.add(256 * 1024 - 1).write(9);
            // Large to larger: still aligned.
            let p = a.realloc(p, large, 1024 * 1024);
            assert!(aligned(p));
            assert_eq!(*p.add(256 * 1024 - 1), 9);
            // Large to small: back to an ordinary block, contents kept.
            let larger = Layout::from_size_align(1024 * 1024, 1).unwrap();
            let p = a.realloc(p, larger, 50);
            assert!(std::slice::from_raw_parts(p, 50).iter().all(|&b| b == 7));
            a.dealloc(p, Layout::from_size_align(50, 1).unwrap());

            for size in [LARGE, 100_000, 262_144, 4 << 20] {
                let layout = Layout::from_size_align(size, 1).unwrap();
                let blocks: Vec<*mut u8> = (0..8).map(|_| a.alloc(layout)).collect();
                assert!(blocks.iter().all(|&p| aligned(p)), "{size}");
                let zeroed = a.alloc_zeroed(layout);
                assert!(aligned(zeroed) && std::slice::from_raw_parts(zeroed, size).iter().all(|&b| b == 0));
                a.dealloc(zeroed, layout);
                blocks.into_iter().for_each(|p| a.dealloc(p, layout));
            }
        }
    }
}
