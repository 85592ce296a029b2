//! Connections rendered for one run: settings with secrets substituted, held by the host only.

use super::{Granter, Masker, StepSink};
use crate::workflow::expr::{ExprError, Scope};
use crate::workflow::{ConnectionKind, Workflow};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::{HasData, ResourceTable};

/// One connection's rendered settings.
#[derive(Debug, Clone)]
pub struct ResolvedConnection {
    pub kind: ConnectionKind,
    pub settings: Map<String, Json>,
    /// `WORKFLOW/NAME`: whose connection this is, for what it creates (docker ownership).
    pub id: String,
}

impl ResolvedConnection {
    /// A string setting.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(Json::as_str)
    }
}

/// Every connection of a run, by name.
#[derive(Debug, Clone, Default)]
pub struct Connections(HashMap<String, ResolvedConnection>);

/// A connection whose settings cannot be rendered.
#[derive(Debug, thiserror::Error)]
#[error("connection `{name}`: {error}")]
pub struct ConnectionError {
    pub name: String,
    pub error: ExprError,
}

impl Connections {
    /// Render every connection of `workflow`; passwords in URLs are registered for masking.
    pub fn resolve(
        workflow: &Workflow,
        scope: &Scope,
        masker: &Masker,
    ) -> Result<Self, ConnectionError> {
        let mut out = HashMap::new();
        for (name, c) in &workflow.connections {
            let rendered = c.settings.render(scope).map_err(|error| ConnectionError {
                name: name.clone(),
                error,
            })?;
            let settings = match rendered {
                Json::Object(map) => map,
                _ => Map::new(),
            };
            for value in settings.values().filter_map(Json::as_str) {
                if let Ok(url) = url::Url::parse(value)
                    && let Some(password) = url.password()
                {
                    masker.register(password);
                    if let Ok(decoded) =
                        percent_encoding::percent_decode_str(password).decode_utf8()
                    {
                        masker.register(&decoded);
                    }
                }
            }
            // Credential headers of http connections: the whole value and its last word
            // (`Bearer TOKEN`).
            if let Some(Json::Object(headers)) = settings.get("headers") {
                let credential = |name: &str| {
                    let name = name.to_ascii_lowercase();
                    ["auth", "token", "key", "secret", "cookie", "password"]
                        .iter()
                        .any(|w| name.contains(w))
                };
                for value in headers
                    .iter()
                    .filter(|(name, _)| credential(name))
                    .filter_map(|(_, v)| v.as_str())
                {
                    masker.register(value);
                    if let Some(last) = value.split_whitespace().last() {
                        masker.register(last);
                    }
                }
            }
            out.insert(
                name.clone(),
                ResolvedConnection {
                    kind: c.kind,
                    settings,
                    id: format!("{}/{name}", workflow.name),
                },
            );
        }
        Ok(Self(out))
    }

    /// A connection by name.
    pub fn get(&self, name: &str) -> Option<&ResolvedConnection> {
        self.0.get(name)
    }
}

/// What a host interface needs to open a connection for a step: its grants, the run's
/// connections, and where to report a denial. Shared by every connection-based interface.
pub(crate) struct ConnectionGate {
    pub granter: Arc<Granter>,
    pub connections: Arc<Connections>,
    pub sink: Arc<dyn StepSink>,
    /// Connections handed out to this instance so far (all kinds).
    pub opened: std::sync::atomic::AtomicUsize,
}

/// Connections one plugin instance may open: enough for any real step, too few to exhaust a
/// server's connection slots.
pub(crate) const MAX_OPEN_PER_STEP: usize = 16;

/// What a connection-based host interface (postgres, kafka, docker) sees of a step: the
/// resource table its handles live in, and the gate that hands out connections.
pub(crate) struct ConnectionView<'a> {
    pub table: &'a mut ResourceTable,
    pub gate: &'a mut ConnectionGate,
}

/// Marker tying [`ConnectionView`] to the linker.
pub(crate) struct ConnectionData;

impl HasData for ConnectionData {
    type Data<'a> = ConnectionView<'a>;
}

/// The connection view of a step's store data.
pub(crate) fn connection_view(state: &mut super::StepState) -> ConnectionView<'_> {
    ConnectionView {
        table: &mut state.table,
        gate: &mut state.connections,
    }
}

/// The WIT `error` of a connection-based interface, as far as handing out a connection goes:
/// each interface says which of its variants a refusal becomes.
pub(crate) trait OpenError {
    /// The step is not granted the connection (already reported to the sink, hence audited).
    fn denied(message: String) -> Self;
    /// The connection is not defined, or is of another kind.
    fn invalid(message: String) -> Self;
}

impl ConnectionGate {
    /// `what` changes something: refused (reported, hence audited) during a `plan`.
    pub(crate) fn write<E: OpenError>(&self, what: impl FnOnce() -> String) -> Result<(), E> {
        self.granter.write(what).map_err(|denial| {
            self.sink.denied(&denial);
            E::denied(denial.to_string())
        })
    }

    /// The settings of connection `name`, if the step is granted it and it is of `kind`; a
    /// refusal comes back as the calling interface's error `E`.
    pub(crate) fn open<E: OpenError>(
        &self,
        name: &str,
        kind: ConnectionKind,
    ) -> Result<&ResolvedConnection, E> {
        if let Err(denial) = self.granter.grant_connection(name) {
            self.sink.denied(&denial);
            return Err(E::denied(denial.to_string()));
        }
        let connection = self.connections.get(name).ok_or_else(|| {
            E::invalid(format!(
                "connection `{name}` is not defined in the workflow"
            ))
        })?;
        if connection.kind != kind {
            let kind = serde_json::to_value(kind)
                .ok()
                .and_then(|k| k.as_str().map(String::from))
                .unwrap_or_default();
            return Err(E::invalid(format!(
                "connection `{name}` is not a {kind} connection"
            )));
        }
        let opened = self
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if opened >= MAX_OPEN_PER_STEP {
            return Err(E::invalid(format!(
                "a step may open at most {MAX_OPEN_PER_STEP} connections; reuse the ones it has"
            )));
        }
        Ok(connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::bindings::orch::plugin::postgres::Error;
    use crate::capability::{Denial, LogLevel};
    use crate::workflow::Grant;

    struct Quiet;

    impl StepSink for Quiet {
        fn log(&self, _: LogLevel, _: &str) {}
        fn progress(&self, _: u64, _: Option<u64>, _: &str) {}
        fn denied(&self, _: &Denial) {}
    }

    #[test]
    fn a_step_opens_a_bounded_number_of_connections() {
        let pg = ResolvedConnection {
            kind: ConnectionKind::Postgres,
            settings: Map::new(),
            id: "w/pg".into(),
        };
        let gate = ConnectionGate {
            granter: Arc::new(Granter::new("s", vec![Grant::Connection("pg".into())])),
            connections: Arc::new(Connections(HashMap::from([("pg".to_string(), pg)]))),
            sink: Arc::new(Quiet),
            opened: Default::default(),
        };
        for _ in 0..MAX_OPEN_PER_STEP {
            assert!(gate.open::<Error>("pg", ConnectionKind::Postgres).is_ok());
        }
        let Err(Error::Other(refused)) = gate.open::<Error>("pg", ConnectionKind::Postgres) else {
            panic!("the connection after the cap must be refused");
        };
        assert!(refused.contains("at most 16"), "{refused}");
    }
}
