//! Workflow TOML through parsing and validation.
#![no_main]
libfuzzer_sys::fuzz_target!(|text: &str| orch::fuzz::workflow(text));
