//! The small syntaxes inside compose values: shell words, Go-style durations, and the short
//! port (`127.0.0.1:8080:80/udp`) and volume (`data:/var/lib/data:ro`) forms.

use super::{MountKind, PortSpec, RawMount};

/// Split a command string into words like a POSIX shell (quotes, backslashes and `#`
/// comments; no expansion), as compose does for string `command` / `entrypoint`.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    shell_words::split(s).map_err(|e| format!("{e} in `{s}`"))
}

/// A Go-style duration (`1h2m3.5s`, `500ms`, `0`) in milliseconds, rounded up so that a
/// sub-millisecond value does not become 0 (which the engine reads as "default").
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let bad =
        || format!("invalid duration `{text}`: use a number with a unit, like 10s, 1m30s or 500ms");
    if text == "0" {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut total_ns: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let frac = &frac[..frac.len().min(18)];
        let frac_ns = if frac.is_empty() {
            0
        } else {
            let digits: u128 = frac.parse().map_err(|_| bad())?;
            digits * unit_ns / 10u128.pow(frac.len() as u32)
        };
        total_ns = int
            .checked_mul(unit_ns)
            .and_then(|n| n.checked_add(frac_ns))
            .and_then(|n| n.checked_add(total_ns))
            .ok_or_else(bad)?;
        rest = after;
    }
    u64::try_from(total_ns.div_ceil(1_000_000)).map_err(|_| bad())
}

pub(super) fn protocol(p: &str) -> Result<String, String> {
    match p.to_ascii_lowercase().as_str() {
        p @ ("tcp" | "udp") => Ok(p.to_string()),
        _ => Err(format!(
            "port protocol `{p}` is not supported: use tcp or udp"
        )),
    }
}

pub(super) fn nonzero_port(p: u16) -> Result<u16, String> {
    if p == 0 {
        Err("port 0 is not a valid container port".to_string())
    } else {
        Ok(p)
    }
}

pub(super) fn port_number(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("`{s}` is not a port number (1-65535)")),
    }
}

/// `80` or `8000-8010`, as an inclusive range.
fn port_range(s: &str) -> Result<(u16, u16), String> {
    match s.split_once('-') {
        None => port_number(s).map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b) = (port_number(a)?, port_number(b)?);
            if a > b {
                return Err(format!("port range `{s}` is reversed"));
            }
            Ok((a, b))
        }
    }
}

/// Short port syntax: `[[HOST_IP:][HOST_PORT]:]CONTAINER_PORT[/PROTOCOL]`, ports or ranges.
pub fn parse_port(s: &str) -> Result<Vec<PortSpec>, String> {
    let (body, proto) = s.rsplit_once('/').unwrap_or((s, "tcp"));
    let proto = protocol(proto)?;
    let (ip, host, container) = if let Some(rest) = body.strip_prefix('[') {
        let (ip, rest) = rest
            .split_once("]:")
            .ok_or_else(|| format!("invalid port `{s}`: expected [IPv6]:HOST:CONTAINER"))?;
        let (host, container) = rest
            .split_once(':')
            .ok_or_else(|| format!("invalid port `{s}`: expected [IPv6]:HOST:CONTAINER"))?;
        (Some(ip), Some(host), container)
    } else {
        let mut parts = body.rsplitn(3, ':');
        let container = parts.next().unwrap_or_default();
        let host = parts.next();
        let ip = parts.next();
        (ip, host, container)
    };
    let (c_lo, c_hi) = port_range(container).map_err(|e| format!("invalid port `{s}`: {e}"))?;
    let host_ip = ip.filter(|ip| !ip.is_empty()).map(str::to_string);
    let host = match host.filter(|h| !h.is_empty()) {
        None => None,
        Some(h) => Some(port_range(h).map_err(|e| format!("invalid port `{s}`: {e}"))?),
    };
    if let Some((h_lo, h_hi)) = host
        && h_hi - h_lo != c_hi - c_lo
    {
        return Err(format!(
            "invalid port `{s}`: the host and container ranges must have the same length"
        ));
    }
    Ok((c_lo..=c_hi)
        .enumerate()
        .map(|(i, port)| PortSpec {
            container_port: port,
            protocol: proto.clone(),
            host_ip: host_ip.clone(),
            // `i` is within the range checked above, so this stays a u16.
            host_port: host.map(|(lo, _)| lo.saturating_add(i as u16)),
        })
        .collect())
}

pub(super) fn check_target(target: &str) -> Result<(), String> {
    if target.starts_with('/') {
        Ok(())
    } else {
        Err(format!("the container path `{target}` must be absolute"))
    }
}

/// Short volume syntax: `TARGET` (anonymous volume), `SOURCE:TARGET[:MODE]`. A source
/// starting with `/` or `.` is a bind mount, anything else a named volume.
pub fn parse_volume(s: &str) -> Result<RawMount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, mode] => (*source, *target, *mode),
        _ => {
            return Err(format!(
                "invalid volume `{s}`: expected SOURCE:TARGET[:MODE]"
            ));
        }
    };
    check_target(target).map_err(|e| format!("invalid volume `{s}`: {e}"))?;
    let mut read_only = false;
    for option in mode.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => read_only = true,
            "rw" | "z" | "Z" | "cached" | "delegated" | "consistent" | "nocopy" => {}
            other => {
                return Err(format!(
                    "invalid volume `{s}`: unknown mode `{other}` (use ro or rw)"
                ));
            }
        }
    }
    let kind = if source.starts_with('/') || source.starts_with('.') {
        MountKind::Bind
    } else if source.starts_with('~') {
        return Err(format!(
            "invalid volume `{s}`: `~` cannot be expanded here; use a path relative to the compose file"
        ));
    } else {
        MountKind::Volume
    };
    Ok(RawMount {
        kind,
        source: source.to_string(),
        target: target.to_string(),
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases of the hand-written splitter `shell-words` replaced, kept as a regression
    /// check on the crate.
    #[test]
    fn splits_quoted_words_like_a_posix_shell() {
        assert_eq!(
            split_words(r#"sh -c 'echo "hi there"' "a\"b" c\ d"#).unwrap(),
            vec!["sh", "-c", "echo \"hi there\"", "a\"b", "c d"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("''").unwrap(), vec![""]);
        assert!(split_words("'open").is_err());
        // Also as before: a backslash-newline joins lines; a trailing backslash stays.
        assert_eq!(split_words("a\\\nb c\\").unwrap(), vec!["ab", "c\\"]);
        assert_eq!(
            split_words("\"open").unwrap_err(),
            "missing closing quote in `\"open`"
        );
    }

    /// Where the crate differs from the old splitter: like a shell, it starts a comment at a
    /// word-initial `#`, and it splits only on spaces, tabs and newlines.
    #[test]
    fn starts_a_comment_at_a_word_initial_hash() {
        assert_eq!(split_words("echo a#b #c d").unwrap(), vec!["echo", "a#b"]);
        assert_eq!(split_words("echo '#c'").unwrap(), vec!["echo", "#c"]);
        assert_eq!(split_words("a\rb").unwrap(), vec!["a\rb"]);
    }

    #[test]
    fn parses_go_style_durations_rounding_up_to_milliseconds() {
        assert_eq!(parse_duration("1s").unwrap(), 1000);
        assert_eq!(parse_duration("500ms").unwrap(), 500);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000);
        assert_eq!(parse_duration("1.5s").unwrap(), 1500);
        assert_eq!(parse_duration("10us").unwrap(), 1);
        assert_eq!(parse_duration("0").unwrap(), 0);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn expands_short_port_syntax_with_host_ips_and_ranges() {
        let p = parse_port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            p,
            vec![PortSpec {
                container_port: 80,
                protocol: "udp".into(),
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(8080)
            }]
        );
        let p = parse_port("80").unwrap();
        assert_eq!(p[0].host_port, None);
        let p = parse_port("8000-8001:80-81").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].host_port, Some(8001));
        assert_eq!(p[1].container_port, 81);
        let p = parse_port("[::1]:5432:5432").unwrap();
        assert_eq!(p[0].host_ip.as_deref(), Some("::1"));
        assert_eq!(parse_port("127.0.0.1::80").unwrap()[0].host_port, None);
        assert!(parse_port("8000-8002:80-81").is_err());
        assert!(parse_port("80/sctp").is_err());
        assert!(parse_port("x:80").is_err());
    }

    #[test]
    fn tells_bind_mounts_from_named_volumes_in_short_syntax() {
        let v = parse_volume("data:/var/lib/data:ro").unwrap();
        assert_eq!(v.kind, MountKind::Volume);
        assert!(v.read_only);
        assert_eq!(parse_volume("./x:/x").unwrap().kind, MountKind::Bind);
        assert_eq!(parse_volume("/abs:/x:rw,z").unwrap().kind, MountKind::Bind);
        assert_eq!(parse_volume("/cache").unwrap().source, "");
        assert!(parse_volume("data:rel").is_err());
        assert!(parse_volume("~/x:/x").is_err());
        assert!(parse_volume("a:/b:bogus").is_err());
    }
}
