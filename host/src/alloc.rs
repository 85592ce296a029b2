//! Settings of mimalloc, the allocator of the `orch` binary and the benches.

/// `mi_option_purge_decommits` in the mimalloc.h that libmimalloc-sys 0.1.49 bundles (v3); the
/// crate's own constants stop before it.
const PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;

/// Give freed memory back to the kernel with `MADV_FREE` instead of `MADV_DONTNEED`: the kernel
/// takes it only under memory pressure, so the next large step reuses it without faulting it in
/// again. A 100k-record produce step freed and re-faulted ~300k pages per run otherwise, at
/// ~14 µs each in this kind of VM (BENCHMARKS.md, Kafka). Call first thing in `main`.
#[allow(unsafe_code)] // the one FFI call: neither mimalloc crate has a safe option setter
pub fn keep_freed_pages_mapped() {
    // SAFETY: sets one integer option; mimalloc reads its options atomically.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DECOMMITS, 0) }
}
