//! The `orch` binary: parse arguments, hand over to the library, exit with its code.

/// mimalloc: the host moves many small JSON values (rendered configs, step outputs) and
/// glibc malloc spends ~3x longer on them across tokio's worker threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    orch::alloc::configure();
    // The compile child (`Runtime::compile_in_child`), not a command for people.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__compile") {
        return orch::compile_child();
    }
    orch::cli::main()
}
