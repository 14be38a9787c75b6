//! What a job looks like on the wire: standard AMQP properties, no body of our own.
//!
//! The payload stays in the ledger (the admin API decodes it, the claim check resolves
//! it), so a message only says which job and which attempt it delivers: `message-id` is
//! the job id, header `x-loadstar-attempt` the attempt number, `type` the job kind, and
//! the trace context rides as header `traceparent`, readable by any AMQP tool.

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use loadstar_core::Id;

const ATTEMPT_HEADER: &str = "x-loadstar-attempt";
const TRACE_HEADER: &str = "traceparent";
/// AMQP delivery mode 2: written to disk (quorum queues always are; say it anyway).
const PERSISTENT: u8 = 2;

/// One job attempt to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dispatch {
    pub job_id: Id,
    pub queue: String,
    pub kind: String,
    /// The attempt this message delivers (the job's attempt count + 1).
    pub attempt: u32,
    /// Milliseconds left of the job's time to live, for the broker's own expiry.
    pub expires_in_ms: Option<u64>,
    pub trace_context: Option<String>,
}

impl Dispatch {
    pub(crate) fn properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(self.attempt)),
        );
        if let Some(trace) = &self.trace_context {
            headers.insert(
                TRACE_HEADER.into(),
                AMQPValue::LongString(LongString::from(trace.as_str())),
            );
        }
        let properties = BasicProperties::default()
            .with_message_id(self.job_id.to_string().into())
            .with_type(self.kind.as_str().into())
            .with_app_id("loadstar".into())
            .with_delivery_mode(PERSISTENT)
            .with_headers(headers);
        match self.expires_in_ms {
            Some(millis) => properties.with_expiration(millis.to_string().into()),
            None => properties,
        }
    }
}

/// Which job attempt a received message is for; `None` for a message that is not ours.
pub(crate) fn addressed_attempt(properties: &BasicProperties) -> Option<(Id, u32)> {
    let id: Id = properties.message_id().as_ref()?.as_str().parse().ok()?;
    let attempt = match properties.headers().as_ref()?.inner().get(ATTEMPT_HEADER)? {
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok()?,
        AMQPValue::LongInt(n) => u32::try_from(*n).ok()?,
        _ => return None,
    };
    Some((id, attempt))
}

/// Why the broker dead-lettered a message (`expired`, `rejected`, `delivery_limit`).
pub(crate) fn death_reason(properties: &BasicProperties) -> Option<String> {
    match properties
        .headers()
        .as_ref()?
        .inner()
        .get("x-first-death-reason")?
    {
        AMQPValue::LongString(reason) => Some(String::from_utf8_lossy(reason.as_bytes()).into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dispatch_round_trips_through_its_properties() {
        let dispatch = Dispatch {
            job_id: Id::from_i64(42),
            queue: "payments".to_owned(),
            kind: "payment.charge".to_owned(),
            attempt: 3,
            expires_in_ms: Some(1500),
            trace_context: Some(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            ),
        };
        let properties = dispatch.properties();
        assert_eq!(addressed_attempt(&properties), Some((Id::from_i64(42), 3)));
        assert_eq!(
            properties.expiration().as_ref().map(|e| e.as_str()),
            Some("1500")
        );
        assert_eq!(
            properties.kind().as_ref().map(|k| k.as_str()),
            Some("payment.charge")
        );
    }

    #[test]
    fn a_foreign_message_is_not_mistaken_for_a_job() {
        assert_eq!(addressed_attempt(&BasicProperties::default()), None);
        let no_attempt = BasicProperties::default().with_message_id("7".into());
        assert_eq!(addressed_attempt(&no_attempt), None);
    }
}
