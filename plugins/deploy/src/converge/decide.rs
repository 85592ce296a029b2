//! What happens to each service, network, volume and orphan container, decided from what the
//! engine has and what the project wants; plain data, so it is tested without an engine.

use super::World;
use crate::project::{self, Project, Service, Shared};
use orch_sdk::docker::ContainerSummary;
use orch_sdk::{Change, ChangeKind};
use std::collections::BTreeSet;

/// An existing container, as much as the decision needs.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    pub state: String,
    pub hash: Option<String>,
    pub parts: Option<String>,
    pub image: Option<String>,
    /// Known only for exited one-shots, the only case where it matters.
    pub exit_code: Option<i64>,
}

/// What happens to one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    /// Remove and create again, and why.
    Recreate(String),
    /// Same config but stopped: start it; the state it was in.
    Start(String),
    Unchanged,
}

/// Decide from the container the engine has, the wanted config, and (in `run`, after the
/// pull) the image id the tag now points to.
pub fn decide(svc: &Service, existing: Option<&Existing>, image_id: Option<&str>) -> Action {
    let Some(e) = existing else {
        return Action::Create;
    };
    if e.hash.as_deref() != Some(svc.hash.as_str()) {
        let parts = project::changed_parts(e.parts.as_deref(), &svc.parts);
        return Action::Recreate(if parts.is_empty() {
            "config changed".to_string()
        } else {
            format!("config changed ({})", parts.join(", "))
        });
    }
    if let (Some(new), Some(old)) = (image_id, e.image.as_deref())
        && new != old
    {
        return Action::Recreate(format!("image {} changed", svc.spec.image));
    }
    match e.state.as_str() {
        "running" | "restarting" => Action::Unchanged,
        "exited" if svc.one_shot && e.exit_code == Some(0) => Action::Unchanged,
        state => Action::Start(state.to_string()),
    }
}

pub fn service_change(svc: &Service, action: &Action) -> Change {
    let resource = format!("service {}", svc.name);
    match action {
        Action::Create => orch_sdk::change(
            ChangeKind::Create,
            resource,
            format!(
                "create container {} from {}",
                svc.spec.container_name, svc.spec.image
            ),
        ),
        Action::Recreate(why) => {
            orch_sdk::change(ChangeKind::Replace, resource, format!("recreate: {why}"))
        }
        Action::Start(state) => {
            orch_sdk::change(ChangeKind::Update, resource, format!("start: was {state}"))
        }
        Action::Unchanged => orch_sdk::change(ChangeKind::None, resource, "unchanged"),
    }
}

pub fn shared_changes(kind: &str, shared: &[Shared], have: &BTreeSet<String>) -> Vec<Change> {
    shared
        .iter()
        .map(|s| {
            let resource = format!("{kind} {}", s.name);
            if s.external {
                orch_sdk::change(ChangeKind::None, resource, "external")
            } else if have.contains(&s.name) {
                orch_sdk::change(ChangeKind::None, resource, "exists")
            } else {
                orch_sdk::change(ChangeKind::Create, resource, "create")
            }
        })
        .collect()
}

/// Containers of services that are no longer active (removed from the file or profile-off).
pub fn orphans<'a>(p: &Project, world: &'a World) -> Vec<(&'a str, &'a ContainerSummary)> {
    let active: BTreeSet<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
    world
        .containers
        .iter()
        .filter(|(service, _)| !active.contains(service.as_str()))
        .flat_map(|(service, list)| list.iter().map(move |c| (service.as_str(), c)))
        .collect()
}

pub fn orphan_change(service: &str, c: &ContainerSummary, remove: bool) -> Change {
    let resource = format!("service {service}");
    if remove {
        orch_sdk::change(
            ChangeKind::Delete,
            resource,
            format!("remove (orphan container {})", c.name),
        )
    } else {
        orch_sdk::change(
            ChangeKind::None,
            resource,
            format!(
                "orphan container {} kept: set remove_orphans = true to remove it",
                c.name
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{Request, load};
    use std::collections::BTreeMap;
    use std::path::Path;

    fn services() -> Vec<Service> {
        // `init` is an init service: `restart: "no"` and awaited by `web`.
        let text = "services:\n  web: {image: nginx, restart: always, depends_on: {init: {condition: service_completed_successfully}}}\n  init: {image: alpine, restart: \"no\"}\n";
        let read = move |p: &Path| {
            if p == Path::new("compose.yml") {
                Ok(text.to_string())
            } else {
                Err(std::io::Error::new(std::io::ErrorKind::NotFound, "none"))
            }
        };
        let env = BTreeMap::new();
        let request = Request {
            project: "p",
            file: "compose.yml",
            profiles: &[],
            env: &env,
        };
        load(&request, &read).unwrap().0.services
    }

    fn existing(svc: &Service, state: &str) -> Existing {
        Existing {
            state: state.into(),
            hash: Some(svc.hash.clone()),
            parts: Some(project::parts_label(&svc.parts)),
            image: Some("sha256:a".into()),
            exit_code: None,
        }
    }

    #[test]
    fn creates_recreates_starts_or_leaves_each_service_alone() {
        let all = services();
        let (init, web) = (&all[0], &all[1]);
        assert_eq!(decide(web, None, None), Action::Create);
        assert_eq!(
            decide(web, Some(&existing(web, "running")), None),
            Action::Unchanged
        );
        assert_eq!(
            decide(web, Some(&existing(web, "running")), Some("sha256:b")),
            Action::Recreate("image nginx changed".into())
        );
        assert_eq!(
            decide(web, Some(&existing(web, "exited")), Some("sha256:a")),
            Action::Start("exited".into())
        );
        let mut changed = existing(web, "running");
        changed.hash = Some("other".into());
        let mut parts = web.parts.clone();
        parts.insert("environment".into(), "0000".into());
        changed.parts = Some(project::parts_label(&parts));
        assert_eq!(
            decide(web, Some(&changed), None),
            Action::Recreate("config changed (environment)".into())
        );
        changed.parts = None;
        assert_eq!(
            decide(web, Some(&changed), None),
            Action::Recreate("config changed".into())
        );
        let mut done = existing(init, "exited");
        done.exit_code = Some(0);
        assert_eq!(decide(init, Some(&done), None), Action::Unchanged);
        done.exit_code = Some(1);
        assert_eq!(
            decide(init, Some(&done), None),
            Action::Start("exited".into())
        );
    }
}
