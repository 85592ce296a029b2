//! Produce and consume 100k small records through the `kafka` plugin, against the same rdkafka
//! client used natively from the host, in one run (figures go to BENCHMARKS.md). Native
//! produce is timed two ways: with `FutureProducer` (rdkafka's async API, this bench's baseline
//! since issue 4) and with a `ThreadedProducer` whose delivery callback counts (what the
//! plugin's host does since issue 20). Needs the project's broker:
//!
//!     bash tests/services.sh start && source "$(bash tests/services.sh env)"
//!     cargo bench --bench kafka_throughput

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

mod common;
use common::{Prepared, median, step_duration};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: usize = 100_000;
const ROUNDS: usize = 5;

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("log_level", "3");
    c
}

/// The plugin's producer settings (`capability/kafka/produce.rs`).
fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut c = config(bootstrap);
    c.set("linger.ms", "5")
        .set("acks", "all")
        .set("queue.buffering.max.messages", "1000000");
    c
}

/// Timed from client creation, as the plugin's step creates its client too.
async fn native_produce(bootstrap: &str, topic: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let producer: FutureProducer = producer_config(bootstrap).create()?;
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let (key, value) = (format!("k{i}"), format!("value-{i}"));
        let record = FutureRecord::to(topic).key(&key).payload(&value);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for d in futures::future::join_all(deliveries).await {
        d?.map_err(|(e, _)| e)?;
    }
    Ok(start.elapsed())
}

/// Counts delivery reports, for [`native_produce_counted`].
#[derive(Default)]
struct Counted(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64);

impl rdkafka::ClientContext for Counted {}

impl rdkafka::producer::ProducerContext for Counted {
    type DeliveryOpaque = ();
    fn delivery(&self, report: &rdkafka::message::DeliveryResult<'_>, (): ()) {
        let count = if report.is_ok() { &self.0 } else { &self.1 };
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The same records with no future per record: the callback counts, and the end is when every
/// record has a report (checked every 100 µs).
fn native_produce_counted(bootstrap: &str, topic: &str) -> anyhow::Result<Duration> {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    use std::sync::atomic::Ordering;
    let start = Instant::now();
    let producer: ThreadedProducer<Counted> =
        producer_config(bootstrap).create_with_context(Counted::default())?;
    for i in 0..RECORDS {
        let (key, value) = (format!("k{i}"), format!("value-{i}"));
        let record = BaseRecord::to(topic).key(&key).payload(&value);
        producer.send(record).map_err(|(e, _)| e)?;
    }
    let Counted(delivered, failed) = producer.context().as_ref();
    while delivered.load(Ordering::Acquire) + failed.load(Ordering::Acquire) < RECORDS as u64 {
        std::thread::sleep(Duration::from_micros(100));
    }
    anyhow::ensure!(
        failed.load(Ordering::Acquire) == 0,
        "native deliveries failed"
    );
    Ok(start.elapsed())
}

fn native_consume(bootstrap: &str, topic: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", "bench-native")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut n = 0;
    while n < RECORDS {
        if let Some(m) = consumer.poll(Duration::from_secs(10)) {
            m?;
            n += 1;
        } else {
            anyhow::bail!("native consume stalled at {n}");
        }
    }
    Ok(start.elapsed())
}

/// The plugin path: a workflow step creating the topic, one producing, one consuming.
async fn through_plugin(
    bootstrap: &str,
    topic: &str,
    records: &[serde_json::Value],
) -> anyhow::Result<(Duration, Duration)> {
    let tmp = tempfile::tempdir()?;
    let workflow = format!(
        r#"
        name = "kafka-bench"
        [inputs.records]
        type = "array"
        [connections.kafka]
        kind = "kafka"
        bootstrap = "{bootstrap}"
        [steps.topic]
        plugin = "kafka"
        allow = ["kafka"]
        with = {{ action = "create-topic", connection = "kafka", topic = "{topic}", partitions = 3 }}
        [steps.produce]
        plugin = "kafka"
        needs = ["topic"]
        allow = ["kafka"]
        memory = "1GiB"
        with = {{ action = "produce", connection = "kafka", topic = "{topic}", records = "${{{{ inputs.records }}}}" }}
        [steps.consume]
        plugin = "kafka"
        needs = ["produce"]
        allow = ["kafka"]
        memory = "1GiB"
        with = {{ action = "consume", connection = "kafka", topic = "{topic}", offsets = [{{ partition = 0, offset = 0 }}, {{ partition = 1, offset = 0 }}, {{ partition = 2, offset = 0 }}], max_records = {RECORDS}, timeout_ms = 120000, commit = false }}
        "#
    );
    let prepared = Prepared::new(tmp.path(), &workflow, 8).await?;
    let inputs = [(
        "records".to_string(),
        serde_json::Value::from(records.to_vec()),
    )]
    .into_iter()
    .collect();
    let report = prepared.run(inputs, Default::default()).await?;
    let consumed = report
        .steps
        .iter()
        .find(|s| s.id == "consume")
        .map(|s| s.outputs["count"].clone());
    assert_eq!(consumed, Some(serde_json::json!(RECORDS)));
    Ok((
        step_duration(&report, "produce"),
        step_duration(&report, "consume"),
    ))
}

/// The native path: the same rdkafka client called from the host. Produce with futures,
/// produce counted (into a topic of its own), consume.
async fn natively(bootstrap: &str, topic: &str) -> anyhow::Result<[Duration; 3]> {
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        config(bootstrap).create()?;
    let counted_topic = format!("{topic}_counted");
    let new =
        |name| rdkafka::admin::NewTopic::new(name, 3, rdkafka::admin::TopicReplication::Fixed(1));
    admin
        .create_topics(
            [&new(topic), &new(&counted_topic)],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await?;
    let produce = native_produce(bootstrap, topic).await?;
    let b = bootstrap.to_string();
    let counted =
        tokio::task::spawn_blocking(move || native_produce_counted(&b, &counted_topic)).await??;
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    let consume = tokio::task::spawn_blocking(move || native_consume(&b, &t)).await??;
    Ok([produce, counted, consume])
}

fn main() -> anyhow::Result<()> {
    orch::alloc::configure();
    let bootstrap = std::env::var("ORCH_TEST_KAFKA")
        .expect("ORCH_TEST_KAFKA: run `bash tests/services.sh start` and source its env file");
    let records: Vec<serde_json::Value> = (0..RECORDS)
        .map(|i| serde_json::json!({"key": format!("k{i}"), "value": format!("value-{i}")}))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rate = |d: Duration| RECORDS as f64 / d.as_secs_f64();
    println!(
        "## kafka throughput ({RECORDS} records of ~12 bytes, 3 partitions, tansu), {ROUNDS} rounds"
    );
    let [mut pp, mut pc, mut np, mut nn, mut nc] = [vec![], vec![], vec![], vec![], vec![]];
    for n in 0..ROUNDS {
        let id = &uuid::Uuid::now_v7().simple().to_string()[20..];
        let (plugin_topic, native_topic) =
            (format!("bench_plugin_{id}"), format!("bench_native_{id}"));
        // Alternate which path goes first: the broker shares the machine's two cores.
        let ((p_produce, p_consume), [n_produce, n_counted, n_consume]) = rt.block_on(async {
            if n % 2 == 0 {
                let p = through_plugin(&bootstrap, &plugin_topic, &records).await?;
                anyhow::Ok((p, natively(&bootstrap, &native_topic).await?))
            } else {
                let native = natively(&bootstrap, &native_topic).await?;
                anyhow::Ok((
                    through_plugin(&bootstrap, &plugin_topic, &records).await?,
                    native,
                ))
            }
        })?;
        println!(
            "round {}: produce plugin {p_produce:.0?} vs native {n_produce:.0?} (counted {n_counted:.0?}); consume plugin {p_consume:.0?} vs native {n_consume:.0?}",
            n + 1
        );
        pp.push(p_produce);
        pc.push(p_consume);
        np.push(n_produce);
        nn.push(n_counted);
        nc.push(n_consume);
    }
    let plugin_produce = median(pp);
    for (name, plugin, native) in [
        ("produce", plugin_produce, median(np)),
        ("produce, native counted", plugin_produce, median(nn)),
        ("consume", median(pc), median(nc)),
    ] {
        println!(
            "{name} (medians): plugin {plugin:.0?} = {:.0} rec/s; native rdkafka {native:.0?} = {:.0} rec/s; ratio {:.2}",
            rate(plugin),
            rate(native),
            rate(plugin) / rate(native)
        );
    }
    Ok(())
}
