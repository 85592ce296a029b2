//! `allow`: connection names, http(s) origins, tcp destinations and read-only directories.

use super::{Validator, is_identifier};
use crate::workflow::diagnostic::Diagnostic;
use crate::workflow::hint;
use crate::workflow::model::*;
use indexmap::IndexMap;
use std::path::PathBuf;
use toml::Spanned;

impl Validator<'_> {
    pub(super) fn grant(
        &mut self,
        id: &str,
        raw: &Spanned<String>,
        connections: &IndexMap<String, Connection>,
        dir: &std::path::Path,
    ) -> Option<Grant> {
        let text = raw.get_ref();
        match parse_grant(text) {
            Ok(Grant::Dir { guest, host }) => {
                // Canonical, so the sandbox sees exactly this directory whatever the links.
                let resolved = dir.join(&host).canonicalize().ok().filter(|h| h.is_dir());
                let below = |h: &std::path::Path| {
                    host.is_absolute() || dir.canonicalize().is_ok_and(|d| h.starts_with(d))
                };
                if let Some(resolved) = resolved {
                    if below(&resolved) {
                        return Some(Grant::Dir {
                            guest,
                            host: resolved,
                        });
                    }
                    self.error(
                        Diagnostic::at(
                            raw.span(),
                            format!(
                                "step `{id}` is granted directory `{text}`, which leads outside the workflow's directory (to {})",
                                resolved.display()
                            ),
                        )
                        .help("grant the absolute path instead, so the workflow says what it exposes"),
                    );
                    None
                } else {
                    self.error(
                        Diagnostic::at(
                            raw.span(),
                            format!("step `{id}` is granted directory `{text}`, which does not exist"),
                        )
                        .help(format!(
                            "paths are relative to the workflow file's directory ({}); create it or fix the path",
                            dir.display()
                        )),
                    );
                    None
                }
            }
            Ok(Grant::Connection(name)) if !connections.contains_key(&name) => {
                let names: Vec<&str> = connections.keys().map(String::as_str).collect();
                let help = hint(&name, &names, "", || {
                    format!(
                        "define it under [connections.{name}], or grant a destination like \"https://api.example.com\""
                    )
                });
                self.error(
                    Diagnostic::at(
                        raw.span(),
                        format!("step `{id}` is granted undefined connection `{name}`"),
                    )
                    .help(help),
                );
                None
            }
            Ok(grant) => Some(grant),
            Err(message) => {
                self.error(Diagnostic::at(raw.span(), format!("step `{id}`: invalid grant `{text}`: {message}")).help(
                    "grant a connection name, \"https://host[:port]\", \"https://*.domain\", \"tcp://host:port\" or a directory \"./path\"",
                ));
                None
            }
        }
    }
}

/// Parse one `allow` entry: a connection name, a destination, or a directory (`./x`, `/x`).
pub(super) fn parse_grant(text: &str) -> Result<Grant, String> {
    if text.starts_with("./") || text.starts_with("../") || text.starts_with('/') {
        if text.split('/').any(|part| part == "..") {
            return Err("`..` is not allowed: grant a directory at or below the workflow's, or an absolute path".into());
        }
        let trimmed = text.trim_end_matches('/');
        let guest = match trimmed.strip_prefix("./").unwrap_or(trimmed) {
            "" if text.starts_with('/') => "/",
            "" | "." => ".",
            g => g,
        };
        return Ok(Grant::Dir {
            guest: guest.to_string(),
            host: PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed }),
        });
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return if is_identifier(&text.replace('-', "_")) {
            Ok(Grant::Connection(text.to_string()))
        } else {
            Err("not a connection name or a URL".into())
        };
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') {
        return Err("grants are per host: remove the path".into());
    }
    let port_of = |p: &str| p.parse::<u16>().map_err(|_| format!("invalid port `{p}`"));
    // `[v6]` or `[v6]:port`: the host without brackets, as requests are checked.
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("invalid IPv6 host: no closing `]`")?;
        match after {
            "" => (host, None),
            p => match p.strip_prefix(':') {
                Some(p) => (host, Some(port_of(p)?)),
                None => return Err(format!("unexpected `{p}` after the IPv6 host")),
            },
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(port_of(p)?)),
            None => (rest, None),
        }
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() || host[host.starts_with("*.") as usize * 2..].contains('*') {
        return Err("invalid host (a wildcard is allowed only as a leading `*.`)".into());
    }
    match scheme {
        "http" | "https" => Ok(Grant::Http {
            port: port.unwrap_or(if scheme == "http" { 80 } else { 443 }),
            scheme: scheme.to_string(),
            host,
        }),
        "tcp" => match port {
            Some(port) => Ok(Grant::Tcp { host, port }),
            None => Err("a tcp grant needs a port".into()),
        },
        other => Err(format!("unsupported scheme `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_grants_name_the_host_without_brackets() {
        assert_eq!(
            parse_grant("http://[::1]:8080"),
            Ok(Grant::Http {
                scheme: "http".into(),
                host: "::1".into(),
                port: 8080
            })
        );
        assert_eq!(
            parse_grant("https://[::1]"),
            Ok(Grant::Http {
                scheme: "https".into(),
                host: "::1".into(),
                port: 443
            })
        );
        assert!(parse_grant("http://[::1").is_err());
        assert!(parse_grant("http://[::1]x").is_err());
    }

    #[test]
    pub(super) fn grants_parse_connections_origins_and_tcp() {
        assert_eq!(
            parse_grant("pg_admin"),
            Ok(Grant::Connection("pg_admin".into()))
        );
        assert_eq!(
            parse_grant("https://API.example.com/"),
            Ok(Grant::Http {
                scheme: "https".into(),
                host: "api.example.com".into(),
                port: 443
            })
        );
        assert_eq!(
            parse_grant("http://10.0.0.5:11434"),
            Ok(Grant::Http {
                scheme: "http".into(),
                host: "10.0.0.5".into(),
                port: 11434
            })
        );
        assert_eq!(
            parse_grant("tcp://db:5432"),
            Ok(Grant::Tcp {
                host: "db".into(),
                port: 5432
            })
        );
    }

    #[test]
    pub(super) fn grants_reject_paths_bad_wildcards_and_missing_tcp_ports() {
        assert!(
            parse_grant("https://api.example.com/v1")
                .unwrap_err()
                .contains("remove the path")
        );
        assert!(
            parse_grant("https://api.*.com")
                .unwrap_err()
                .contains("wildcard")
        );
        assert!(
            parse_grant("tcp://db")
                .unwrap_err()
                .contains("needs a port")
        );
        assert!(
            parse_grant("ftp://x")
                .unwrap_err()
                .contains("unsupported scheme")
        );
        assert!(parse_grant("not a name").is_err());
    }
}
