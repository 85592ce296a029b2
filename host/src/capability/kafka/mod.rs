//! Host side of `orch:plugin/kafka`: admin, produce and consume with rdkafka on connections the
//! step is granted. Bootstrap servers and SASL settings never cross into the sandbox.

mod consume;
mod produce;
mod records;

use super::connections::{
    ConnectionData, ConnectionGate, ConnectionView, OpenError, connection_view,
};
use crate::capability::bindings::orch::plugin::kafka::{
    BrokerError, ConsumeRequest, Error, GroupInfo, Host, HostClient, Incoming, Outgoing,
    PartitionOffset, TopicConfig, TopicInfo,
};
use crate::workflow::ConnectionKind;
use consume::{consume_batch, consumer, partitions};
use produce::{Batch, Producer};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use records::for_each_record;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Linker, Resource};

/// How long a metadata or admin request may take before the broker counts as unavailable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// An open Kafka client, owned by the guest through a resource handle.
#[allow(
    unreachable_pub,
    reason = "bindgen! re-exports its `with` types with `pub use`"
)]
pub struct KafkaClient {
    config: ClientConfig,
    admin: Arc<AdminClient<DefaultClientContext>>,
    producer: Option<Producer>,
}

/// Unreachable brokers and timeouts are retryable; refusals are not.
fn classify(e: KafkaError) -> Error {
    let code = e.rdkafka_error_code();
    match code {
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::QueueFull,
        ) => Error::Unavailable(e.to_string()),
        Some(code) => Error::Broker(BrokerError {
            code: format!("{code:?}"),
            message: e.to_string(),
        }),
        None => Error::Other(e.to_string()),
    }
}

fn broker(code: RDKafkaErrorCode, context: &str) -> Error {
    classify(KafkaError::AdminOp(code)).map_message(context)
}

trait WithContext {
    fn map_message(self, context: &str) -> Self;
}

impl WithContext for Error {
    fn map_message(self, context: &str) -> Self {
        match self {
            Error::Broker(b) => Error::Broker(BrokerError {
                message: format!("{context}: {}", b.message),
                ..b
            }),
            Error::Unavailable(m) => Error::Unavailable(format!("{context}: {m}")),
            Error::Other(m) => Error::Other(format!("{context}: {m}")),
            denied => denied,
        }
    }
}

/// A connection that is not granted is denied; one not defined, or of another kind, is `other`.
impl OpenError for Error {
    fn denied(message: String) -> Self {
        Error::Denied(message)
    }
    fn invalid(message: String) -> Self {
        Error::Other(message)
    }
}

/// A client for connection `name`, if the step is granted it.
fn open_client(gate: &ConnectionGate, name: &str) -> Result<KafkaClient, Error> {
    let connection = gate.open::<Error>(name, ConnectionKind::Kafka)?;
    let Some(bootstrap) = connection.setting("bootstrap") else {
        return Err(Error::Other(format!(
            "connection `{name}` has no `bootstrap`"
        )));
    };
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "orch")
        .set("socket.timeout.ms", "5000")
        .set("message.timeout.ms", "30000")
        .set("log_level", "3");
    for (setting, key) in [
        ("security_protocol", "security.protocol"),
        ("sasl_mechanism", "sasl.mechanism"),
        ("sasl_username", "sasl.username"),
        ("sasl_password", "sasl.password"),
        ("ssl_ca_location", "ssl.ca.location"),
    ] {
        if let Some(value) = connection.setting(setting) {
            config.set(key, value);
        }
    }
    let admin = config.create().map_err(classify)?;
    Ok(KafkaClient {
        config,
        admin: Arc::new(admin),
        producer: None,
    })
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(REQUEST_TIMEOUT))
        .request_timeout(Some(REQUEST_TIMEOUT))
}

impl KafkaClient {
    /// The client's producer, created on first use and reused for later batches.
    fn producer(&mut self) -> Result<&Producer, Error> {
        let producer = match self.producer.take() {
            Some(producer) => producer,
            None => produce::producer(&self.config)?,
        };
        Ok(self.producer.insert(producer))
    }
}

/// Send the records `feed` hands to the batch, then wait until the broker has them all.
async fn produce_each(
    client: &mut KafkaClient,
    feed: impl FnOnce(&mut Batch<'_>) -> Result<(), Error>,
) -> Result<u64, Error> {
    let mut batch = Batch::new(client.producer()?);
    feed(&mut batch)?;
    batch.delivered().await
}

/// Run blocking rdkafka work off the async executor.
/// Raises its flag when dropped.
struct StopOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::Other(format!("kafka task failed: {e}"))))
}

fn describe(
    admin: &AdminClient<DefaultClientContext>,
    topic: Option<&str>,
) -> Result<Vec<TopicInfo>, Error> {
    let metadata = admin
        .inner()
        .fetch_metadata(topic, REQUEST_TIMEOUT)
        .map_err(classify)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| TopicInfo {
            name: t.name().to_string(),
            partitions: t.partitions().len() as u32,
            replication_factor: t
                .partitions()
                .first()
                .map_or(0, |p| p.replicas().len() as u32),
        })
        .collect())
}

impl Host for ConnectionView<'_> {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<KafkaClient>, Error>> {
        match open_client(self.gate, &name) {
            Ok(client) => Ok(Ok(self.table.push(client)?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl HostClient for ConnectionView<'_> {
    async fn list_topics(
        &mut self,
        client: Resource<KafkaClient>,
    ) -> wasmtime::Result<Result<Vec<TopicInfo>, Error>> {
        let admin = self.table.get(&client)?.admin.clone();
        Ok(blocking(move || describe(&admin, None)).await)
    }

    async fn describe_topic(
        &mut self,
        client: Resource<KafkaClient>,
        name: String,
    ) -> wasmtime::Result<Result<Option<TopicInfo>, Error>> {
        let admin = self.table.get(&client)?.admin.clone();
        // Ask for all topics: a request naming one may auto-create it on some brokers.
        Ok(
            blocking(move || Ok(describe(&admin, None)?.into_iter().find(|t| t.name == name)))
                .await,
        )
    }

    async fn create_topic(
        &mut self,
        client: Resource<KafkaClient>,
        name: String,
        partitions: u32,
        replication_factor: u32,
        configs: Vec<TopicConfig>,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(denied) = self
            .gate
            .write::<Error>(|| format!("create topic `{name}`"))
        {
            return Ok(Err(denied));
        }
        let admin = &self.table.get(&client)?.admin;
        let mut topic = NewTopic::new(
            &name,
            partitions as i32,
            TopicReplication::Fixed(replication_factor as i32),
        );
        for c in &configs {
            topic = topic.set(&c.name, &c.value);
        }
        let result = match admin.create_topics([&topic], &options()).await {
            Err(e) => Err(classify(e).map_message(&format!("create topic `{name}`"))),
            Ok(results) => match results.into_iter().next() {
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | Some(Ok(_)) | None => Ok(()),
                Some(Err((_, code))) => Err(broker(code, &format!("create topic `{name}`"))),
            },
        };
        Ok(result)
    }

    async fn create_partitions(
        &mut self,
        client: Resource<KafkaClient>,
        name: String,
        total: u32,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(denied) = self
            .gate
            .write::<Error>(|| format!("grow topic `{name}` to {total} partitions"))
        {
            return Ok(Err(denied));
        }
        let admin = &self.table.get(&client)?.admin;
        let context = format!("grow topic `{name}` to {total} partitions");
        let result = match admin
            .create_partitions([&NewPartitions::new(&name, total as usize)], &options())
            .await
        {
            Err(e) => Err(classify(e).map_message(&context)),
            Ok(results) => match results.into_iter().next() {
                Some(Err((_, code))) => Err(broker(code, &context)),
                _ => Ok(()),
            },
        };
        Ok(result)
    }

    async fn list_groups(
        &mut self,
        client: Resource<KafkaClient>,
    ) -> wasmtime::Result<Result<Vec<GroupInfo>, Error>> {
        let admin = self.table.get(&client)?.admin.clone();
        Ok(blocking(move || {
            let list = admin
                .inner()
                .fetch_group_list(None, REQUEST_TIMEOUT)
                .map_err(classify)?;
            Ok(list
                .groups()
                .iter()
                .map(|g| GroupInfo {
                    name: g.name().to_string(),
                    state: g.state().to_string(),
                    protocol_type: g.protocol_type().to_string(),
                    members: g.members().len() as u32,
                })
                .collect())
        })
        .await)
    }

    async fn committed(
        &mut self,
        client: Resource<KafkaClient>,
        group: String,
        topic: String,
    ) -> wasmtime::Result<Result<Vec<PartitionOffset>, Error>> {
        let config = self.table.get(&client)?.config.clone();
        Ok(blocking(move || {
            let consumer = consumer(&config, Some(&group))?;
            let mut tpl = TopicPartitionList::new();
            for p in partitions(&consumer, &topic)? {
                tpl.add_partition(&topic, p);
            }
            let committed = consumer
                .committed_offsets(tpl, REQUEST_TIMEOUT)
                .map_err(classify)?;
            Ok(committed
                .elements()
                .iter()
                .map(|e| PartitionOffset {
                    partition: e.partition(),
                    offset: e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(-1),
                })
                .collect())
        })
        .await)
    }

    async fn commit(
        &mut self,
        client: Resource<KafkaClient>,
        group: String,
        topic: String,
        offsets: Vec<PartitionOffset>,
    ) -> wasmtime::Result<Result<(), Error>> {
        if let Err(denied) = self
            .gate
            .write::<Error>(|| format!("commit offsets of group `{group}` on `{topic}`"))
        {
            return Ok(Err(denied));
        }
        let config = self.table.get(&client)?.config.clone();
        Ok(blocking(move || {
            let consumer = consumer(&config, Some(&group))?;
            let mut tpl = TopicPartitionList::new();
            for o in &offsets {
                tpl.add_partition_offset(&topic, o.partition, Offset::Offset(o.offset))
                    .map_err(classify)?;
            }
            consumer.commit(&tpl, CommitMode::Sync).map_err(classify)
        })
        .await)
    }

    async fn watermarks(
        &mut self,
        client: Resource<KafkaClient>,
        topic: String,
    ) -> wasmtime::Result<Result<Vec<(i32, i64, i64)>, Error>> {
        let config = self.table.get(&client)?.config.clone();
        Ok(blocking(move || {
            let consumer = consumer(&config, None)?;
            partitions(&consumer, &topic)?
                .into_iter()
                .map(|p| {
                    let (low, high) = consumer
                        .fetch_watermarks(&topic, p, REQUEST_TIMEOUT)
                        .map_err(classify)?;
                    Ok((p, low, high))
                })
                .collect()
        })
        .await)
    }

    async fn produce(
        &mut self,
        client: Resource<KafkaClient>,
        topic: String,
        records: Vec<Outgoing>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        if let Err(denied) = self
            .gate
            .write::<Error>(|| format!("produce to topic `{topic}`"))
        {
            return Ok(Err(denied));
        }
        let client = self.table.get_mut(&client)?;
        Ok(produce_each(client, |batch| {
            records.iter().try_for_each(|r| {
                let headers = r
                    .headers
                    .iter()
                    .map(|h| (h.key.as_str(), h.value.as_slice()));
                let (key, value) = (r.key.as_deref(), r.value.as_deref());
                batch.send(&topic, key, value, headers, r.partition)
            })
        })
        .await)
    }

    async fn produce_json(
        &mut self,
        client: Resource<KafkaClient>,
        topic: String,
        records: String,
    ) -> wasmtime::Result<Result<u64, Error>> {
        if let Err(denied) = self
            .gate
            .write::<Error>(|| format!("produce to topic `{topic}`"))
        {
            return Ok(Err(denied));
        }
        let client = self.table.get_mut(&client)?;
        // Each record is sent as it is decoded: the client's threads ship the first ones
        // while the rest are read.
        Ok(produce_each(client, |batch| {
            for_each_record(&records, |r| {
                let headers = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
                let (key, value) = (r.key.as_deref(), r.value.as_deref());
                batch.send(&topic, key, value, headers, r.partition)
            })
        })
        .await)
    }

    async fn consume(
        &mut self,
        client: Resource<KafkaClient>,
        request: ConsumeRequest,
    ) -> wasmtime::Result<Result<Vec<Incoming>, Error>> {
        if request.commit {
            let what = || {
                format!(
                    "commit offsets of group `{}`",
                    request.group.clone().unwrap_or_default()
                )
            };
            if let Err(denied) = self.gate.write::<Error>(what) {
                return Ok(Err(denied));
            }
        }
        let config = self.table.get(&client)?.config.clone();
        // The poll loop runs on a blocking thread: when the step is stopped (timeout, cancel)
        // this future is dropped, the guard raises `stop`, and the loop ends without a commit.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _stop_on_drop = StopOnDrop(stop.clone());
        Ok(blocking(move || consume_batch(&config, request, &stop)).await)
    }

    async fn drop(&mut self, client: Resource<KafkaClient>) -> wasmtime::Result<()> {
        let client = self.table.delete(client)?;
        retire(client);
        Ok(())
    }
}

/// Tear an rdkafka client down off the step's path: librdkafka joins its broker threads on
/// destroy (~100 ms), and by now nothing is pending (deliveries awaited, commits synchronous).
fn retire<T: Send + 'static>(client: T) {
    tokio::task::spawn_blocking(move || drop(client));
}

/// Link `orch:plugin/kafka` into the plugin linker.
pub(crate) fn add_to_linker(linker: &mut Linker<super::StepState>) -> wasmtime::Result<()> {
    crate::capability::bindings::orch::plugin::kafka::add_to_linker::<_, ConnectionData>(
        linker,
        connection_view,
    )
}
