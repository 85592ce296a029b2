//! orch: workflows of sandboxed WebAssembly steps.
//!
//! Data flows one way: [`workflow`] (TOML text → validated model, with its [`dag`]) →
//! [`resolve`] (plugins loaded and checked) → [`executor`] (runs steps through the wasmtime
//! runtime, behind the capability gates) → [`store`]. `orch serve` ([`serve()`]) and the CLI only
//! create runs and render them. Layers import downwards only: cli → serve → executor → resolve
//! → runtime → capability → workflow → dag; `store` and `dag` import nothing of the crate
//! (checked by `tests/layers.sh`).
//!
//! What a caller needs: load a workflow ([`workflow::load`]), resolve its plugins
//! ([`resolve::resolve`] with a [`Runtime`]), execute it ([`executor::Executor`]) against a
//! [`store::Store`], or serve a directory of workflows ([`serve()`]).
#![warn(unreachable_pub)]

pub mod alloc;
#[doc(hidden)]
pub mod bench;
mod capability;
#[doc(hidden)]
pub mod cli;
pub mod dag;
pub mod executor;
#[doc(hidden)]
pub mod fuzz;
pub mod import;
pub mod oci;
pub mod resolve;
mod runtime;
mod serve;
pub mod store;
pub mod workflow;

/// `orch __compile OUT`: the child that compiles one component (see `Runtime::compile_in_child`).
#[doc(hidden)]
pub use runtime::compile_child;
pub use runtime::{MAX_SANDBOXES, Runtime, RuntimeConfig};
pub use serve::{ServeConfig, WorkerConfig, serve};
