//! RabbitMQ: the topology both binaries declare, the publisher the release
//! loop uses, and the queue-depth probe behind backpressure.
//!
//! Topology, declared idempotently by whoever connects first:
//!
//! - `{queue}`: a durable quorum queue of [`BatchMessage`](crate::message::BatchMessage)s.
//!   Quorum queues replicate and fsync every message before confirming it.
//!   Messages a worker rejects (a body that does not parse), and messages
//!   delivered [`DELIVERY_LIMIT`] times, are dead-lettered through the
//!   default exchange to:
//! - `{queue}.dead`: a durable quorum queue an operator can inspect.
//!
//! Publishing uses persistent messages and publisher confirms: the release
//! loop commits its transaction only after the broker has confirmed every
//! message of the round.

use lapin::options::{BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use offpeak_core::message::BatchMessage;

/// Deliveries of one batch message before the broker dead-letters it.
pub const DELIVERY_LIMIT: i64 = 20;

/// Names of the queues of one deployment (tests use their own).
#[derive(Debug, Clone)]
pub struct Topology {
    pub queue: String,
    /// Delete the queues after this long unused (tests only; production
    /// queues live forever).
    pub expires: Option<Duration>,
}

impl Topology {
    pub fn new(queue: impl Into<String>) -> Self {
        Self { queue: queue.into(), expires: None }
    }

    pub fn with_expiry(mut self, after: Duration) -> Self {
        self.expires = Some(after);
        self
    }

    fn common_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        if let Some(e) = self.expires {
            args.insert("x-expires".into(), AMQPValue::LongLongInt(e.as_millis() as i64));
        }
        args
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.queue)
    }

    fn batch_queue_args(&self) -> FieldTable {
        let mut args = self.common_args();
        // A message redelivered this many times (its workers keep dying on
        // it) goes to the dead-letter queue instead of cycling for ever; its
        // jobs are then found by the rescuer, or stay visible to operators.
        args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.dead_letter_queue().into()),
        );
        args
    }


    /// Declares both queues; returns the number of ready messages in the batch queue.
    ///
    /// # Errors
    /// Broker errors, including a queue that exists with other arguments.
    pub async fn declare(&self, channel: &Channel) -> Result<u32, lapin::Error> {
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        channel
            .queue_declare(&self.dead_letter_queue(), durable, self.common_args())
            .await?;
        let q = channel.queue_declare(&self.queue, durable, self.batch_queue_args()).await?;
        Ok(q.message_count())
    }

    /// Ready messages in the batch queue (not counting those delivered and unacknowledged).
    ///
    /// # Errors
    /// Broker errors.
    pub async fn depth(&self, channel: &Channel) -> Result<u32, lapin::Error> {
        // A full (not passive) declare with the same arguments is idempotent
        // and, unlike a passive one, does not close the channel if an
        // operator deleted the queue: it recreates it.
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        let q = channel.queue_declare(&self.queue, durable, self.batch_queue_args()).await?;
        Ok(q.message_count())
    }

    /// Ready messages and connected consumers (workers) of the batch queue.
    ///
    /// # Errors
    /// Broker errors.
    pub async fn stats(&self, channel: &Channel) -> Result<QueueStats, lapin::Error> {
        // The same full declare as [`Topology::depth`], not a passive one: a
        // passive declare of a missing queue closes the channel, and this
        // channel is the release loop's. Declare-ok carries both counts.
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        let q = channel.queue_declare(&self.queue, durable, self.batch_queue_args()).await?;
        Ok(QueueStats { ready: q.message_count(), consumers: q.consumer_count() })
    }

    /// Deletes both queues (tests clean up with it).
    ///
    /// # Errors
    /// Broker errors.
    pub async fn delete(&self, channel: &Channel) -> Result<(), lapin::Error> {
        channel.queue_delete(&self.queue, QueueDeleteOptions::default()).await?;
        channel
            .queue_delete(&self.dead_letter_queue(), QueueDeleteOptions::default())
            .await?;
        Ok(())
    }
}

/// What the broker says of the batch queue at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Messages ready for delivery (not counting those delivered and unacknowledged).
    pub ready: u32,
    /// Consumers on the queue: one per connected worker.
    pub consumers: u32,
}

/// Connects to RabbitMQ on the current tokio runtime, retrying with backoff
/// until `give_up_after` has passed.
///
/// # Errors
/// The last connection error once `give_up_after` has passed.
pub async fn connect(url: &str, name: &str, give_up_after: Duration) -> Result<Connection, lapin::Error> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        let props = ConnectionProperties::default()
            .with_connection_name(name.into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        match Connection::connect(url, props).await {
            Ok(conn) => return Ok(conn),
            Err(e) if started.elapsed() < give_up_after => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "RabbitMQ not reachable, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Why a publish did not take.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error while publishing: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker refused (nacked) batch {0}")]
    Nacked(uuid::Uuid),
}

/// Publishes batches on a confirm-mode channel, and reconnects by itself.
///
/// lapin does not recover a connection after a broker restart, so the
/// publisher keeps its connection and channel behind a lock and, whenever it
/// finds them closed, opens new ones and declares the topology again. A
/// caller whose publish failed simply tries again next round. Cloning shares
/// the connection.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<PublisherInner>,
}

struct PublisherInner {
    url: String,
    name: String,
    topology: Topology,
    live: tokio::sync::Mutex<Option<Live>>,
    reconnects: AtomicU64,
}

struct Live {
    conn: Connection,
    channel: Channel,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry credentials: never print it.
        f.debug_struct("Publisher").field("queue", &self.inner.topology.queue).finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects (retrying until `give_up_after`), opens a confirm-mode
    /// channel and declares the topology.
    ///
    /// # Errors
    /// The last broker error once `give_up_after` has passed.
    pub async fn connect(url: &str, name: &str, topology: Topology, give_up_after: Duration) -> Result<Self, lapin::Error> {
        let started = std::time::Instant::now();
        let publisher = Self {
            inner: Arc::new(PublisherInner {
                url: url.to_owned(),
                name: name.to_owned(),
                topology,
                live: tokio::sync::Mutex::new(None),
                reconnects: AtomicU64::new(0),
            }),
        };
        let mut delay = Duration::from_millis(200);
        loop {
            match publisher.channel().await {
                Ok(_) => return Ok(publisher),
                Err(e) if started.elapsed() < give_up_after => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "RabbitMQ not reachable, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The open channel, reconnecting first if the connection was lost.
    async fn channel(&self) -> Result<Channel, lapin::Error> {
        let mut live = self.inner.live.lock().await;
        if let Some(l) = live.as_ref() {
            if l.channel.status().connected() && l.conn.status().connected() {
                return Ok(l.channel.clone());
            }
            tracing::warn!(queue = %self.inner.topology.queue, "RabbitMQ connection lost; reconnecting");
            self.inner.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        *live = None;
        let conn = connect(&self.inner.url, &self.inner.name, Duration::ZERO).await?;
        let channel = conn.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        self.inner.topology.declare(&channel).await?;
        if self.inner.reconnects.load(Ordering::Relaxed) > 0 {
            tracing::info!(queue = %self.inner.topology.queue, "RabbitMQ reconnected");
        }
        *live = Some(Live { conn, channel: channel.clone() });
        Ok(channel)
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Times the connection was found lost and reopened.
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects.load(Ordering::Relaxed)
    }

    /// `true` while the connection and channel are open (and no reconnect is
    /// under way).
    pub fn is_connected(&self) -> bool {
        match self.inner.live.try_lock() {
            Ok(live) => live.as_ref().is_some_and(|l| l.channel.status().connected() && l.conn.status().connected()),
            Err(_) => false,
        }
    }

    /// Closes the channel and the connection (an orderly goodbye).
    pub async fn close(&self) {
        if let Some(l) = self.inner.live.lock().await.take() {
            let _ = l.channel.close(200, "shutting down").await;
            let _ = l.conn.close(200, "shutting down").await;
        }
    }

    /// Ready messages in the batch queue.
    ///
    /// # Errors
    /// Broker errors (the next call reconnects).
    pub async fn depth(&self) -> Result<u32, lapin::Error> {
        let channel = self.channel().await?;
        self.inner.topology.depth(&channel).await
    }

    /// Ready messages and connected workers of the batch queue (the dashboard).
    ///
    /// # Errors
    /// Broker errors (the next call reconnects).
    pub async fn queue_stats(&self) -> Result<QueueStats, lapin::Error> {
        let channel = self.channel().await?;
        self.inner.topology.stats(&channel).await
    }

    /// Publishes every message, then waits for the broker to confirm all of
    /// them. Returns only when each one is durably queued.
    ///
    /// # Errors
    /// The first broker error or nack; some messages may have been queued
    /// then (the caller rolls back, and workers ignore a message whose
    /// batch was never committed).
    pub async fn publish_all(&self, messages: &[BatchMessage]) -> Result<(), PublishError> {
        let channel = self.channel().await?;
        let mut confirms = Vec::with_capacity(messages.len());
        for msg in messages {
            let props = BasicProperties::default()
                .with_delivery_mode(2) // persistent
                .with_content_type("application/json".into())
                .with_message_id(msg.batch_id.to_string().into());
            let confirm = channel
                .basic_publish("", &self.inner.topology.queue, BasicPublishOptions::default(), &msg.to_bytes(), props)
                .await?;
            confirms.push((msg.batch_id, confirm));
        }
        for (batch_id, confirm) in confirms {
            let confirmation = confirm.await?;
            if confirmation.is_nack() {
                return Err(PublishError::Nacked(batch_id));
            }
        }
        Ok(())
    }
}

/// Opens a consumer channel with a prefetch limit and declares the topology.
///
/// # Errors
/// Broker errors.
pub async fn consumer_channel(conn: &Connection, topology: &Topology, prefetch: u16) -> Result<Channel, lapin::Error> {
    let channel = conn.create_channel().await?;
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    topology.declare(&channel).await?;
    Ok(channel)
}
