//! How the engine's failures reach the guest: bollard errors classified into the WIT `error`
//! (retryable or not), and podman's transient `stopped` state waited out.

use crate::capability::bindings::orch::plugin::docker::Error;
use crate::capability::connections::OpenError;
use bollard::errors::Error as BollardError;
use std::time::Duration;

/// Engine unreachable or timed out: retryable; the engine's own answers are not.
pub(super) fn classify(e: BollardError) -> Error {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => Error::NotFound(message),
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => Error::Engine(format!("{status_code}: {message}")),
        BollardError::DockerContainerWaitError { error, code } => {
            Error::Engine(format!("wait failed ({code}): {error}"))
        }
        BollardError::RequestTimeoutError
        | BollardError::IOError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. } => Error::Unavailable(e.to_string()),
        other => Error::Engine(other.to_string()),
    }
}

/// `?` on an engine call classifies its error.
impl From<BollardError> for Error {
    fn from(e: BollardError) -> Self {
        classify(e)
    }
}

/// A connection that is not granted is denied; one not defined, or not a docker connection,
/// is the engine's refusal.
impl OpenError for Error {
    fn denied(message: String) -> Self {
        Error::Denied(message)
    }
    fn invalid(message: String) -> Self {
        Error::Engine(message)
    }
}

/// Podman reports a container that has just exited as `stopped` until its cleanup runs, a
/// state the Docker API (and bollard) does not know; it settles to `exited` within moments.
fn transient_podman_state(e: &BollardError) -> bool {
    matches!(e, BollardError::JsonDataError { message, .. } if message.contains("`stopped`"))
}

/// Call `f`, retrying for up to 5 s while the engine reports podman's transient state.
pub(super) async fn settled<T, Fut>(mut f: impl FnMut() -> Fut) -> Result<T, BollardError>
where
    Fut: Future<Output = Result<T, BollardError>>,
{
    for _ in 0..50 {
        match f().await {
            Err(e) if transient_podman_state(&e) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => return other,
        }
    }
    f().await
}
