//! Producing: records go to librdkafka with no future of their own (rdkafka's
//! `FutureProducer` makes a channel and a box per record, ~40% of a native 100 000-record
//! batch here); each carries its batch's tally, which the delivery reports fill in, and the
//! batch ends when every record has its report.

use super::{Error, classify};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// A client's producer: its own thread serves the delivery reports.
pub(super) type Producer = ThreadedProducer<Reports>;

/// A producer on `config`; it waits up to 5 ms to fill a request, and a record counts as
/// delivered once every in-sync replica has it.
pub(super) fn producer(config: &ClientConfig) -> Result<Producer, Error> {
    config
        .clone()
        .set("linger.ms", "5")
        .set("acks", "all")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Reports)
        .map_err(classify)
}

/// Hands each delivery report to the tally of the batch its record belongs to.
pub(super) struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Arc<Tally>;

    fn delivery(&self, result: &DeliveryResult<'_>, tally: Arc<Tally>) {
        tally.count(result.as_ref().err().map(|(e, _)| e));
    }
}

/// The delivery reports of one batch. Each record holds it, so the late reports of a batch
/// that stopped early never count toward the next.
pub(super) struct Tally {
    /// Reports so far, delivered or not.
    reported: AtomicU64,
    first_error: Mutex<Option<KafkaError>>,
    /// Reports the batch waits for: unknown (`u64::MAX`) while records are still handed over.
    expected: AtomicU64,
    done: Notify,
}

impl Tally {
    fn new() -> Self {
        Self {
            reported: AtomicU64::new(0),
            first_error: Mutex::new(None),
            expected: AtomicU64::new(u64::MAX),
            done: Notify::new(),
        }
    }

    fn count(&self, error: Option<&KafkaError>) {
        if let Some(e) = error {
            // Kept before it is counted: whoever sees the count sees the error.
            let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| e.clone());
        }
        let reported = self.reported.fetch_add(1, Ordering::AcqRel) + 1;
        if reported >= self.expected.load(Ordering::Acquire) {
            self.done.notify_one();
        }
    }

    fn reported(&self) -> u64 {
        self.reported.load(Ordering::Acquire)
    }

    /// Wait for `sent` reports: all `sent` delivered, or the first failure.
    async fn wait(&self, sent: u64) -> Result<u64, KafkaError> {
        self.expected.store(sent, Ordering::Release);
        loop {
            // Made before the check: a report between the two leaves a permit, not a miss.
            let done = self.done.notified();
            if self.reported() >= sent {
                break;
            }
            done.await;
        }
        let first_error = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        match first_error.as_ref() {
            Some(e) => Err(e.clone()),
            None => Ok(sent),
        }
    }
}

/// Records handed to one producer, not yet known to be delivered.
pub(super) struct Batch<'p> {
    producer: &'p Producer,
    tally: Arc<Tally>,
    sent: u64,
}

impl<'p> Batch<'p> {
    pub(super) fn new(producer: &'p Producer) -> Self {
        Self {
            producer,
            tally: Arc::new(Tally::new()),
            sent: 0,
        }
    }

    /// Hand one record to the client. A full local queue (a million records) is waited out on
    /// this thread: the client's own threads drain it within milliseconds.
    pub(super) fn send<'a>(
        &mut self,
        topic: &'a str,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        headers: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>,
        partition: Option<i32>,
    ) -> Result<(), Error> {
        let mut record: BaseRecord<'a, [u8], [u8], Arc<Tally>> =
            BaseRecord::with_opaque_to(topic, self.tally.clone());
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if headers.len() > 0 {
            let headers = headers.fold(OwnedHeaders::new(), |all, (key, value)| {
                all.insert(KafkaHeader {
                    key,
                    value: Some(value),
                })
            });
            record = record.headers(headers);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.sent += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(classify(e)),
            }
        }
    }

    /// Wait until every record has its report (librdkafka gives up on one after
    /// `message.timeout.ms`); how many the broker took, or the first refusal.
    pub(super) async fn delivered(self) -> Result<u64, Error> {
        self.tally.wait(self.sent).await.map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports arrive on librdkafka's thread, before and after the wait begins.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_ends_at_its_last_report_with_the_first_failure() {
        let refused = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        for failing in [None, Some(3), Some(999)] {
            let tally = Arc::new(Tally::new());
            let early = 10;
            for n in 0..early {
                tally.count((failing == Some(n)).then_some(&refused));
            }
            let reporter = {
                let (tally, refused) = (tally.clone(), refused.clone());
                std::thread::spawn(move || {
                    for n in early..1000 {
                        if n % 100 == 0 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        tally.count((failing == Some(n)).then_some(&refused));
                    }
                })
            };
            let ended = tokio::time::timeout(Duration::from_secs(10), tally.wait(1000))
                .await
                .expect("the wait ends at the last report");
            reporter.join().unwrap();
            assert_eq!(tally.reported(), 1000);
            match failing {
                None => assert_eq!(ended.unwrap(), 1000),
                Some(_) => assert!(
                    matches!(
                        ended,
                        Err(KafkaError::MessageProduction(
                            RDKafkaErrorCode::MessageSizeTooLarge
                        ))
                    ),
                    "{ended:?}"
                ),
            }
        }
    }

    #[tokio::test]
    async fn a_batch_whose_reports_all_came_before_the_wait_ends_at_once() {
        let tally = Tally::new();
        for _ in 0..5 {
            tally.count(None);
        }
        assert_eq!(tally.wait(5).await.unwrap(), 5);
    }
}
