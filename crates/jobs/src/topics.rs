//! Publish/subscribe: a topic delivers its own copy of every message to each subscribed
//! queue.
//!
//! [`Topics`] is the registry: topic name → [`Subscription`]s, built in code (a domain
//! declares its events' consumers) and from `[jobs.topics.<name>] queues = [...]`. A
//! publish enqueues one job per subscription inside the caller's transaction, so the copies
//! exist together with the business write or not at all. Each copy is its own job (retried,
//! dead-lettered and ordered on its own queue) with a unique key derived from the topic,
//! the event id and the subscription: republishing the same event (a redelivered publisher)
//! yields no second copy.

use crate::error::JobError;
use crate::model::NewJob;
use crate::queue::JobQueue;
use loadstar_core::Id;
use loadstar_store::sql::Transaction;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a copy's unique key dedupes republishing, unless the message sets its own
/// window: longer than any retry schedule.
const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Why a message could not be published or routed.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// Nothing declared this topic: publishing to it would silently reach no one.
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
    /// No route matches this routing key.
    #[error("no route for routing key `{0}`")]
    NoRoute(String),
    /// The queue refused a copy; the transaction should roll back.
    #[error(transparent)]
    Queue(#[from] JobError),
}

/// One subscriber of a topic: the queue its copies go to, and optionally the job kind they
/// run as there (without one, a copy keeps the published message's kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub queue: String,
    pub kind: Option<String>,
}

impl Subscription {
    /// Copies to `queue`, as the published kind.
    pub fn queue(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            kind: None,
        }
    }

    /// Copies run as `kind` on this subscriber's queue.
    pub fn as_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }
}

/// The registry of topics and their subscribers.
#[derive(Debug, Clone, Default)]
pub struct Topics {
    subscriptions: BTreeMap<String, Vec<Subscription>>,
}

impl Topics {
    /// The topics of `[jobs.topics]`: each listed queue subscribes as the published kind.
    pub fn from_config(topics: &BTreeMap<String, loadstar_core::config::TopicConfig>) -> Self {
        let mut registry = Self::default();
        for (topic, config) in topics {
            registry = registry.declare(topic.clone());
            for queue in &config.queues {
                registry = registry.subscribe(topic.clone(), Subscription::queue(queue.clone()));
            }
        }
        registry
    }

    /// Makes `topic` known, with no subscribers yet (publishing to it is then a no-op,
    /// not an error).
    pub fn declare(mut self, topic: impl Into<String>) -> Self {
        self.subscriptions.entry(topic.into()).or_default();
        self
    }

    /// Adds `subscription` to `topic` (declaring it); a repeated subscription is ignored.
    pub fn subscribe(mut self, topic: impl Into<String>, subscription: Subscription) -> Self {
        let subscribers = self.subscriptions.entry(topic.into()).or_default();
        if !subscribers.contains(&subscription) {
            subscribers.push(subscription);
        }
        self
    }

    /// Every subscription of `other` added to these.
    pub fn merge(mut self, other: Topics) -> Self {
        for (topic, subscriptions) in other.subscriptions {
            self = self.declare(topic.clone());
            for subscription in subscriptions {
                self = self.subscribe(topic.clone(), subscription);
            }
        }
        self
    }

    /// The subscribers of `topic`.
    pub fn subscribers(&self, topic: &str) -> Result<&[Subscription], TopicError> {
        self.subscriptions
            .get(topic)
            .map(Vec::as_slice)
            .ok_or_else(|| TopicError::UnknownTopic(topic.to_owned()))
    }

    /// Publishes `message` to `topic`: one copy per subscriber, in `tx`. The copies take
    /// everything from `message` but the queue (the subscriber's), the kind (the
    /// subscriber's, if it names one) and the unique key (derived from `event_id`).
    /// Returns the copies' ids.
    pub async fn publish(
        &self,
        jobs: &dyn JobQueue,
        tx: &mut Transaction,
        topic: &str,
        event_id: &str,
        message: NewJob,
    ) -> Result<Vec<Id>, TopicError> {
        self.publish_each(jobs, tx, topic, event_id, |_| Some(message.clone()))
            .await
    }

    /// Like [`Topics::publish`], with each subscriber's message made by `render`: for
    /// events whose consumers each want their own view of it. `render` returning `None`
    /// skips that subscriber for this event (a decision of the publisher, e.g. no callback
    /// URL to notify), never an accident of configuration.
    pub async fn publish_each(
        &self,
        jobs: &dyn JobQueue,
        tx: &mut Transaction,
        topic: &str,
        event_id: &str,
        mut render: impl FnMut(&Subscription) -> Option<NewJob>,
    ) -> Result<Vec<Id>, TopicError> {
        let mut ids = Vec::new();
        for subscription in self.subscribers(topic)? {
            let Some(mut job) = render(subscription) else {
                continue;
            };
            job.queue = subscription.queue.clone();
            if let Some(kind) = &subscription.kind {
                job.kind = kind.clone();
            }
            let window = if job.unique_for.is_zero() {
                DEFAULT_DEDUPE_WINDOW
            } else {
                job.unique_for
            };
            let key = format!("topic:{topic}:{event_id}:{}:{}", job.queue, job.kind);
            job = job.with_unique_key(key, window);
            ids.push(jobs.enqueue_in(tx, job).await?);
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadstar_core::config::TopicConfig;

    #[test]
    fn configured_topics_subscribe_their_queues_and_repeats_are_ignored() {
        let mut config = BTreeMap::new();
        config.insert(
            "audit".to_owned(),
            TopicConfig {
                queues: vec!["audit".to_owned(), "archive".to_owned(), "audit".to_owned()],
            },
        );
        config.insert("quiet".to_owned(), TopicConfig::default());
        let topics = Topics::from_config(&config);
        let queues: Vec<&str> = topics
            .subscribers("audit")
            .map(|subs| subs.iter().map(|s| s.queue.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(queues, ["audit", "archive"]);
        assert!(topics.subscribers("quiet").is_ok_and(<[_]>::is_empty));
        assert!(matches!(
            topics.subscribers("nope"),
            Err(TopicError::UnknownTopic(topic)) if topic == "nope"
        ));
    }
}
