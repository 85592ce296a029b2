//! Deploy a 10-service compose project through the `deploy` plugin, and redeploy it unchanged,
//! against the same calls made directly from the host with bollard, in one run; then one-off
//! jobs through the `container` plugin against the same job run with bollard (figures go to
//! BENCHMARKS.md). Needs the project's Docker-API engine:
//!
//!     bash tests/services.sh start && source "$(bash tests/services.sh env)"
//!     cargo bench --bench deploy

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::{Prepared, median, step_duration};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVICES: usize = 10;
const ROUNDS: usize = 3;

fn compose(image: &str) -> String {
    let mut out = String::from("services:\n");
    for i in 0..SERVICES {
        out.push_str(&format!(
            "  s{i}:\n    image: {image}\n    command: sleep 3600\n    environment:\n      INDEX: \"{i}\"\n"
        ));
    }
    out
}

fn labels(project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("com.docker.compose.project={project}")],
    )])
}

async fn remove_project(docker: &Docker, project: &str) -> anyhow::Result<()> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(labels(project)),
        ..Default::default()
    };
    for c in docker.list_containers(Some(options)).await? {
        let force = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        docker
            .remove_container(&c.id.unwrap_or_default(), Some(force))
            .await?;
    }
    let _ = docker.remove_network(&format!("{project}_default")).await;
    Ok(())
}

/// What the plugin does, called directly: image check, per-service lookup by labels, create
/// and start on the project network; unchanged: image check and lookup only.
async fn native(
    docker: &Docker,
    project: &str,
    image: &str,
    create: bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let network = format!("{project}_default");
    if create {
        docker
            .create_network(NetworkCreateRequest {
                name: network.clone(),
                ..Default::default()
            })
            .await?;
    }
    for i in 0..SERVICES {
        docker.inspect_image(image).await?;
        let filter = HashMap::from([(
            "label".to_string(),
            vec![
                format!("com.docker.compose.project={project}"),
                format!("com.docker.compose.service=s{i}"),
            ],
        )]);
        let found = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filter),
                ..Default::default()
            }))
            .await?;
        if create && found.is_empty() {
            let body = ContainerCreateBody {
                image: Some(image.to_string()),
                cmd: Some(vec!["sleep".into(), "3600".into()]),
                env: Some(vec![format!("INDEX={i}")]),
                labels: Some(HashMap::from([
                    (
                        "com.docker.compose.project".to_string(),
                        project.to_string(),
                    ),
                    ("com.docker.compose.service".to_string(), format!("s{i}")),
                ])),
                host_config: Some(HostConfig {
                    network_mode: Some(network.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let name = format!("{project}-s{i}-1");
            let created = docker
                .create_container(
                    Some(CreateContainerOptions {
                        name: Some(name),
                        ..Default::default()
                    }),
                    body,
                )
                .await?;
            docker.start_container(&created.id, None).await?;
        }
    }
    Ok(start.elapsed())
}

async fn through_plugin(
    dir: &Path,
    project: &str,
    host: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let workflow = format!(
        r#"
        name = "deploy-bench"
        [connections.docker]
        kind = "docker"
        host = "{host}"
        images = ["localhost/*"]
        [steps.deploy]
        plugin = "deploy"
        allow = ["docker", "./stack"]
        with = {{ connection = "docker", project = "{project}", file = "stack/compose.yml" }}
        "#
    );
    let prepared = Prepared::new(dir, &workflow, 8).await?;
    let mut took = Vec::new();
    for _ in 0..2 {
        let report = prepared.run(Default::default(), Default::default()).await?;
        took.push(step_duration(&report, "deploy"));
    }
    Ok((took[0], took[1]))
}

/// The job both paths run: a line of output and an output file.
const JOB: &str = "echo loading; echo rows=3 >> /tmp/orch-output";
const JOBS: usize = 10;

/// What the `container` plugin asks of the engine, called directly: create, start, follow the
/// output to its end, wait, read the output file, remove.
async fn native_job(docker: &Docker, image: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec!["sh".into(), "-e".into(), "-c".into(), JOB.into()]),
        env: Some(vec!["ORCH_OUTPUT=/tmp/orch-output".into()]),
        ..Default::default()
    };
    let id = docker
        .create_container(None::<CreateContainerOptions>, body)
        .await?
        .id;
    docker.start_container(&id, None).await?;
    let options = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        tail: "all".into(),
        ..Default::default()
    };
    let mut logs = docker.logs(&id, Some(options));
    while let Some(chunk) = logs.next().await {
        chunk?;
    }
    let wait = WaitContainerOptions {
        condition: "not-running".into(),
    };
    let _ = docker.wait_container(&id, Some(wait)).next().await;
    let options = DownloadFromContainerOptions {
        path: "/tmp/orch-output".into(),
    };
    let mut file = docker.download_from_container(&id, Some(options));
    while let Some(chunk) = file.next().await {
        chunk?;
    }
    let force = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    docker.remove_container(&id, Some(force)).await?;
    Ok(start.elapsed())
}

/// [`JOBS`] jobs as `container` steps, one run each: their step durations.
async fn plugin_jobs(dir: &Path, host: &str, image: &str) -> anyhow::Result<Vec<Duration>> {
    let workflow = format!(
        r#"
        name = "jobs-bench"
        [connections.docker]
        kind = "docker"
        host = "{host}"
        images = ["localhost/*"]
        [steps.job]
        plugin = "container"
        allow = ["docker"]
        with = {{ connection = "docker", image = "{image}", script = ["{JOB}"] }}
        "#
    );
    let prepared = Prepared::new(dir, &workflow, 8).await?;
    let mut took = Vec::new();
    for _ in 0..JOBS {
        let report = prepared.run(Default::default(), Default::default()).await?;
        took.push(step_duration(&report, "job"));
    }
    Ok(took)
}

fn jobs(rt: &tokio::runtime::Runtime, host: &str, image: &str) -> anyhow::Result<()> {
    println!("## container jobs ({JOBS} each, alternating rounds)");
    let docker = Docker::connect_with_host(host)?;
    let (mut plugin, mut native) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let tmp = tempfile::tempdir()?;
        plugin.extend(rt.block_on(plugin_jobs(tmp.path(), host, image))?);
        for _ in 0..JOBS {
            native.push(rt.block_on(native_job(&docker, image))?);
        }
    }
    let (p, n) = (median(plugin), median(native));
    println!(
        "one job (medians): container plugin {p:.2?}; direct bollard {n:.2?}; ratio {:.2} (target <= 1.2)",
        p.as_secs_f64() / n.as_secs_f64()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    orch::alloc::configure();
    let host = std::env::var("ORCH_TEST_DOCKER_HOST").expect(
        "ORCH_TEST_DOCKER_HOST: run `bash tests/services.sh start` and source its env file",
    );
    let image =
        std::env::var("ORCH_TEST_IMAGE").unwrap_or_else(|_| "localhost/busybox:latest".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("## deploy ({SERVICES} services, podman Docker API), {ROUNDS} rounds");
    let [mut pd, mut pr, mut nd, mut nr] = [vec![], vec![], vec![], vec![]];
    for n in 0..ROUNDS {
        let tmp = tempfile::tempdir()?;
        std::fs::create_dir_all(tmp.path().join("stack"))?;
        std::fs::write(tmp.path().join("stack/compose.yml"), compose(&image))?;
        let id = &uuid::Uuid::now_v7().simple().to_string()[24..];
        let (plugin_project, native_project) = (format!("benchp{id}"), format!("benchn{id}"));
        let docker = Docker::connect_with_host(&host)?;
        let (p, nat) = rt.block_on(async {
            let p = through_plugin(tmp.path(), &plugin_project, &host).await;
            let nat = async {
                let deploy = native(&docker, &native_project, &image, true).await?;
                let redeploy = native(&docker, &native_project, &image, false).await?;
                anyhow::Ok((deploy, redeploy))
            }
            .await;
            remove_project(&docker, &plugin_project).await?;
            remove_project(&docker, &native_project).await?;
            anyhow::Ok((p?, nat?))
        })?;
        println!(
            "round {}: deploy plugin {:.2?} vs native {:.2?}; no-change redeploy plugin {:.2?} vs native {:.2?}",
            n + 1,
            p.0,
            nat.0,
            p.1,
            nat.1
        );
        pd.push(p.0);
        pr.push(p.1);
        nd.push(nat.0);
        nr.push(nat.1);
    }
    for (name, plugin, native) in [
        ("deploy", median(pd), median(nd)),
        ("no-change redeploy", median(pr), median(nr)),
    ] {
        println!(
            "{name} (medians): plugin {plugin:.2?}; direct bollard {native:.2?}; ratio {:.2} (target <= 1.2)",
            plugin.as_secs_f64() / native.as_secs_f64()
        );
    }
    jobs(&rt, &host, &image)
}
