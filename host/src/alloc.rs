//! Settings of mimalloc and of the process's memory, for the `orch` binary and the benches.

/// `mi_option_purge_decommits` in the mimalloc.h that libmimalloc-sys 0.1.49 bundles (v3); the
/// crate's own constants stop before it.
const PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;

/// Call first thing in `main`.
///
/// - Freed memory goes back to the kernel with `MADV_FREE` instead of `MADV_DONTNEED`: the
///   kernel takes it only under memory pressure, so the next large step reuses it without
///   faulting it in again. A 100k-record produce step freed and re-faulted ~300k pages per run
///   otherwise, at ~14 µs each in this kind of VM (BENCHMARKS.md, Kafka).
/// - No transparent huge pages: mimalloc asks for them on its arenas, and each first touch of
///   one zeroes 2 MiB, and each purge splits one again. That was a fifth of a one-step
///   `orch run` (BENCHMARKS.md, "The engine at the floor").
#[allow(unsafe_code)] // the one FFI call: neither mimalloc crate has a safe option setter
pub fn configure() {
    // SAFETY: sets one integer option; mimalloc reads its options atomically.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DECOMMITS, 0) }
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!("cannot turn transparent huge pages off: {e}");
    }
}
