//! What a component can reach, read from its imports. Plugins do not declare capabilities (a
//! declared list can be wrong, and three built-ins' were): each import belongs to one
//! capability, is granted by one workflow setting or answered by the host without a grant.
//! `orch plugin inspect` prints this table.

use serde::Serialize;

/// How the host answers calls through one import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "access", content = "detail", rename_all = "lowercase")]
pub(crate) enum Access {
    /// Available to every step (logging, clocks, randomness, stream plumbing).
    Always(&'static str),
    /// Only what the step's `allow` names; everything else is refused and audited.
    Granted(&'static str),
    /// Linked so the component loads, but answers nothing (empty environment, no UDP...).
    Denied(&'static str),
}

/// One import of a component, classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Reach {
    /// As the component names it, e.g. `wasi:http/outgoing-handler@0.2.12`.
    pub import: String,
    /// The capability it belongs to (`http`, `postgres`, `files`, `log`...).
    pub capability: &'static str,
    #[serde(flatten)]
    pub access: Access,
}

/// Classify every import; `capabilities` lists the grantable ones a workflow must think about.
pub(crate) fn classify(imports: &[String]) -> Vec<Reach> {
    imports
        .iter()
        .map(|import| {
            let (capability, access) = of(unversioned(import));
            Reach {
                import: import.clone(),
                capability,
                access,
            }
        })
        .collect()
}

/// The capabilities a component can be granted or reaches on its own (`denied: false`), or
/// asks for and is refused whatever the workflow says (`denied: true`); without plumbing
/// (`io`, `types`), sorted and distinct: `["http", "log"]`.
pub(crate) fn capabilities(reach: &[Reach], denied: bool) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = reach
        .iter()
        .filter(|r| matches!(r.access, Access::Denied(_)) == denied)
        .map(|r| r.capability)
        .filter(|c| !matches!(*c, "io" | "types"))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn unversioned(import: &str) -> &str {
    import.split('@').next().unwrap_or(import)
}

fn of(interface: &str) -> (&'static str, Access) {
    use Access::*;
    match interface {
        "orch:plugin/types" => ("types", Always("data types only")),
        "orch:plugin/log" => ("log", Always("lines go to the step log, secrets masked")),
        "orch:plugin/postgres" => (
            "postgres",
            Granted(
                "a postgres connection named in `allow`; the URL and password stay in the host",
            ),
        ),
        "orch:plugin/kafka" => ("kafka", Granted("a kafka connection named in `allow`")),
        "orch:plugin/docker" => (
            "docker",
            Granted(
                "a docker connection named in `allow`, within its policy (images, mounts, ports)",
            ),
        ),
        "wasi:http/outgoing-handler" => (
            "http",
            Granted("origins in `allow` (\"https://host\") or an http connection named in it"),
        ),
        "wasi:http/types" => ("http", Always("request and response types")),
        "wasi:sockets/udp" | "wasi:sockets/udp-create-socket" => ("udp", Denied("never allowed")),
        i if i.starts_with("wasi:sockets/") => (
            "tcp",
            Granted("\"tcp://host:port\" in `allow`; no socket can be made without one"),
        ),
        i if i.starts_with("wasi:filesystem/") => (
            "files",
            Granted("directories in `allow` (\"./data\"), read-only; nothing otherwise"),
        ),
        "wasi:cli/environment" => ("environment", Denied("empty: no variables, no arguments")),
        "wasi:cli/stdin" => ("stdin", Denied("empty")),
        "wasi:cli/stdout" | "wasi:cli/stderr" => {
            ("log", Always("captured into the step log, secrets masked"))
        }
        "wasi:cli/exit" => ("exit", Always("ends the call as failed")),
        i if i.starts_with("wasi:cli/terminal") => ("terminal", Denied("no terminal")),
        i if i.starts_with("wasi:clocks/") => ("clock", Always("wall and monotonic clocks")),
        i if i.starts_with("wasi:random/") => ("random", Always("the host's CSPRNG")),
        i if i.starts_with("wasi:io/") => ("io", Always("streams and polling for the above")),
        _ => (
            "unknown",
            Denied("not provided by orch: the component cannot be loaded"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_map_to_what_grants_them() {
        let imports: Vec<String> = [
            "orch:plugin/log@0.2.0",
            "orch:plugin/postgres@0.2.0",
            "wasi:http/outgoing-handler@0.2.12",
            "wasi:cli/environment@0.2.9",
            "wasi:sockets/udp@0.2.9",
            "wasi:sockets/tcp@0.2.9",
            "wasi:filesystem/preopens@0.2.9",
            "wasi:io/streams@0.2.12",
        ]
        .map(String::from)
        .to_vec();
        let reach = classify(&imports);
        assert_eq!(
            capabilities(&reach, false),
            ["files", "http", "log", "postgres", "tcp"]
        );
        assert_eq!(capabilities(&reach, true), ["environment", "udp"]);
        let access = |i: usize| reach[i].access;
        assert!(matches!(access(1), Access::Granted(_)));
        assert!(matches!(access(3), Access::Denied(_)));
        assert!(matches!(access(4), Access::Denied(_)));
        assert!(matches!(access(5), Access::Granted(_)));
        assert!(matches!(access(7), Access::Always(_)));
        let json = serde_json::to_value(&reach[1]).unwrap();
        assert_eq!(json["access"], "granted");
        assert_eq!(json["capability"], "postgres");
    }
}
