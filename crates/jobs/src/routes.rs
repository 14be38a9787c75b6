//! Routing: a routing key selects exactly one queue.
//!
//! Where pub/sub copies a message to every subscriber, a route sends it to one queue
//! chosen by a key (`payment.charge`, `report.monthly`), so producers name what the work is
//! and configuration decides who does it. Rules are exact keys or prefixes ending in `.*`
//! (`payment.*` matches `payment.charge` and `payment.refund.partial`, not `payment`), and
//! `*` matches every key. An exact rule beats a prefix, a longer prefix a shorter one. A key
//! that no rule matches is an error: a message is never dropped by a missing route.

use crate::model::NewJob;
use crate::topics::TopicError;
use std::collections::BTreeMap;

/// The routing table.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    exact: BTreeMap<String, String>,
    /// (prefix including its trailing '.', queue), longest prefix first.
    prefixes: Vec<(String, String)>,
}

impl Routes {
    /// The table of `[jobs.routes]`.
    pub fn from_config(routes: &BTreeMap<String, String>) -> Self {
        routes.iter().fold(Self::default(), |table, (rule, queue)| {
            table.route(rule.clone(), queue.clone())
        })
    }

    /// Adds a rule: `rule` is an exact key, a `prefix.*` pattern, or `*`. A later rule for
    /// the same key or pattern replaces the earlier one.
    pub fn route(mut self, rule: impl Into<String>, queue: impl Into<String>) -> Self {
        let rule = rule.into();
        let queue = queue.into();
        let prefix = if rule == "*" {
            Some(String::new())
        } else {
            rule.strip_suffix('*')
                .filter(|prefix| prefix.ends_with('.'))
                .map(str::to_owned)
        };
        match prefix {
            Some(prefix) => {
                self.prefixes.retain(|(existing, _)| *existing != prefix);
                self.prefixes.push((prefix, queue));
                self.prefixes
                    .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
            }
            None => {
                self.exact.insert(rule, queue);
            }
        }
        self
    }

    /// The one queue `routing_key` selects.
    pub fn queue_for(&self, routing_key: &str) -> Result<&str, TopicError> {
        if let Some(queue) = self.exact.get(routing_key) {
            return Ok(queue);
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| {
                routing_key.starts_with(prefix.as_str()) && routing_key.len() > prefix.len()
            })
            .map(|(_, queue)| queue.as_str())
            .ok_or_else(|| TopicError::NoRoute(routing_key.to_owned()))
    }

    /// A job of `kind` on the queue `routing_key` selects.
    pub fn job(
        &self,
        routing_key: &str,
        kind: impl Into<String>,
        payload: Vec<u8>,
    ) -> Result<NewJob, TopicError> {
        Ok(NewJob::new(self.queue_for(routing_key)?, kind, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Routes {
        Routes::default()
            .route("payment.*", "payments")
            .route("payment.refund.*", "refunds")
            .route("payment.charge.manual", "manual-review")
            .route("report.monthly", "reports")
    }

    #[test]
    fn an_exact_key_beats_a_pattern_and_a_longer_prefix_a_shorter_one() {
        let routes = table();
        assert_eq!(routes.queue_for("payment.charge").ok(), Some("payments"));
        assert_eq!(
            routes.queue_for("payment.refund.partial").ok(),
            Some("refunds")
        );
        assert_eq!(
            routes.queue_for("payment.charge.manual").ok(),
            Some("manual-review")
        );
        assert_eq!(routes.queue_for("report.monthly").ok(), Some("reports"));
    }

    #[test]
    fn an_unknown_key_is_an_error_not_a_drop() {
        let routes = table();
        for key in ["report.weekly", "payment", "payments.charge", ""] {
            assert!(
                matches!(routes.queue_for(key), Err(TopicError::NoRoute(k)) if k == key),
                "{key:?} was routed"
            );
        }
    }

    #[test]
    fn a_catch_all_takes_what_nothing_else_matches() {
        let routes = table().route("*", "default");
        assert_eq!(routes.queue_for("report.weekly").ok(), Some("default"));
        assert_eq!(routes.queue_for("payment.charge").ok(), Some("payments"));
    }

    #[test]
    fn a_star_that_is_not_a_trailing_segment_is_an_exact_key() {
        let routes = Routes::default().route("pay*", "weird");
        assert!(routes.queue_for("payment").is_err());
        assert_eq!(routes.queue_for("pay*").ok(), Some("weird"));
    }
}
