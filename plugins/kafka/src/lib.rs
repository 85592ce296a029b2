//! Built-in `kafka`: idempotent topics and consumer groups, plus produce and consume for ETL.
//!
//! Every call goes through the host's `kafka` interface on a connection the step is granted;
//! the plugin never sees the bootstrap servers or credentials.

use orch_sdk::kafka::{self, Client, ConsumeRequest, PartitionOffset, TopicConfig};
use orch_sdk::{ChangeKind, Cx, Step, StepError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

/// `with` of a `kafka` step; `action` picks the variant.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
enum Config {
    /// A topic with `partitions`; an existing topic is grown when more are asked (Kafka cannot
    /// shrink one).
    CreateTopic {
        connection: String,
        topic: String,
        #[serde(default = "one")]
        partitions: i64,
        #[serde(default = "one")]
        replication_factor: i64,
        /// Topic configs for a new topic, e.g. { "retention.ms" = "86400000" }.
        #[serde(default)]
        configs: BTreeMap<String, String>,
    },
    /// Make a consumer group exist on a topic with committed offsets at `earliest` or `latest`
    /// on every partition it has no commit for.
    InitConsumer {
        connection: String,
        topic: String,
        group: String,
        #[serde(default)]
        start: Start,
    },
    /// Produce records: `value` is a string, or any JSON (sent as JSON text).
    Produce(Produce<Vec<Record>>),
    /// Consume a batch: at the group's committed offsets, or from explicit `offsets`.
    Consume {
        connection: String,
        topic: String,
        #[serde(default)]
        group: Option<String>,
        #[serde(default)]
        offsets: Vec<Position>,
        #[serde(default = "default_max")]
        max_records: u32,
        #[serde(default = "default_timeout")]
        timeout_ms: u32,
        /// Commit the next offsets to the group after the batch (default true).
        #[serde(default = "yes")]
        commit: bool,
    },
}

#[derive(Deserialize, schemars::JsonSchema, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Start {
    #[default]
    Earliest,
    Latest,
}

/// `produce`; `records` is typed in the schema ([`Config`]) and left as JSON text when parsed
/// on its own ([`Action::pick`]), to be handed to the host undecoded.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Produce<R> {
    /// The tag, present when parsed directly rather than through [`Config`].
    #[serde(default, rename = "action")]
    #[schemars(skip)]
    _action: Option<String>,
    connection: String,
    topic: String,
    records: R,
}

/// A parsed `with`: `produce` straight into its struct (records can be many, and an internally
/// tagged enum buffers its whole input before picking the variant), the rest through [`Config`],
/// whose schema it publishes.
enum Action<'a> {
    Produce(Produce<&'a RawValue>),
    Other(Config),
}

impl<'a> Action<'a> {
    fn pick(action: &str, text: &'a str) -> Result<Self, serde_json::Error> {
        if action == "produce" {
            serde_json::from_str(text).map(Action::Produce)
        } else {
            serde_json::from_str(text).map(Action::Other)
        }
    }
}

impl<'de> Deserialize<'de> for Action<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        orch_sdk::by_action(d, Action::pick)
    }
}

impl schemars::JsonSchema for Action<'_> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        Config::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Config::json_schema(generator)
    }
}

#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Record {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Json,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    partition: Option<i32>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Position {
    partition: i32,
    offset: i64,
}

fn one() -> i64 {
    1
}
fn yes() -> bool {
    true
}
fn default_max() -> u32 {
    100
}
fn default_timeout() -> u32 {
    5000
}

/// Kafka's own rules: `[a-zA-Z0-9._-]`, at most 249 characters, not `.` or `..`.
fn check_topic(topic: &str) -> Result<(), StepError> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StepError::InvalidConfig(format!(
            "invalid topic name `{}`: use 1 to 249 of [a-zA-Z0-9._-], not `.` or `..`",
            topic.escape_debug()
        )))
    }
}

fn check_group(group: &str) -> Result<(), StepError> {
    if group.trim().is_empty() || group.len() > 249 {
        return Err(StepError::InvalidConfig(
            "the consumer group name must be 1 to 249 characters".into(),
        ));
    }
    Ok(())
}

fn positive(what: &str, n: i64) -> Result<u32, StepError> {
    u32::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| StepError::InvalidConfig(format!("`{what}` must be at least 1, got {n}")))
}

fn create_topic(
    client: &Client,
    topic: &str,
    partitions: u32,
    replication: u32,
    configs: &BTreeMap<String, String>,
    cx: &mut Cx,
) -> Result<(), StepError> {
    let resource = format!("topic {topic}");
    let existing = client.describe_topic(topic)?;
    let (change, created) = match &existing {
        None => {
            let detail =
                format!("create, {partitions} partitions, replication factor {replication}");
            (
                Some(orch_sdk::change(ChangeKind::Create, resource, detail)),
                true,
            )
        }
        Some(t) if t.partitions == partitions => (None, false),
        Some(t) if t.partitions < partitions => {
            let detail = format!("grow from {} to {partitions} partitions", t.partitions);
            (
                Some(orch_sdk::change(ChangeKind::Update, resource, detail)),
                false,
            )
        }
        Some(t) => {
            return Err(StepError::Failed(format!(
                "topic `{topic}` has {} partitions and Kafka cannot shrink a topic: ask for {} or more, or recreate it",
                t.partitions, t.partitions
            )));
        }
    };
    if let Some(change) = change
        && cx.declare(change)
    {
        if existing.is_none() {
            let configs: Vec<TopicConfig> = configs
                .iter()
                .map(|(k, v)| TopicConfig {
                    name: k.clone(),
                    value: v.clone(),
                })
                .collect();
            client.create_topic(topic, partitions, replication, &configs)?;
        } else {
            client.create_partitions(topic, partitions)?;
        }
    }
    let replication_factor = existing
        .as_ref()
        .map_or(replication, |t| t.replication_factor);
    cx.output("topic", topic);
    cx.output("partitions", partitions);
    cx.output("replication_factor", replication_factor);
    cx.output("created", created);
    Ok(())
}

fn offsets_json(offsets: &[PartitionOffset]) -> Json {
    offsets
        .iter()
        .map(|o| serde_json::json!({"partition": o.partition, "offset": o.offset}))
        .collect()
}

fn init_consumer(
    client: &Client,
    topic: &str,
    group: &str,
    start: Start,
    cx: &mut Cx,
) -> Result<(), StepError> {
    let committed = client.committed(group, topic)?;
    let missing: Vec<i32> = committed
        .iter()
        .filter(|o| o.offset < 0)
        .map(|o| o.partition)
        .collect();
    let mut offsets = committed;
    if !missing.is_empty() {
        let marks = client.watermarks(topic)?;
        let starts: Vec<PartitionOffset> = marks
            .iter()
            .filter(|(p, _, _)| missing.contains(p))
            .map(|&(partition, low, high)| PartitionOffset {
                partition,
                offset: match start {
                    Start::Earliest => low,
                    Start::Latest => high,
                },
            })
            .collect();
        let at = match start {
            Start::Earliest => "earliest",
            Start::Latest => "latest",
        };
        if cx.change(
            ChangeKind::Create,
            format!("consumer group {group}"),
            format!(
                "commit offsets at {at} on {} partitions of {topic}",
                starts.len()
            ),
        ) {
            client.commit(group, topic, &starts)?;
            offsets = client.committed(group, topic)?;
        }
    }
    cx.output("group", group);
    cx.output("topic", topic);
    cx.output("offsets", offsets_json(&offsets));
    Ok(())
}

/// Produce `records` (a JSON array, handed to the host as it is), or count them for a plan.
fn produce(
    connection: &str,
    topic: &str,
    records: &RawValue,
    cx: &mut Cx,
) -> Result<(), StepError> {
    check_topic(topic)?;
    let client = kafka::open(connection)?;
    // The count is known before producing only by parsing the records, which a run leaves to
    // the host: a run declares the change once it is made.
    let count = if cx.applying() {
        let produced = client.produce_json(topic, records.get())?;
        cx.output("produced", produced);
        cx.output("topic", topic);
        produced
    } else {
        let all: Vec<serde::de::IgnoredAny> = orch_sdk::config(records.get())?;
        all.len() as u64
    };
    cx.change(
        ChangeKind::Run,
        format!("topic {topic}"),
        format!("produce {count} records"),
    );
    Ok(())
}

fn text(bytes: Option<Vec<u8>>) -> Json {
    bytes.map_or(Json::Null, |b| {
        Json::String(String::from_utf8_lossy(&b).into_owned())
    })
}

fn consume(client: &Client, request: ConsumeRequest, cx: &mut Cx) -> Result<(), StepError> {
    let records: Vec<Json> = client
        .consume(&request)?
        .into_iter()
        .map(|r| {
            let value = r.value.map(|v| {
                // JSON values come back as JSON; anything else as text.
                serde_json::from_slice::<Json>(&v)
                    .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&v).into_owned()))
            });
            let headers: Map<String, Json> = r
                .headers
                .into_iter()
                .map(|h| (h.key, text(Some(h.value))))
                .collect();
            serde_json::json!({
                "partition": r.partition,
                "offset": r.offset,
                "key": text(r.key),
                "value": value,
                "headers": headers,
                "timestamp": r.timestamp,
            })
        })
        .collect();
    cx.output("count", records.len());
    cx.output("records", records);
    Ok(())
}

/// Validate everything that can be checked without the broker, then plan or run.
fn act(action: Action<'_>, cx: &mut Cx) -> Result<(), StepError> {
    let config = match action {
        Action::Produce(p) => return produce(&p.connection, &p.topic, p.records, cx),
        Action::Other(config) => config,
    };
    match config {
        Config::CreateTopic {
            connection,
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            check_topic(&topic)?;
            let partitions = positive("partitions", partitions)?;
            let replication = positive("replication_factor", replication_factor)?;
            let client = kafka::open(&connection)?;
            create_topic(&client, &topic, partitions, replication, &configs, cx)
        }
        Config::InitConsumer {
            connection,
            topic,
            group,
            start,
        } => {
            check_topic(&topic)?;
            check_group(&group)?;
            let client = kafka::open(&connection)?;
            init_consumer(&client, &topic, &group, start, cx)
        }
        Config::Produce(p) => {
            // Reached only when `produce` is parsed through the enum; [`Action::pick`] avoids that.
            let records = serde_json::value::to_raw_value(&p.records)
                .map_err(|e| StepError::InvalidConfig(e.to_string()))?;
            produce(&p.connection, &p.topic, &records, cx)
        }
        Config::Consume {
            connection,
            topic,
            group,
            offsets,
            max_records,
            timeout_ms,
            commit,
        } => {
            check_topic(&topic)?;
            if let Some(g) = &group {
                check_group(g)?;
            }
            if group.is_none() && offsets.is_empty() {
                return Err(StepError::InvalidConfig(
                    "give a `group` or explicit `offsets`".into(),
                ));
            }
            let client = kafka::open(&connection)?;
            let detail = format!("read up to {max_records} records");
            if cx.change(ChangeKind::Run, format!("topic {topic}"), detail) {
                let request = ConsumeRequest {
                    topic,
                    group,
                    offsets: offsets
                        .iter()
                        .map(|p| PartitionOffset {
                            partition: p.partition,
                            offset: p.offset,
                        })
                        .collect(),
                    max_records,
                    timeout_ms,
                    commit,
                };
                consume(&client, request, cx)?;
            }
            Ok(())
        }
    }
}

struct Kafka;

impl Step for Kafka {
    type Config<'a> = Action<'a>;
    const DESCRIPTION: &'static str = "Kafka topics, consumer groups, produce and consume";

    fn parse(config: &str) -> Result<Action<'_>, StepError> {
        orch_sdk::config_by_action(config, Action::pick)
    }

    fn step(cx: &mut Cx, action: Action<'_>) -> Result<(), StepError> {
        act(action, cx)
    }
}

orch_sdk::export!(Kafka);
