//! The docker policy without an engine: each escalation refused until its setting allows it,
//! binds and disguised binds checked, ownership, and how a refusal is reported.

use super::*;
use crate::capability::bindings::orch::plugin::docker::{
    DeviceRequest, Mount, NetworkAttachment, Port,
};
use crate::capability::{Denial, LogLevel};
use crate::workflow::Grant;
use std::sync::Mutex;

fn policy(settings: Json) -> Policy {
    let Json::Object(map) = settings else {
        panic!("an object")
    };
    Policy::from_settings(&map).unwrap()
}

/// A plain container of `image`, asking for nothing.
fn spec(image: &str) -> ContainerSpec {
    ContainerSpec {
        name: "web".into(),
        image: image.into(),
        command: None,
        entrypoint: None,
        env: vec![],
        labels: vec![],
        ports: vec![],
        mounts: vec![],
        networks: vec![],
        restart: "no".into(),
        healthcheck: None,
        user: None,
        working_dir: None,
        hostname: None,
        privileged: false,
        network_mode: None,
        pid_mode: None,
        cap_add: vec![],
        device_requests: vec![],
    }
}

fn mount(kind: MountKind, source: &str) -> Mount {
    Mount {
        kind,
        source: source.into(),
        target: "/data".into(),
        read_only: false,
    }
}

const OWNER: &str = "wf/docker";

/// A local engine whose paths have no symlinks, for a step with no grants.
fn site(granter: &Granter) -> Site<'_> {
    Site {
        granter,
        owner: OWNER,
        volumes: HashMap::new(),
        networks: HashMap::new(),
        resolve: Some(|p| Ok(p.to_path_buf())),
    }
}

/// A step granted `./deploy` (at /work/deploy), on a local engine without symlinks, with
/// `volumes` created through the connection.
fn vet_with(
    policy: &Policy,
    spec: &mut ContainerSpec,
    volumes: &[(&str, &[(&str, &str)])],
) -> Result<(), Refused> {
    let granter = Granter::new(
        "deploy",
        vec![Grant::Dir {
            guest: "deploy".into(),
            host: "/work/deploy".into(),
        }],
    );
    let volumes = volumes
        .iter()
        .map(|(name, options)| {
            let options = options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let facts = VolumeFacts {
                options,
                owner: Some(OWNER.into()),
            };
            (name.to_string(), facts)
        })
        .collect();
    let site = Site {
        volumes,
        ..site(&granter)
    };
    policy.vet(spec, &site)
}

fn vet(policy: &Policy, spec: &mut ContainerSpec) -> Result<(), Refused> {
    vet_with(policy, spec, &[])
}

const BUSYBOX: &str = "localhost/busybox";

fn busybox_only() -> Policy {
    policy(serde_json::json!({ "images": ["localhost/*"] }))
}

/// D8: a pattern cannot reach another registry or repository through its `*`.
#[test]
fn image_patterns_do_not_cross_a_registry_or_repository_boundary() {
    let p = policy(serde_json::json!({ "images": ["redis*"] }));
    assert!(p.image_allowed("redis:7"));
    assert!(p.image_allowed("redis:7-alpine"));
    assert!(!p.image_allowed("redis.attacker.tld/x:1"));
    assert!(!p.image_allowed("redis.attacker.tld/redis:7"));
}

#[test]
fn image_patterns_match_with_and_without_the_implied_tag() {
    let p = policy(serde_json::json!({ "images": ["localhost/*", "postgres:16*"] }));
    assert!(p.image_allowed("localhost/busybox"));
    assert!(p.image_allowed("localhost/busybox:1.36"));
    assert!(p.image_allowed("postgres:16.4"));
    assert!(!p.image_allowed("postgres"), "means postgres:latest");
    assert!(!p.image_allowed("docker.io/localhost/busybox"));
    assert!(!p.image_allowed("localhost/busybox/../../x:1"));
    assert!(!p.image_allowed("localhost/evil/nested:1"));
    assert!(
        !policy(serde_json::json!({})).image_allowed("busybox"),
        "none by default"
    );
}

#[test]
fn references_get_latest_only_without_tag_or_digest() {
    assert_eq!(tagged("busybox"), "busybox:latest");
    assert_eq!(
        tagged("localhost:5000/busybox"),
        "localhost:5000/busybox:latest"
    );
    assert_eq!(tagged("busybox:1"), "busybox:1");
    assert_eq!(tagged("busybox@sha256:ab"), "busybox@sha256:ab");
}

#[test]
fn paths_normalise_lexically() {
    assert_eq!(
        normalize(Path::new("/srv/./a/../b")),
        PathBuf::from("/srv/b")
    );
    assert_eq!(normalize(Path::new("/../..")), PathBuf::from("/"));
}

#[test]
fn settings_of_the_wrong_type_are_named() {
    let Json::Object(map) = serde_json::json!({ "privileged": "yes" }) else {
        unreachable!()
    };
    let e = Policy::from_settings(&map).unwrap_err();
    assert_eq!(e, "`privileged` must be true or false");
}

#[test]
fn a_plain_container_of_an_allowed_image_passes_and_others_are_refused() {
    let p = policy(serde_json::json!({ "images": ["localhost/*", "postgres:16*"] }));
    assert_eq!(vet(&p, &mut spec("localhost/busybox")), Ok(()));
    assert_eq!(vet(&p, &mut spec("postgres:16.4")), Ok(()));
    assert_eq!(
        vet(&p, &mut spec("docker.io/library/nginx")),
        Err(Refused::setting(
            "run image `docker.io/library/nginx` (container `web`)".into(),
            "`images = [\"docker.io/library/nginx\"]` (or a pattern matching it)",
        ))
    );
    assert!(
        vet(&policy(serde_json::json!({})), &mut spec(BUSYBOX)).is_err(),
        "no image without `images`"
    );
}

#[test]
fn a_privileged_container_needs_privileged() {
    let mut privileged = spec(BUSYBOX);
    privileged.privileged = true;
    assert_eq!(
        vet(&busybox_only(), &mut privileged),
        Err(Refused::setting(
            "run privileged container `web`".into(),
            "`privileged = true`"
        ))
    );
    let p = policy(serde_json::json!({ "images": ["localhost/*"], "privileged": true }));
    assert_eq!(vet(&p, &mut privileged), Ok(()));
}

#[test]
fn the_host_network_needs_host_network_and_other_namespaces_are_never_joined() {
    let host_mode = |mode: &str| {
        let mut s = spec(BUSYBOX);
        s.network_mode = Some(mode.into());
        s
    };
    let on_host = Err(Refused::setting(
        "put container `web` on the host network".into(),
        "`host_network = true`",
    ));
    assert_eq!(vet(&busybox_only(), &mut host_mode("host")), on_host);
    let mut attached = spec(BUSYBOX);
    attached.networks = vec![NetworkAttachment {
        network: "host".into(),
        aliases: vec![],
    }];
    assert_eq!(
        vet(&busybox_only(), &mut attached),
        on_host,
        "an attachment too"
    );
    assert_eq!(vet(&busybox_only(), &mut host_mode("bridge")), Ok(()));
    let p = policy(serde_json::json!({ "images": ["localhost/*"], "host_network": true }));
    assert_eq!(vet(&p, &mut host_mode("host")), Ok(()));
    assert!(matches!(
        vet(&p, &mut host_mode("container:db")),
        Err(Refused::Never { what, .. }) if what == "use network mode `container:db` for container `web`"
    ));
}

#[test]
fn host_pid_capabilities_and_gpus_each_need_their_setting() {
    let mut pid = spec(BUSYBOX);
    pid.pid_mode = Some("host".into());
    assert!(matches!(
        vet(&busybox_only(), &mut pid),
        Err(Refused::Setting { setting, .. }) if setting == "`host_pid = true`"
    ));
    pid.pid_mode = Some("container:db".into());
    assert!(matches!(
        vet(&busybox_only(), &mut pid),
        Err(Refused::Never { .. })
    ));

    let mut caps = spec(BUSYBOX);
    caps.cap_add = vec!["CAP_NET_ADMIN".into(), "net_admin".into()];
    assert!(matches!(
        vet(&busybox_only(), &mut caps),
        Err(Refused::Setting { setting, .. }) if setting == "`cap_add = [\"NET_ADMIN\"]`"
    ));
    let p = policy(serde_json::json!({ "images": ["localhost/*"], "cap_add": ["NET_ADMIN"] }));
    assert_eq!(vet(&p, &mut caps), Ok(()), "with or without CAP_");
    let p = policy(serde_json::json!({ "images": ["localhost/*"], "cap_add": ["ALL"] }));
    assert_eq!(vet(&p, &mut caps), Ok(()));

    let mut gpu = spec(BUSYBOX);
    gpu.device_requests = vec![DeviceRequest {
        driver: "nvidia".into(),
        count: -1,
        device_ids: vec![],
        capabilities: vec!["gpu".into()],
    }];
    assert!(matches!(
        vet(&busybox_only(), &mut gpu),
        Err(Refused::Setting { setting, .. }) if setting == "`gpus = true`"
    ));
}

#[test]
fn a_host_bind_outside_bind_paths_is_refused_and_one_inside_is_rewritten() {
    let p = policy(serde_json::json!({ "images": ["localhost/*"], "bind_paths": ["/srv/data"] }));
    let mut outside = spec(BUSYBOX);
    outside.mounts = vec![mount(MountKind::Bind, "/srv/data/../../etc")];
    assert_eq!(
        vet(&p, &mut outside),
        Err(Refused::setting(
            "bind-mount host path `/etc` into container `web`".into(),
            "`bind_paths = [\"/etc\"]` (or a parent)"
        ))
    );
    let mut inside = spec(BUSYBOX);
    inside.mounts = vec![mount(MountKind::Bind, "/srv/./data/app")];
    assert_eq!(vet(&p, &mut inside), Ok(()));
    assert_eq!(inside.mounts[0].source, "/srv/data/app", "the path checked");
}

#[test]
fn a_relative_bind_resolves_in_a_granted_directory_and_may_not_leave_it() {
    let p =
        policy(serde_json::json!({ "images": ["localhost/*"], "bind_paths": ["/work/deploy"] }));
    let mut granted = spec(BUSYBOX);
    granted.mounts = vec![mount(MountKind::Bind, "deploy/conf")];
    assert_eq!(vet(&p, &mut granted), Ok(()));
    assert_eq!(granted.mounts[0].source, "/work/deploy/conf");
    for source in ["other/conf", "deploy/../../etc"] {
        let mut escaping = spec(BUSYBOX);
        escaping.mounts = vec![mount(MountKind::Bind, source)];
        assert!(
            matches!(
                vet(&p, &mut escaping),
                Err(Refused::Never { what, .. }) if what == format!("bind-mount `{source}` into container `web`")
            ),
            "{source}"
        );
    }
}

#[test]
fn a_local_volume_that_binds_a_host_path_is_checked_as_a_bind() {
    let p = policy(serde_json::json!({ "images": ["localhost/*"], "bind_paths": ["/srv"] }));
    let mut disguised = spec(BUSYBOX);
    disguised.mounts = vec![mount(MountKind::Volume, "etc")];
    let bind_of = |device| [("type", "none"), ("o", "bind"), ("device", device)];
    assert_eq!(
        vet_with(&p, &mut disguised, &[("etc", &bind_of("/etc"))]),
        Err(Refused::setting(
            "mount volume `etc` (a bind of host path `/etc`) into container `web`".into(),
            "`bind_paths = [\"/etc\"]` (or a parent)"
        ))
    );
    assert_eq!(
        vet_with(&p, &mut disguised, &[("etc", &bind_of("/srv/etc"))]),
        Ok(())
    );
    assert_eq!(
        vet_with(&p, &mut disguised, &[("etc", &[])]),
        Ok(()),
        "a plain volume"
    );
    assert_eq!(
        disguised.mounts[0].source, "etc",
        "volumes are not rewritten"
    );
}

#[test]
fn a_bind_source_that_cannot_be_resolved_is_unusable_not_denied() {
    let p = policy(serde_json::json!({ "images": ["localhost/*"], "bind_paths": ["/"] }));
    let granter = Granter::new("deploy", vec![]);
    let site = Site {
        resolve: Some(|_| Err(std::io::ErrorKind::NotFound.into())),
        ..site(&granter)
    };
    let mut s = spec(BUSYBOX);
    s.mounts = vec![mount(MountKind::Bind, "/srv/missing")];
    assert!(matches!(
        p.vet(&mut s, &site),
        Err(Refused::Unusable(m)) if m.starts_with("bind source `/srv/missing` of container `web` cannot be used")
    ));
}

#[test]
fn only_what_the_connection_created_may_be_changed() {
    let mine = HashMap::from([(OWNER_LABEL.to_string(), OWNER.to_string())]);
    assert_eq!(
        owned(Some(&mine), OWNER, "stop container `a`".into()),
        Ok(())
    );
    // Another workflow's connection of the same name is someone else.
    assert_eq!(
        owned(Some(&mine), "other/docker", "stop container `a`".into()),
        Err(Refused::never(
            "stop container `a`".into(),
            format!(
                "orch touches only what this connection created (label {OWNER_LABEL}=other/docker); connections of several workflows share with the same `owner` setting"
            )
        ))
    );
    assert!(owned(None, OWNER, "remove network `n`".into()).is_err());
}

/// D1: another project's data volume is not mountable, nor a volume nobody created; a listed
/// one is.
#[test]
fn a_volume_this_connection_did_not_create_is_refused_unless_listed() {
    let granter = Granter::new("deploy", vec![]);
    let theirs = VolumeFacts {
        options: HashMap::new(),
        owner: Some("prod/docker".into()),
    };
    let site = Site {
        volumes: HashMap::from([("prod_pgdata".to_string(), theirs)]),
        ..site(&granter)
    };
    let mut s = spec(BUSYBOX);
    s.mounts = vec![mount(MountKind::Volume, "prod_pgdata")];
    assert_eq!(
        busybox_only().vet(&mut s, &site),
        Err(Refused::setting(
            "mount volume `prod_pgdata` into container `web`, which this connection did not create"
                .into(),
            "`volumes = [\"prod_pgdata\"]` (or `owner = \"prod/docker\"` to manage it as its maker)"
        ))
    );
    let listed =
        policy(serde_json::json!({ "images": ["localhost/*"], "volumes": ["prod_pgdata"] }));
    assert_eq!(listed.vet(&mut s, &site), Ok(()));

    let mut missing = spec(BUSYBOX);
    missing.mounts = vec![mount(MountKind::Volume, "not_yet")];
    assert_eq!(
        busybox_only().vet(&mut missing, &site),
        Ok(()),
        "created empty"
    );
    let mut path = spec(BUSYBOX);
    path.mounts = vec![mount(MountKind::Volume, "/etc")];
    assert!(matches!(
        listed.vet(&mut path, &site),
        Err(Refused::Never { .. })
    ));
    let mut anonymous = spec(BUSYBOX);
    anonymous.mounts = vec![mount(MountKind::Volume, "")];
    assert_eq!(busybox_only().vet(&mut anonymous, &site), Ok(()));
}

/// D1: joining another project's network (with an alias that hijacks its `db`) is refused;
/// the engine's own networks, ours and listed ones are not.
#[test]
fn a_network_this_connection_did_not_create_is_refused_unless_listed() {
    let granter = Granter::new("deploy", vec![]);
    let site = Site {
        networks: HashMap::from([
            ("prod_default".to_string(), Some("prod/docker".to_string())),
            ("handmade".to_string(), None),
            ("ours".to_string(), Some(OWNER.to_string())),
            ("bridge".to_string(), None),
        ]),
        ..site(&granter)
    };
    let joining = |network: &str| {
        let mut s = spec(BUSYBOX);
        s.networks = vec![NetworkAttachment {
            network: network.into(),
            aliases: vec!["db".into()],
        }];
        s
    };
    for (foreign, hint) in [
        (
            "prod_default",
            " (or `owner = \"prod/docker\"` to manage it as its maker)",
        ),
        ("handmade", ""),
    ] {
        assert_eq!(
            busybox_only().vet(&mut joining(foreign), &site),
            Err(Refused::setting(
                format!(
                    "attach container `web` to network `{foreign}`, which this connection did not create"
                ),
                format!("`networks = [\"{foreign}\"]`{hint}")
            ))
        );
    }
    for fine in ["ours", "bridge"] {
        assert_eq!(
            busybox_only().vet(&mut joining(fine), &site),
            Ok(()),
            "{fine}"
        );
    }
    let mut by_mode = spec(BUSYBOX);
    by_mode.network_mode = Some("prod_default".into());
    assert!(busybox_only().vet(&mut by_mode, &site).is_err());
    let listed =
        policy(serde_json::json!({ "images": ["localhost/*"], "networks": ["prod_default"] }));
    assert_eq!(listed.vet(&mut joining("prod_default"), &site), Ok(()));
}

/// D4: ports go on loopback unless the connection's `ports` widen it.
#[test]
fn ports_are_published_on_loopback_only_unless_the_policy_widens_them() {
    let publishing = |ip: Option<&str>, port: Option<u16>| {
        let mut s = spec(BUSYBOX);
        s.ports = vec![Port {
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: ip.map(String::from),
            host_port: port,
        }];
        s
    };
    let p = busybox_only();
    assert_eq!(
        vet(&p, &mut publishing(Some("127.0.0.1"), Some(8080))),
        Ok(())
    );
    assert_eq!(vet(&p, &mut publishing(Some("::1"), None)), Ok(()));
    assert_eq!(
        vet(&p, &mut publishing(None, Some(80))),
        Err(Refused::setting(
            "publish port 80 of container `web` on 0.0.0.0:80 (only loopback by default)".into(),
            "`ports = [\"0.0.0.0:80\"]`"
        ))
    );
    assert!(vet(&p, &mut publishing(Some("10.0.0.5"), Some(22))).is_err());

    let wide = policy(
        serde_json::json!({ "images": ["localhost/*"], "ports": ["127.0.0.1:*", "8080", "10.0.0.5:9000-9099"] }),
    );
    assert_eq!(vet(&wide, &mut publishing(None, Some(8080))), Ok(()));
    assert_eq!(
        vet(&wide, &mut publishing(Some("10.0.0.5"), Some(9050))),
        Ok(())
    );
    assert!(vet(&wide, &mut publishing(Some("10.0.0.5"), Some(9100))).is_err());
    assert!(
        vet(&wide, &mut publishing(None, None)).is_err(),
        "engine-picked port on every interface"
    );
    assert!(vet(&wide, &mut publishing(None, Some(80))).is_err());

    for bad in ["host:80", "1.2.3.4:x", "[::1]80", "70000"] {
        let settings = serde_json::json!({ "ports": [bad] });
        assert!(
            Policy::from_settings(settings.as_object().unwrap()).is_err(),
            "{bad}"
        );
    }
}

/// D2: a remote engine's binds name paths orch cannot see: refused unless `remote_binds`.
#[test]
fn a_remote_engine_binds_only_with_remote_binds() {
    let granter = Granter::new("deploy", vec![]);
    let remote = Site {
        resolve: None,
        ..site(&granter)
    };
    let mut s = spec(BUSYBOX);
    s.mounts = vec![mount(MountKind::Bind, "/srv/data/x")];
    let p = policy(serde_json::json!({ "images": ["localhost/*"], "bind_paths": ["/srv/data"] }));
    assert!(matches!(
        p.vet(&mut s, &remote),
        Err(Refused::Setting { setting, .. }) if setting == "`remote_binds = true`"
    ));
    let trusting = policy(
        serde_json::json!({ "images": ["localhost/*"], "bind_paths": ["/srv/data"], "remote_binds": true }),
    );
    assert_eq!(trusting.vet(&mut s, &remote), Ok(()));
}

/// D2: a symlink planted in a bind path between create and start is refused at start.
#[test]
fn a_bind_source_swapped_for_a_symlink_after_create_is_refused_at_start() {
    let p = policy(serde_json::json!({ "images": ["localhost/*"], "bind_paths": ["/srv/data"] }));
    let granter = Granter::new("deploy", vec![]);
    let unchanged = site(&granter);
    let binds = vec!["/srv/data/x".to_string()];
    assert_eq!(p.vet_start("b", &binds, &unchanged), Ok(()));
    let swapped = Site {
        resolve: Some(|p| {
            Ok(if p == Path::new("/srv/data/x") {
                PathBuf::from("/")
            } else {
                p.to_path_buf()
            })
        }),
        ..site(&granter)
    };
    assert_eq!(
        p.vet_start("b", &binds, &swapped),
        Err(Refused::never(
            "start container `b`: its bind source `/srv/data/x` now leads to `/`".into(),
            "a symlink replaced part of the path after the container was created; remove it"
        ))
    );
}

#[derive(Default)]
struct Audit(Mutex<Vec<Denial>>);

impl StepSink for Audit {
    fn log(&self, _: LogLevel, _: &str) {}
    fn progress(&self, _: u64, _: Option<u64>, _: &str) {}
    fn denied(&self, denial: &Denial) {
        self.0.lock().unwrap().push(denial.clone());
    }
}

#[test]
fn a_refusal_is_audited_and_names_the_setting_under_its_connection() {
    let audit = Arc::new(Audit::default());
    let gate = PolicyGate {
        connection: "docker".into(),
        granter: Arc::new(Granter::new("deploy", vec![])),
        sink: audit.clone(),
    };
    let refused = Refused::setting(
        "run privileged container `web`".into(),
        "`privileged = true`",
    );
    let Error::Denied(message) = gate.refuse(refused) else {
        panic!("a denial")
    };
    assert_eq!(
        message,
        "step `deploy` may not run privileged container `web`: set `privileged = true` under [connections.docker]"
    );
    assert_eq!(audit.0.lock().unwrap()[0].action, "policy");
    let unusable = gate.refuse(Refused::Unusable("bind source gone".into()));
    assert!(matches!(unusable, Error::Engine(m) if m == "bind source gone"));
    assert_eq!(audit.0.lock().unwrap().len(), 1, "an error is not audited");
}
