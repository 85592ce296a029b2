//! Test plugin: pushes the docker interface's job calls (`create-job`, `follow-logs`,
//! `wait-for`, `read-file`) past what they allow, each probe reporting what the host answered
//! as an output, so the hostile tests can check every limit in one run.
use orch_sdk::docker::{self, ContainerSpec, Pair};
use orch_sdk::{Cx, Step, StepError};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    connection: String,
    image: String,
    /// A container of another connection, to reach for.
    #[serde(default)]
    foreign: String,
    /// End by trapping with a job still running (the host must remove it).
    #[serde(default)]
    trap: bool,
}

fn spec(image: &str, script: &str) -> ContainerSpec {
    ContainerSpec {
        name: String::new(),
        image: image.into(),
        command: Some(vec!["sh".into(), "-c".into(), script.into()]),
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

fn answer<T: std::fmt::Debug>(r: Result<T, docker::Error>) -> String {
    match r {
        Ok(v) => format!("ok: {v:?}").chars().take(200).collect(),
        Err(e) => format!("{e:?}"),
    }
}

struct DockerJobs;

impl Step for DockerJobs {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Push the docker job calls past their limits";
    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        let engine = docker::open(&config.connection)?;
        if !cx.applying() {
            cx.output(
                "plan_create",
                answer(engine.create_job(&spec(&config.image, "true"))),
            );
            let plan = answer(engine.create_job(&spec(&config.image, "true")));
            return Err(StepError::Failed(format!("plan_create: {plan}")));
        }
        let mut forged = spec(&config.image, "true");
        forged.labels.push(Pair {
            key: "orch.job".into(),
            value: "host/boot/1/1".into(),
        });
        cx.output("forged_label", answer(engine.create_job(&forged)));
        let mut named = spec(&config.image, "true");
        named.name = "mine".into();
        cx.output("named", answer(engine.create_job(&named)));
        let mut privileged = spec(&config.image, "true");
        privileged.privileged = true;
        cx.output("privileged", answer(engine.create_job(&privileged)));

        // 3 MiB of output, and a 5 MiB file.
        let id = engine.create_job(&spec(
            &config.image,
            "head -c 3145728 /dev/zero | tr '\\0' x; head -c 5242880 /dev/zero > /tmp/big; echo small > /tmp/small",
        ))?;
        engine.start_container(&id)?;
        let logs = engine.follow_logs(&id)?;
        let first = logs.read(u32::MAX, u32::MAX)?;
        cx.output("first_read_bytes", first.bytes.len());
        let mut total = first.bytes.len();
        while let Ok(read) = logs.read(u32::MAX, 10_000) {
            total += read.bytes.len();
            if read.ended {
                break;
            }
        }
        cx.output("total_bytes", total);
        // `logs` is still open: at most 7 more.
        let mut streams = Vec::new();
        for _ in 0..20 {
            match engine.follow_logs(&id) {
                Ok(s) => streams.push(s),
                Err(e) => {
                    cx.output("stream_refused", answer(Err::<(), _>(e)));
                    break;
                }
            }
        }
        cx.output("streams_opened", streams.len());
        drop(streams);
        cx.output("exit", answer(engine.wait_for(&id, 30_000)));
        cx.output(
            "big_file",
            answer(engine.read_file(&id, "/tmp/big", u32::MAX)),
        );
        cx.output(
            "small_file",
            answer(
                engine
                    .read_file(&id, "/tmp/small", 100)
                    .map(|f| f.map(|b| String::from_utf8_lossy(&b).into_owned())),
            ),
        );
        cx.output("directory", answer(engine.read_file(&id, "/etc", 100)));
        cx.output("missing", answer(engine.read_file(&id, "/nope", 100)));
        if !config.foreign.is_empty() {
            cx.output(
                "foreign_logs",
                answer(engine.follow_logs(&config.foreign).map(|_| ())),
            );
            cx.output("foreign_wait", answer(engine.wait_for(&config.foreign, 10)));
            cx.output(
                "foreign_file",
                answer(engine.read_file(&config.foreign, "/etc/passwd", 100)),
            );
        }
        if config.trap {
            let id = engine.create_job(&spec(&config.image, "sleep 300"))?;
            engine.start_container(&id)?;
            cx.output("left", id);
            panic!("trapping with a job running");
        }
        Ok(())
    }
}

orch_sdk::export!(DockerJobs);
