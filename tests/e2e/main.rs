//! End-to-end tests: the real `orch` binary in a temp dir, real plugins, a real run store.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly by design")]

mod authoring;
mod container;
mod docker;
mod faults;
mod harness;
mod hostile;
mod http;
mod import;
mod kafka;
mod oci;
mod ollama;
mod postgres;
mod runs;
mod serve;
mod store;
mod tutorial;
mod ui;
