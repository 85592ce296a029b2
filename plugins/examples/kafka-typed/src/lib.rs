//! Test plugin: produces `count` records built in code (`k{i}` / `v{i}`, header `n = i`) with
//! the typed `kafka.produce`.
//!
//! That is the call for records a plugin makes rather than reads from its config (the built-in
//! `kafka` plugin uses `produce-json`).

use orch_sdk::kafka::{self, Header, Outgoing};
use orch_sdk::{Cx, Step, StepError};
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

impl Step for KafkaTyped {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Produce generated records";
    fn step(cx: &mut Cx, c: Config) -> Result<(), StepError> {
        let detail = format!("produce {} records", c.count);
        if cx.change(orch_sdk::ChangeKind::Run, &c.topic, detail) {
            let client = kafka::open(&c.connection)?;
            let produced = client.produce(&c.topic, &records(c.count))?;
            cx.output("produced", produced);
        }
        Ok(())
    }
}

orch_sdk::export!(KafkaTyped);
