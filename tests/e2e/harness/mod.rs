//! What every e2e module shares: the `orch` sandbox, local servers, an HTTP client, waiting,
//! PostgreSQL helpers and the common assertions. Tests reach the library only through its
//! binary.

mod audit;
pub mod http;
pub mod pg;
mod sandbox;
mod servers;
mod wait;

pub use audit::{Denial, assert_denied_and_audited, audit};
pub use pg::unique;
pub use sandbox::{Orch, Ran, example, root, step};
pub use servers::{Server, hello_server};
pub use wait::{now_ms, signal, wait_for};
