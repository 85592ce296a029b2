//! What every e2e module shares: the `orch` sandbox, local servers, an HTTP client, waiting,
//! PostgreSQL helpers and the common assertions. Tests reach the library only through its
//! binary.

mod audit;
pub(crate) mod browser;
pub(crate) mod http;
pub(crate) mod pg;
mod sandbox;
mod servers;
mod wait;

pub(crate) use audit::{Denial, assert_denied_and_audited, audit};
pub(crate) use pg::unique;
pub(crate) use sandbox::{Orch, Ran, example, root, step};
pub(crate) use servers::{Server, hello_server};
pub(crate) use wait::{now_ms, signal, wait_for};
