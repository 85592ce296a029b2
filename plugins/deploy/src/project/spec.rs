//! One service's exact container spec from its compose definition: environment, labels,
//! mounts, networks, restart policy, healthcheck and devices, with paths resolved.

use super::labels::{DEPENDS_ON, NUMBER, ONEOFF, PROJECT, SERVICE};
use super::{Attachment, Context, Device, Health, MountSpec, Shared, Spec};
use crate::compose::{KeyValues, MountKind, RawService};
use crate::interpolate;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

/// `dir/rel` with `.` and `..` removed lexically; the host maps the guest path to the host's.
pub fn join_path(dir: &Path, rel: &str) -> String {
    let joined = dir.join(rel);
    let mut parts: Vec<String> = Vec::new();
    let mut absolute = false;
    for c in joined.components() {
        match c {
            std::path::Component::RootDir => absolute = true,
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => match parts.last() {
                Some(last) if last != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push("..".into()),
            },
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            std::path::Component::Prefix(p) => {
                parts.push(p.as_os_str().to_string_lossy().into_owned())
            }
        }
    }
    let body = parts.join("/");
    match (absolute, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

fn key_values(kv: Option<&KeyValues>) -> impl Iterator<Item = &(String, Option<String>)> {
    kv.into_iter().flat_map(|kv| kv.0.iter())
}

pub fn service_spec(
    ctx: &Context,
    name: &str,
    svc: &RawService,
    nets: &BTreeMap<String, Shared>,
    vols: &BTreeMap<String, Shared>,
    depends_label: &str,
    warnings: &mut Vec<String>,
) -> Result<Spec, String> {
    let at = |field: &str| format!("services.{name}.{field}");
    let image = svc.image.0.trim().to_string();
    if image.is_empty() {
        return Err(ctx.err(&at("image"), "the image is empty"));
    }

    // Environment: env files in order, then `environment`; a bare KEY takes the variable.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (i, f) in svc.env_file.iter().flat_map(|f| &f.0).enumerate() {
        let path = ctx.dir.join(&f.path);
        match (ctx.read)(&path) {
            Ok(text) => {
                let vars = interpolate::parse_dotenv(&text).map_err(|e| {
                    ctx.err(
                        &format!("{}[{i}]", at("env_file")),
                        format!("{}: {e}", path.display()),
                    )
                })?;
                env.extend(vars);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && !f.required => {}
            Err(e) => {
                return Err(ctx.err(
                    &format!("{}[{i}]", at("env_file")),
                    format!("cannot read `{}`: {e}", path.display()),
                ));
            }
        }
    }
    for (k, v) in key_values(svc.environment.as_ref()) {
        match v.clone().or_else(|| ctx.vars.get(k).cloned()) {
            Some(v) => {
                env.insert(k.clone(), v);
            }
            None => {
                env.remove(k);
            }
        }
    }

    // Labels: the service's own, then the compose ones (which win).
    let mut labels: BTreeMap<String, String> = key_values(svc.labels.as_ref())
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    for (k, v) in [
        (PROJECT, ctx.project),
        (SERVICE, name),
        (NUMBER, "1"),
        (ONEOFF, "False"),
        (DEPENDS_ON, depends_label),
    ] {
        labels.insert(k.into(), v.into());
    }

    // Volumes: named ones must be declared; relative binds resolve against the compose dir.
    let mut mounts = Vec::new();
    for (i, item) in svc.volumes.iter().enumerate() {
        let m = &item.0;
        let source = match m.kind {
            MountKind::Volume if m.source.is_empty() => String::new(),
            MountKind::Volume => match vols.get(&m.source) {
                Some(v) => v.name.clone(),
                None => {
                    return Err(ctx.err(
                        &format!("{}[{i}]", at("volumes")),
                        format!(
                            "volume `{}` is not declared in the top-level `volumes` (a bind mount starts with `/` or `.`)",
                            m.source
                        ),
                    ));
                }
            },
            MountKind::Bind if m.source.starts_with('/') => join_path(Path::new("/"), &m.source),
            MountKind::Bind => join_path(ctx.dir, &m.source),
            MountKind::Tmpfs => String::new(),
        };
        mounts.push(MountSpec {
            kind: m.kind,
            source,
            target: m.target.clone(),
            read_only: m.read_only,
        });
    }

    // Networks: declared ones (or `default`), each with the service name as an alias.
    let network_mode = svc.network_mode.as_ref().map(|m| m.0.clone());
    let mut attachments = Vec::new();
    match &network_mode {
        Some(mode) => {
            if svc.networks.is_some() {
                return Err(ctx.err(
                    &at("network_mode"),
                    "`network_mode` and `networks` cannot be combined",
                ));
            }
            if mode.starts_with("service:") || mode.starts_with("container:") {
                return Err(ctx.err(
                    &at("network_mode"),
                    format!("`{mode}` is not supported: use host, none, bridge or a network name"),
                ));
            }
        }
        None => {
            let default = BTreeMap::from([("default".to_string(), Vec::new())]);
            let listed = svc.networks.as_ref().map_or(&default, |n| &n.0);
            for (key, aliases) in listed {
                let Some(net) = nets.get(key) else {
                    return Err(ctx.err(
                        &at("networks"),
                        format!("network `{key}` is not declared in the top-level `networks`"),
                    ));
                };
                let mut all: BTreeSet<String> = aliases.iter().cloned().collect();
                all.insert(name.to_string());
                attachments.push(Attachment {
                    network: net.name.clone(),
                    aliases: all.into_iter().collect(),
                });
            }
            attachments.sort_by(|a, b| a.network.cmp(&b.network));
        }
    }

    let restart = match svc.restart.as_ref().map(|r| r.0.as_str()) {
        None => "no".to_string(),
        Some(r @ ("no" | "always" | "unless-stopped" | "on-failure")) => r.to_string(),
        // The host interface has no retry count: keep the policy, say what is dropped.
        Some(r)
            if r.strip_prefix("on-failure:")
                .is_some_and(|n| n.parse::<u32>().is_ok()) =>
        {
            warnings.push(ctx.err(
                &at("restart"),
                format!(
                    "`{r}`: the retry count is not supported, using `on-failure` without a limit"
                ),
            ));
            "on-failure".to_string()
        }
        Some(r) => {
            return Err(ctx.err(
                &at("restart"),
                format!("`{r}` is not a restart policy: use \"no\", always, on-failure[:N] or unless-stopped"),
            ));
        }
    };

    let healthcheck = svc.healthcheck.as_ref().map(|h| {
        let disabled = h.disable.is_some_and(|d| d.0);
        Health {
            test: if disabled {
                vec!["NONE".to_string()]
            } else {
                h.test.as_ref().map(|t| t.0.clone()).unwrap_or_default()
            },
            interval_ms: h.interval.map_or(0, |d| d.0),
            timeout_ms: h.timeout.map_or(0, |d| d.0),
            retries: h.retries.map_or(0, |r| r.0),
            start_period_ms: h.start_period.map_or(0, |d| d.0),
        }
    });

    let pid = svc.pid.as_ref().map(|p| p.0.clone());
    if let Some(p) = pid.as_deref().filter(|p| *p != "host") {
        return Err(ctx.err(&at("pid"), format!("`{p}` is not supported: only `host`")));
    }

    let mut devices = Vec::new();
    let reservations = svc
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.reservations.as_ref());
    for (i, d) in reservations.iter().flat_map(|r| &r.devices).enumerate() {
        let path = format!("{}[{i}]", at("deploy.resources.reservations.devices"));
        if d.capabilities.is_empty() {
            return Err(ctx.err(&path, "`capabilities` is required, e.g. [gpu]"));
        }
        if d.count.is_some() && !d.device_ids.is_empty() {
            return Err(ctx.err(&path, "`count` and `device_ids` cannot be combined"));
        }
        devices.push(Device {
            driver: d.driver.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
            // Compose: with neither count nor device_ids, all devices.
            count: match d.count {
                Some(c) => c.0,
                None if d.device_ids.is_empty() => -1,
                None => 0,
            },
            device_ids: d.device_ids.iter().map(|s| s.0.clone()).collect(),
            capabilities: d.capabilities.iter().map(|s| s.0.clone()).collect(),
        });
    }

    Ok(Spec {
        container_name: svc
            .container_name
            .as_ref()
            .map_or_else(|| format!("{}-{name}-1", ctx.project), |n| n.0.clone()),
        image,
        command: svc.command.as_ref().map(|w| w.0.clone()),
        entrypoint: svc.entrypoint.as_ref().map(|w| w.0.clone()),
        environment: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        labels,
        ports: svc.ports.iter().flat_map(|p| p.0.iter().cloned()).collect(),
        volumes: mounts,
        networks: attachments,
        restart,
        healthcheck,
        user: svc.user.as_ref().map(|s| s.0.clone()),
        working_dir: svc.working_dir.as_ref().map(|s| s.0.clone()),
        hostname: svc.hostname.as_ref().map(|s| s.0.clone()),
        privileged: svc.privileged.is_some_and(|b| b.0),
        network_mode,
        pid,
        cap_add: svc.cap_add.iter().map(|s| s.0.clone()).collect(),
        devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_relative_paths_without_dot_segments() {
        assert_eq!(join_path(Path::new("deploy"), "./data"), "deploy/data");
        assert_eq!(join_path(Path::new("deploy"), "../shared/x"), "shared/x");
        assert_eq!(join_path(Path::new(""), "./data"), "data");
        assert_eq!(join_path(Path::new(""), "."), ".");
        assert_eq!(join_path(Path::new(""), "../up"), "../up");
        assert_eq!(join_path(Path::new("/"), "/a/./b/../c"), "/a/c");
    }
}
