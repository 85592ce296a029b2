//! Consuming for a step: a consumer per call (with or without a group), the partitions of a
//! topic, and one bounded batch of records with their headers.

use super::{REQUEST_TIMEOUT, broker, classify, retire};
use crate::capability::bindings::orch::plugin::kafka::{ConsumeRequest, Error, Header, Incoming};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::Duration;

pub(super) fn consumer(config: &ClientConfig, group: Option<&str>) -> Result<BaseConsumer, Error> {
    let mut config = config.clone();
    config
        .set("group.id", group.unwrap_or("orch-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true");
    config.create().map_err(classify)
}

/// Partition ids of `topic`, or an error when it does not exist.
pub(super) fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, Error> {
    // All topics: a request naming one may auto-create it on some brokers.
    let metadata = consumer
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(classify)?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::Other(format!("topic `{topic}` does not exist")));
    };
    if let Some(e) = t.error() {
        return Err(broker(e.into(), &format!("topic `{topic}`")));
    }
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

pub(super) fn headers_of(message: &impl Message) -> Vec<Header> {
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The longest one consume call may wait for records (10 minutes).
const MAX_CONSUME_TIMEOUT_MS: u32 = 600_000;

/// Assign the partitions at the group's commits (or the given offsets), poll until the batch is
/// full or the time is up, then commit the next offsets if asked.
pub(super) fn consume_batch(
    config: &ClientConfig,
    request: ConsumeRequest,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Vec<Incoming>, Error> {
    if request.timeout_ms > MAX_CONSUME_TIMEOUT_MS {
        return Err(Error::Other(format!(
            "`timeout_ms` {} is over the {} ms a consume call may wait",
            request.timeout_ms, MAX_CONSUME_TIMEOUT_MS
        )));
    }
    let consumer = consumer(config, request.group.as_deref())?;
    let topic = &request.topic;
    let mut tpl = TopicPartitionList::new();
    if request.offsets.is_empty() {
        let mut all = TopicPartitionList::new();
        for p in partitions(&consumer, topic)? {
            all.add_partition(topic, p);
        }
        let committed = match &request.group {
            Some(_) => consumer
                .committed_offsets(all, REQUEST_TIMEOUT)
                .map_err(classify)?,
            None => all,
        };
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            tpl.add_partition_offset(topic, e.partition(), offset)
                .map_err(classify)?;
        }
    } else {
        for o in &request.offsets {
            tpl.add_partition_offset(topic, o.partition, Offset::Offset(o.offset))
                .map_err(classify)?;
        }
    }
    consumer.assign(&tpl).map_err(classify)?;
    let deadline = std::time::Instant::now() + Duration::from_millis(request.timeout_ms.into());
    let mut out = Vec::new();
    let mut next: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
    // Stop early once every assigned partition has reached its end.
    let assigned = tpl.count();
    let mut at_end = std::collections::BTreeSet::new();
    while out.len() < request.max_records as usize && at_end.len() < assigned {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Other("the step was stopped while consuming".into()));
        }
        match consumer.poll(left.min(Duration::from_millis(100))) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(e)) => return Err(classify(e)),
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                next.insert(m.partition(), m.offset() + 1);
                out.push(Incoming {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: headers_of(&m),
                    timestamp: m.timestamp().to_millis(),
                });
            }
        }
    }
    if request.commit && request.group.is_some() && !next.is_empty() {
        let mut commit = TopicPartitionList::new();
        for (p, o) in &next {
            commit
                .add_partition_offset(topic, *p, Offset::Offset(*o))
                .map_err(classify)?;
        }
        consumer
            .commit(&commit, CommitMode::Sync)
            .map_err(classify)?;
    }
    retire(consumer);
    Ok(out)
}
