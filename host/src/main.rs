//! The `orch` binary: parse arguments, hand over to the library, exit with its code.

fn main() -> std::process::ExitCode {
    orch::cli::main()
}
