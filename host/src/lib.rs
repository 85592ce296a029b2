//! orch: workflows of sandboxed WebAssembly steps.
//!
//! Data flows one way: [`workflow`] (TOML text → validated model) → [`plan`] (DAG) →
//! [`executor`] (runs steps through [`runtime`] with [`capability`] gates) → [`store`].
//! The [`cli`] only parses arguments, triggers runs and renders results.

pub mod alloc;
pub mod capability;
pub mod cli;
pub mod executor;
pub mod plan;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod workflow;
