//! `${{ }}` templates and their CEL expressions, parsed and rendered.
#![no_main]
libfuzzer_sys::fuzz_target!(|text: &str| orch::fuzz::template(text));
