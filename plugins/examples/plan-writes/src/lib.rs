//! Test plugin: does the same writes from `plan` as from `run` (a SQL statement, a COPY of
//! rows, a POST, a Kafka record, a Docker volume), to show that a plan cannot change anything.
use orch_sdk::{Cx, Step, StepError};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// `[connection, statement]`: run it through `execute` (no parameters: simple protocol).
    postgres: Option<(String, String)>,
    /// `[connection, table]`: copy one row `{"id": 1}` into it with `copy-json`.
    postgres_copy: Option<(String, String)>,
    /// POST to this URL.
    post: Option<String>,
    /// `[connection, topic]`: produce one record.
    kafka: Option<(String, String)>,
    /// `[connection, volume]`: create the volume.
    docker: Option<(String, String)>,
}

struct PlanWrites;

fn write(config: &Config) -> Result<(), StepError> {
    if let Some((connection, sql)) = &config.postgres {
        let db = orch_sdk::postgres::open(connection)?;
        db.execute(sql, &[])?;
    }
    if let Some((connection, table)) = &config.postgres_copy {
        let db = orch_sdk::postgres::open(connection)?;
        let copy = format!("COPY {table} (id) FROM STDIN");
        db.copy_json(&copy, &["id".to_string()], r#"[{"id": 1}]"#)?;
    }
    if let Some(url) = &config.post {
        let request = orch_sdk::http::Request::json("POST", url, &serde_json::json!({"x": 1}));
        orch_sdk::http::send(&request)?;
    }
    if let Some((connection, topic)) = &config.kafka {
        let client = orch_sdk::kafka::open(connection)?;
        let record = orch_sdk::kafka::Outgoing {
            key: None,
            value: Some(b"from plan".to_vec()),
            headers: vec![],
            partition: None,
        };
        client.produce(topic, &[record])?;
    }
    if let Some((connection, volume)) = &config.docker {
        let engine = orch_sdk::docker::open(connection)?;
        engine.create_volume(volume, &[])?;
    }
    Ok(())
}

impl Step for PlanWrites {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Writes from its plan";
    /// The same writes in a plan as in a run: the host must refuse them in a plan.
    fn step(_: &mut Cx, config: Config) -> Result<(), StepError> {
        write(&config)
    }
}

orch_sdk::export!(PlanWrites);
