//! The one place that decides whether a step may use a connection or reach a destination.

use crate::workflow::Grant;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A refused call: what, by whom, and the grant that would allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Denial {
    pub step: String,
    /// "http", "connection", "tcp", "policy" (a connection's own rules, e.g. Docker's),
    /// "plan" (a write attempted during a dry run).
    pub action: &'static str,
    pub target: String,
    /// The `allow` entry that would permit it.
    pub grant: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.action == "plan" {
            return write!(
                f,
                "step `{}` may not {} during `plan`: {}",
                self.step, self.target, self.grant
            );
        }
        if self.action == "policy" {
            return write!(
                f,
                "step `{}` may not {}: {}",
                self.step, self.target, self.grant
            );
        }
        let verb = match self.action {
            "connection" => "open connection",
            _ => "reach",
        };
        write!(
            f,
            "step `{}` may not {verb} `{}`: add \"{}\" to its `allow`",
            self.step, self.target, self.grant
        )
    }
}

/// The grants of one step.
#[derive(Debug, Clone)]
pub struct Granter {
    step: String,
    allow: Vec<Grant>,
    /// A dry run: the step's grants hold, but only to read.
    planning: bool,
    /// The grants calls went through (as written in `allow`): observed use, for narrowing.
    used: Arc<Mutex<BTreeSet<String>>>,
}

impl Granter {
    /// The grants of step `step`.
    pub fn new(step: impl Into<String>, allow: Vec<Grant>) -> Self {
        Self {
            step: step.into(),
            allow,
            planning: false,
            used: Arc::default(),
        }
    }

    fn note(&self, grant: &Grant) {
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(grant.to_string());
    }

    /// The grants used since the last call (connections opened, origins contacted, TCP
    /// destinations connected to; directories are not observed).
    pub fn take_used(&self) -> Vec<String> {
        std::mem::take(&mut *self.used.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect()
    }

    /// Note a call made under a grant, e.g. `docker engine: create network` (observed use of
    /// what a connection's policy allows).
    pub fn note_call(&self, call: String) {
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(call);
    }

    /// Note that a connect to the granted `tcp://host:port` went through.
    pub fn used_tcp(&self, host: &str, port: u16) {
        if let Some(grant) = self
            .allow
            .iter()
            .find(|g| matches!(g, Grant::Tcp { host: h, port: p } if h == host && *p == port))
        {
            self.note(grant);
        }
    }

    /// The same grants for a `plan`: every host call that would change something is refused.
    pub fn for_plan(mut self) -> Self {
        self.planning = true;
        self
    }

    /// Is this a dry run (reads only)?
    pub fn planning(&self) -> bool {
        self.planning
    }

    /// `what` changes something: refused during a `plan`.
    pub fn write(&self, what: impl FnOnce() -> String) -> Result<(), Denial> {
        if !self.planning {
            return Ok(());
        }
        Err(self.deny(
            "plan",
            what(),
            "a plan must not change anything (it runs in `run`)".into(),
        ))
    }

    /// Directories the step may read, as (host path, path in the sandbox).
    pub fn dirs(&self) -> impl Iterator<Item = (&std::path::Path, &str)> {
        self.allow.iter().filter_map(|g| match g {
            Grant::Dir { guest, host } => Some((host.as_path(), guest.as_str())),
            _ => None,
        })
    }

    /// The `tcp://host:port` destinations the step may connect to.
    pub fn tcp(&self) -> Vec<(String, u16)> {
        self.allow
            .iter()
            .filter_map(|g| match g {
                Grant::Tcp { host, port } => Some((host.clone(), *port)),
                _ => None,
            })
            .collect()
    }

    /// A raw TCP connection to `target` (an address) that no `tcp://` grant covers.
    pub fn deny_tcp(&self, target: String) -> Denial {
        let grant = format!("tcp://{target}");
        self.deny("tcp", target, grant)
    }

    /// A call refused by a connection's own policy rather than by the step's `allow`: `what`
    /// was refused, `how` says what would allow it.
    pub fn deny_by_policy(&self, what: String, how: String) -> Denial {
        self.deny("policy", what, how)
    }

    /// May the step open connection `name`?
    pub fn grant_connection(&self, name: &str) -> Result<(), Denial> {
        if let Some(grant) = self
            .allow
            .iter()
            .find(|g| matches!(g, Grant::Connection(c) if c == name))
        {
            self.note(grant);
            return Ok(());
        }
        Err(self.deny("connection", name.to_string(), name.to_string()))
    }

    /// May the step send an HTTP request to `scheme://host:port`? The check is on the URI
    /// the request is sent to, never on a `Host` header.
    pub fn grant_http(&self, scheme: &str, host: &str, port: Option<u16>) -> Result<(), Denial> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = port.unwrap_or(if scheme == "http" { 80 } else { 443 });
        let allowed = self.allow.iter().find(|g| match g {
            Grant::Http {
                scheme: s,
                host: h,
                port: p,
            } => s == scheme && *p == port && host_matches(h, &host),
            _ => false,
        });
        if let Some(grant) = allowed {
            self.note(grant);
            return Ok(());
        }
        let shown = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let origin = match (scheme, port) {
            ("http", 80) | ("https", 443) => format!("{scheme}://{shown}"),
            _ => format!("{scheme}://{shown}:{port}"),
        };
        Err(self.deny("http", origin.clone(), origin))
    }

    fn deny(&self, action: &'static str, target: String, grant: String) -> Denial {
        Denial {
            step: self.step.clone(),
            action,
            target,
            grant,
        }
    }
}

/// `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::Grant;

    fn granter() -> Granter {
        Granter::new(
            "fetch",
            vec![
                Grant::Http {
                    scheme: "https".into(),
                    host: "*.example.com".into(),
                    port: 443,
                },
                Grant::Http {
                    scheme: "http".into(),
                    host: "10.0.0.5".into(),
                    port: 11434,
                },
                Grant::Connection("pg_admin".into()),
            ],
        )
    }

    #[test]
    fn wildcard_allows_subdomains_only() {
        let g = granter();
        assert!(g.grant_http("https", "api.example.com", None).is_ok());
        assert!(g.grant_http("https", "example.com", None).is_err());
        assert!(g.grant_http("https", "evil-example.com", None).is_err());
        assert!(g.grant_http("http", "api.example.com", None).is_err());
    }

    #[test]
    fn ip_literal_needs_exact_port() {
        let g = granter();
        assert!(g.grant_http("http", "10.0.0.5", Some(11434)).is_ok());
        let denial = g.grant_http("http", "10.0.0.5", Some(80)).unwrap_err();
        assert_eq!(
            denial.to_string(),
            "step `fetch` may not reach `http://10.0.0.5`: add \"http://10.0.0.5\" to its `allow`"
        );
    }

    #[test]
    fn an_ipv6_grant_matches_its_bracketed_request_host() {
        let g = Granter::new(
            "fetch",
            vec![Grant::Http {
                scheme: "http".into(),
                host: "::1".into(),
                port: 8080,
            }],
        );
        assert!(g.grant_http("http", "[::1]", Some(8080)).is_ok());
        let denial = g.grant_http("http", "[::1]", Some(9)).unwrap_err();
        assert_eq!(
            denial.to_string(),
            "step `fetch` may not reach `http://[::1]:9`: add \"http://[::1]:9\" to its `allow`"
        );
    }

    #[test]
    fn connections_need_their_name() {
        let g = granter();
        assert!(g.grant_connection("pg_admin").is_ok());
        assert!(g.grant_connection("pg_other").is_err());
    }
}
