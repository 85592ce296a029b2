//! Compose files and their `.env`, loaded the way the `deploy` plugin loads them.
#![no_main]

#[derive(arbitrary::Arbitrary, Debug)]
struct Stack<'a> {
    compose: &'a str,
    dotenv: &'a str,
}

libfuzzer_sys::fuzz_target!(|s: Stack| orch_deploy::fuzz::load(s.compose, s.dotenv));
