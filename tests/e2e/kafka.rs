//! The `kafka` plugin against the project's real Kafka-protocol broker (tansu, started by
//! tests/services.sh). Broker state is checked with rdkafka directly.

use crate::harness::pg::{admin_url, psql_at};
use crate::harness::{Denial, Orch, Ran, assert_denied_and_audited, example, root, step, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::Duration;

pub(crate) fn bootstrap() -> String {
    std::env::var("ORCH_TEST_KAFKA").expect(
        "ORCH_TEST_KAFKA is not set: run `bash tests/services.sh start` and source its env file",
    )
}

fn consumer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// Partition count of `topic` on the broker (0: no such topic).
pub(crate) fn partitions(topic: &str) -> usize {
    let metadata = consumer("orch-test")
        .fetch_metadata(None, Duration::from_secs(5))
        .unwrap();
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len())
}

pub(crate) fn committed(group: &str, topic: &str, partitions: usize) -> Vec<i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition(topic, p);
    }
    let c = consumer(group)
        .committed_offsets(tpl, Duration::from_secs(5))
        .unwrap();
    c.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

fn orch() -> Orch {
    Orch::new().env("KAFKA_BOOTSTRAP", &bootstrap())
}

/// `orch --json run workflows/kafka.toml ARGS`.
fn seed(orch: &Orch, args: &[&str]) -> Ran {
    seed_command(orch, &["--json", "run"], args)
}

/// `orch plan workflows/kafka.toml ARGS`.
fn plan_seed(orch: &Orch, args: &[&str]) -> Ran {
    seed_command(orch, &["plan"], args)
}

fn seed_command(orch: &Orch, command: &[&str], args: &[&str]) -> Ran {
    let file = root().join("workflows/kafka.toml");
    let mut all = command.to_vec();
    all.push(file.to_str().unwrap());
    all.extend_from_slice(args);
    orch.orch(&all)
}

#[test]
fn seed_workflow_creates_the_topic_and_group_and_a_second_run_changes_nothing() {
    let orch = orch();
    let (topic, group) = (unique("events"), unique("etl"));
    let (t, g) = (format!("topic={topic}"), format!("group={group}"));
    // On a broker without the topic, the group's plan waits on the topic's step.
    let fresh = seed_command(&orch, &["--json", "plan"], &["-i", &t, "-i", &g]);
    assert_eq!(fresh.code, 0, "{}\n{}", fresh.stdout, fresh.stderr);
    let init = step(&fresh.report(), "kafka_init_consumer")["plan"].clone();
    assert_eq!(init["outcome"], "unknown", "{init}");
    let why = init["detail"].as_str().unwrap();
    assert!(
        why.starts_with("known after `kafka_create_topic` (topic ")
            && why.contains("does not exist"),
        "{why}"
    );
    assert_eq!(partitions(&topic), 0, "the plan created nothing");
    let ran = seed(&orch, &["-i", &t, "-i", &g, "-i", "partitions=3"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(partitions(&topic), 3);
    assert_eq!(
        committed(&group, &topic, 3),
        [0, 0, 0],
        "group committed at earliest"
    );
    let report = ran.report();
    assert_eq!(
        step(&report, "kafka_create_topic")["outputs"]["created"],
        true
    );

    let plan = plan_seed(&orch, &["-i", &t, "-i", &g, "-i", "partitions=3"]);
    assert_eq!(
        plan.stdout.matches("no change").count(),
        2,
        "{}",
        plan.stdout
    );
    let again = seed(&orch, &["-i", &t, "-i", &g, "-i", "partitions=3"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        step(&again.report(), "kafka_create_topic")["outputs"]["created"],
        false
    );
    assert_eq!(partitions(&topic), 3);

    // Only the topic when the group is empty.
    let solo = unique("solo");
    let ran = seed(&orch, &["-i", &format!("topic={solo}")]);
    assert_eq!(
        step(&ran.report(), "kafka_init_consumer")["status"],
        "skipped"
    );
    assert_eq!(partitions(&solo), 3);
}

#[test]
fn more_partitions_are_planned_and_fewer_are_refused() {
    let orch = orch();
    let topic = unique("grow");
    let t = format!("topic={topic}");
    assert_eq!(seed(&orch, &["-i", &t, "-i", "partitions=2"]).code, 0);
    let plan = plan_seed(&orch, &["-i", &t, "-i", "partitions=4"]);
    assert!(
        plan.stdout.contains("update topic grow_")
            && plan.stdout.contains("grow from 2 to 4 partitions"),
        "{}",
        plan.stdout
    );
    let grow = seed(&orch, &["-i", &t, "-i", "partitions=4"]);
    let report = grow.report();
    let create = step(&report, "kafka_create_topic");
    if create["status"] == "succeeded" {
        assert_eq!(partitions(&topic), 4);
    } else {
        // tansu 0.6 does not implement CreatePartitions: the broker's refusal is reported as is.
        let error = create["error"].as_str().unwrap();
        assert!(
            error.contains("UnsupportedFeature") && error.contains("grow topic"),
            "{error}"
        );
        assert_eq!(partitions(&topic), 2, "nothing half-done");
    }
    let shrink = seed(&orch, &["-i", &t, "-i", "partitions=1"]);
    assert_eq!(shrink.code, 1);
    let error = step(&shrink.report(), "kafka_create_topic")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("Kafka cannot shrink a topic"), "{error}");
}

const PIPE: &str = r#"
name = "pipe"
[inputs.topic]
[inputs.group]
[inputs.records]
type = "array"
[connections.kafka]
kind = "kafka"
bootstrap = "${{ env.KAFKA_BOOTSTRAP }}"
[steps.topic]
plugin = "kafka"
allow = ["kafka"]
with = { action = "create-topic", connection = "kafka", topic = "${{ inputs.topic }}", partitions = 3 }
[steps.init]
plugin = "kafka"
needs = ["topic"]
allow = ["kafka"]
with = { action = "init-consumer", connection = "kafka", topic = "${{ inputs.topic }}", group = "${{ inputs.group }}" }
[steps.produce]
plugin = "kafka"
needs = ["init"]
allow = ["kafka"]
with = { action = "produce", connection = "kafka", topic = "${{ inputs.topic }}", records = "${{ inputs.records }}" }
[steps.consume]
plugin = "kafka"
needs = ["produce"]
allow = ["kafka"]
with = { action = "consume", connection = "kafka", topic = "${{ inputs.topic }}", group = "${{ inputs.group }}", max_records = 1000, timeout_ms = 10000 }
"#;

/// [`PIPE`] producing `records` into `topic`, then consuming them as `group`.
fn run_pipe(orch: &Orch, topic: &str, group: &str, records: &[serde_json::Value]) -> Ran {
    orch.run(
        PIPE,
        &[
            "-i",
            &format!("topic={topic}"),
            "-i",
            &format!("group={group}"),
            "-i",
            &format!("records={}", serde_json::Value::from(records)),
        ],
    )
}

#[test]
fn produced_records_come_back_with_their_keys_values_and_headers_and_offsets_are_committed() {
    let orch = orch();
    let (topic, group) = (unique("pipe"), unique("pipeg"));
    let records: Vec<serde_json::Value> = (0..50)
        .map(|i| serde_json::json!({"key": format!("k{i}"), "value": {"n": i, "s": format!("v{i}")}, "headers": {"trace": format!("t{i}")}}))
        .collect();
    let ran = run_pipe(&orch, &topic, &group, &records);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = ran.report();
    assert_eq!(step(&report, "produce")["outputs"]["produced"], 50);
    let consumed = step(&report, "consume")["outputs"]["records"]
        .as_array()
        .unwrap()
        .clone();
    let mut got: Vec<(String, serde_json::Value, String)> = consumed
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                r["value"].clone(),
                r["headers"]["trace"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort_by_key(|(k, _, _)| k[1..].parse::<u32>().unwrap());
    let want: Vec<(String, serde_json::Value, String)> = records
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                r["value"].clone(),
                r["headers"]["trace"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, want);
    let offsets = committed(&group, &topic, 3);
    assert_eq!(
        offsets.iter().sum::<i64>(),
        50,
        "the group committed past every record: {offsets:?}"
    );
}

#[test]
fn a_record_the_broker_cannot_take_fails_the_produce_step_with_its_reason() {
    let orch = orch();
    let (topic, group) = (unique("refused"), unique("refusedg"));
    // The topic has 3 partitions: the 41st record names an 8th.
    let records: Vec<serde_json::Value> = (0..80)
        .map(|i| match i {
            40 => serde_json::json!({"key": "lost", "value": "x", "partition": 7}),
            i => serde_json::json!({"key": format!("k{i}"), "value": i}),
        })
        .collect();
    let ran = run_pipe(&orch, &topic, &group, &records);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let report = ran.report();
    let produce = step(&report, "produce");
    assert_eq!(produce["status"], "failed", "{produce}");
    assert_eq!(
        produce["attempts"], 1,
        "a refusal is not retried: {produce}"
    );
    let error = produce["error"].as_str().unwrap();
    assert!(error.contains("Unknown partition"), "{error}");
    assert_eq!(step(&report, "consume")["status"], "upstream_failed");
}

#[test]
fn records_a_plugin_builds_in_code_go_through_the_typed_produce() {
    let orch = orch();
    let topic = unique("typed");
    let workflow = format!(
        r#"
name = "kafka-typed"
[connections.kafka]
kind = "kafka"
bootstrap = "${{{{ env.KAFKA_BOOTSTRAP }}}}"
[steps.topic]
plugin = "kafka"
allow = ["kafka"]
with = {{ action = "create-topic", connection = "kafka", topic = "{topic}", partitions = 2 }}
[steps.produce]
plugin = "{plugin}"
needs = ["topic"]
allow = ["kafka"]
with = {{ connection = "kafka", topic = "{topic}", count = 20 }}
[steps.consume]
plugin = "kafka"
needs = ["produce"]
allow = ["kafka"]
with = {{ action = "consume", connection = "kafka", topic = "{topic}", offsets = [{{ partition = 0, offset = 0 }}, {{ partition = 1, offset = 0 }}], max_records = 100, timeout_ms = 10000, commit = false }}
"#,
        plugin = example("kafka-typed")
    );
    let ran = orch.run(&workflow, &[]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = ran.report();
    assert_eq!(step(&report, "produce")["outputs"]["produced"], 20);
    let mut got: Vec<(u32, String, String)> = step(&report, "consume")["outputs"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let n = r["headers"]["n"].as_str().unwrap().parse().unwrap();
            let text = |v: &serde_json::Value| v.as_str().unwrap().to_string();
            (n, text(&r["key"]), text(&r["value"]))
        })
        .collect();
    got.sort();
    let want: Vec<(u32, String, String)> = (0..20)
        .map(|i| (i, format!("k{i}"), format!("v{i}")))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn invalid_topic_names_and_partition_counts_are_rejected_before_any_call() {
    // The connection points nowhere: any broker call would be `unavailable`, not `invalid`.
    let orch = Orch::new().env("KAFKA_BOOTSTRAP", "127.0.0.1:1");
    let long = "a".repeat(250);
    for (topic, partitions, expected) in [
        ("a b", 1, "invalid topic name `a b`"),
        ("..", 1, "invalid topic name `..`"),
        (".", 1, "invalid topic name `.`"),
        (long.as_str(), 1, "invalid topic name"),
        ("ok", 0, "`partitions` must be at least 1, got 0"),
        ("ok", -2, "`partitions` must be at least 1, got -2"),
    ] {
        let (t, p) = (format!("topic={topic}"), format!("partitions={partitions}"));
        let ran = seed(&orch, &["-i", &t, "-i", &p]);
        assert_eq!(ran.code, 1, "{topic}");
        let create = step(&ran.report(), "kafka_create_topic").clone();
        assert_eq!(create["attempts"], 1, "not retried: {create}");
        let error = create["error"].as_str().unwrap();
        assert!(
            error.starts_with("invalid config: ") && error.contains(expected),
            "{topic}: {error}"
        );
    }
}

#[test]
fn a_down_broker_is_a_retryable_error_within_the_step_timeout() {
    let orch = Orch::new().env("KAFKA_BOOTSTRAP", "127.0.0.1:1");
    let ran = orch.run(
        r#"
        name = "down"
        [connections.kafka]
        kind = "kafka"
        bootstrap = "${{ env.KAFKA_BOOTSTRAP }}"
        [steps.topic]
        plugin = "kafka"
        allow = ["kafka"]
        with = { action = "create-topic", connection = "kafka", topic = "never" }
        retry = { max = 1, backoff = "100ms" }
        timeout = "30s"
        "#,
        &[],
    );
    assert_eq!(ran.code, 1);
    let topic = step(&ran.report(), "topic").clone();
    assert_eq!(topic["attempts"], 2, "retried: {topic}");
    assert!(
        topic["error"]
            .as_str()
            .unwrap()
            .starts_with("kafka unavailable"),
        "{topic}"
    );
    assert!(
        topic["duration"].as_u64().unwrap() < 30_000,
        "never a hang: {topic}"
    );
}

#[test]
fn an_ungranted_kafka_connection_is_denied_and_audited() {
    let orch = orch();
    let ran = orch.run(
        r#"
        name = "sneaky"
        [connections.kafka]
        kind = "kafka"
        bootstrap = "${{ env.KAFKA_BOOTSTRAP }}"
        [steps.peek]
        plugin = "kafka"
        with = { action = "consume", connection = "kafka", topic = "anything", group = "g" }
        "#,
        &[],
    );
    assert_eq!(ran.code, 1);
    let denial = Denial {
        step: "peek",
        error: "denied: step `peek` may not open connection `kafka`: add \"kafka\" to its `allow`",
        action: "connection",
        target: "kafka",
    };
    assert_denied_and_audited(&orch, &ran.report(), &denial);
}

#[test]
fn kafka_to_postgres_etl_upserts_the_consumed_events() {
    let orch = orch().env("POSTGRES_ADMIN_URL", &admin_url());
    let (topic, group, db) = (unique("orders"), unique("orders_pg"), unique("etlk"));
    let file = root().join("workflows/etl-kafka-postgres.toml");
    for _ in 0..2 {
        let ran = orch.orch(&[
            "--json",
            "run",
            file.to_str().unwrap(),
            "-i",
            &format!("topic={topic}"),
            "-i",
            &format!("group={group}"),
            "-i",
            &format!("target_db={db}"),
        ]);
        assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
        assert_eq!(
            step(&ran.report(), "consume")["outputs"]["count"],
            3,
            "each run consumes the new batch only"
        );
    }
    let mut url = url::Url::parse(&admin_url()).unwrap();
    url.set_path(&db);
    assert_eq!(
        psql_at(
            url.as_str(),
            "SELECT string_agg(id || ':' || customer || ':' || amount, ' ' ORDER BY id) FROM orders"
        ),
        "1:ana:10.50 2:rui:7.25 3:ana:4.50"
    );
}
