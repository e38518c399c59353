//! Publishing: validate, assign ids, hand the batch to the backend (which
//! orders it at once and says when it is durable).
//!
//! Broker layer.

use std::future::Future;
use std::pin::Pin;

use super::Broker;
use super::error::BrokerError;
use super::names::check_events;
use crate::event::Event;

/// Outcome for one published event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedEvent {
    /// The id (assigned when the request left it empty).
    pub id: String,
    /// Offset in the topic.
    pub offset: u64,
    /// Already stored within the dedup window.
    pub duplicate: bool,
}

/// Outcome of a publish request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// One per event, in request order.
    pub events: Vec<PublishedEvent>,
    /// Server time of the append, µs since the epoch.
    pub publish_time_us: i64,
}

/// A publish whose batch is already queued at the log writer; awaiting it
/// yields the outcome once the batch is durable.
pub type PublishTicket = Pin<Box<dyn Future<Output = Result<Published, BrokerError>> + Send>>;

impl Broker {
    /// Stores a batch of events in `topic`, all or nothing. Returns once the
    /// batch is durable according to the fsync policy. Dropping the future
    /// after the batch was queued does not stop it: it is stored all the same.
    ///
    /// # Errors
    /// `InvalidArgument` (names, sizes, fields), `NotFound` (unknown topic
    /// with auto-create off), `Unavailable` (storage refuses writes or shutdown).
    pub async fn publish(&self, topic: &str, events: Vec<Event>) -> Result<Published, BrokerError> {
        self.submit(topic, events).await?.await
    }

    /// Validates and queues a batch at the topic's log writer, returning a
    /// ticket for its outcome. Batches submitted one after another by one
    /// caller get offsets in submission order, which is what lets
    /// PublishStream pipeline requests without reordering them.
    ///
    /// # Errors
    /// As [`Broker::publish`], for what can be known before the append.
    pub async fn submit(
        &self,
        topic: &str,
        mut events: Vec<Event>,
    ) -> Result<PublishTicket, BrokerError> {
        check_events(&events, self.inner.config.limits)?;
        self.ensure_topic("topic", topic).await?;
        // Ids generated here are unique by construction: the backend's
        // dedup index need not hold them.
        let mut server_ids = Vec::new();
        for (i, event) in events.iter_mut().enumerate() {
            if event.id.is_empty() {
                event.id = uuid::Uuid::now_v7().to_string();
                if server_ids.is_empty() {
                    server_ids = vec![false; i];
                }
                server_ids.push(true);
            } else if !server_ids.is_empty() {
                server_ids.push(false);
            }
        }
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        let appended = self.inner.backend.append(topic, events, server_ids)?;
        Ok(Box::pin(async move {
            let appended = appended.await?;
            Ok(Published {
                events: ids
                    .into_iter()
                    .zip(appended.offsets.iter().zip(&appended.duplicate))
                    .map(|(id, (offset, duplicate))| PublishedEvent {
                        id,
                        offset: *offset,
                        duplicate: *duplicate,
                    })
                    .collect(),
                publish_time_us: appended.publish_time_us,
            })
        }))
    }
}
