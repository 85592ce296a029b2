//! Test plugin: produces `count` records built in code (`k{i}` / `v{i}`, header `n = i`) with
//! the typed `kafka.produce`.
//!
//! That is the call for records a plugin makes rather than reads from its config (the built-in
//! `kafka` plugin uses `produce-json`).

use orch_sdk::kafka::{self, Header, Outgoing};
use orch_sdk::{Plugin, StepContext, StepError};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    connection: String,
    topic: String,
    count: u32,
}

fn records(count: u32) -> Vec<Outgoing> {
    (0..count)
        .map(|i| Outgoing {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            headers: vec![Header {
                key: "n".into(),
                value: i.to_string().into_bytes(),
            }],
            partition: None,
        })
        .collect()
}

struct KafkaTyped;

impl Plugin for KafkaTyped {
    fn describe() -> orch_sdk::PluginInfo {
        orch_sdk::info::<Config>(
            "kafka-typed",
            "0.1.0",
            "Produce generated records",
            &["log", "kafka"],
        )
    }
    fn plan(_: StepContext, config: String) -> Result<Vec<orch_sdk::Change>, StepError> {
        let c: Config = orch_sdk::config(&config)?;
        let detail = format!("produce {} records", c.count);
        Ok(vec![orch_sdk::change(
            orch_sdk::ChangeKind::Run,
            c.topic,
            detail,
        )])
    }
    fn run(_: StepContext, config: String) -> Result<Vec<orch_sdk::Output>, StepError> {
        let c: Config = orch_sdk::config(&config)?;
        let client = kafka::open(&c.connection)?;
        let produced = client.produce(&c.topic, &records(c.count))?;
        Ok(vec![orch_sdk::output("produced", produced)])
    }
}

orch_sdk::export!(KafkaTyped);
