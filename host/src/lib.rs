//! orch: workflows of sandboxed WebAssembly steps.
//!
//! Data flows one way: [`workflow`] (TOML text → validated model, with its [`dag`]) →
//! [`resolve`] (plugins loaded and checked) → [`executor`] (runs steps through [`runtime`] with
//! [`capability`] gates) → [`store`]. [`serve`] and the [`cli`] only create runs and render them.
//! Layers import downwards only: cli → serve → executor → resolve → runtime → capability →
//! workflow → dag; `store` and `dag` import nothing of the crate (checked by `tests/layers.sh`).

pub mod alloc;
pub mod capability;
pub mod cli;
pub mod dag;
pub mod executor;
pub mod resolve;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod workflow;
