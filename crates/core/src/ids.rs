//! 64-bit, time-ordered ids generated in the application (snowflake layout).
//!
//! `| 41 bits: ms since 2024-01-01 | 10 bits: node | 12 bits: sequence |`: sortable by
//! creation time (keyset pagination and B-tree inserts stay at the right edge), unique
//! across up to 1,024 nodes without coordination, and 4,096 ids per millisecond per node.
//! JSON carries them as strings because JavaScript numbers lose precision past 2^53.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest node id that fits the 10 node bits.
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;

const NODE_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;
/// 2024-01-01T00:00:00Z in Unix milliseconds: 41 bits of milliseconds last until 2093.
const EPOCH_MS: u64 = 1_704_067_200_000;

/// An entity id. Positive, fits a signed 64-bit database column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(i64);

impl Id {
    /// Wraps a raw database value.
    pub const fn from_i64(raw: i64) -> Self {
        Self(raw)
    }

    pub const fn as_i64(self) -> i64 {
        self.0
    }

    /// Milliseconds since the Unix epoch at which the id was made.
    pub fn created_at_unix_ms(self) -> u64 {
        ((self.0 as u64) >> (NODE_BITS + SEQUENCE_BITS)) + EPOCH_MS
    }
}

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id: expected a positive 64-bit integer in a string")]
pub struct InvalidId;

impl FromStr for Id {
    type Err = InvalidId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidId);
        }
        match text.parse::<i64>() {
            Ok(raw) if raw > 0 => Ok(Self(raw)),
            _ => Err(InvalidId),
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Id {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[1-9][0-9]{0,18}$"))
            .description(Some("64-bit time-ordered id, as a decimal string"))
            .examples(["178250616291024896"])
            .into()
    }
}

impl utoipa::ToSchema for Id {}

/// Makes ids for one node. Lock-free: the last (millisecond, sequence) pair lives in one
/// atomic word and every caller advances it with compare-and-swap.
#[derive(Debug)]
pub struct IdGenerator {
    node: u64,
    /// `(ms since EPOCH_MS) << SEQUENCE_BITS | sequence` of the last id handed out.
    last: AtomicU64,
}

impl IdGenerator {
    /// A generator for `node` (at most [`MAX_NODE_ID`]; larger values are masked).
    pub fn new(node: u16) -> Self {
        Self {
            node: u64::from(node & MAX_NODE_ID),
            last: AtomicU64::new(0),
        }
    }

    /// The next id. Never repeats within this process, even if the wall clock steps
    /// backwards: the generator then keeps counting from the last millisecond it used.
    pub fn next_id(&self) -> Id {
        let now_ms = unix_ms().saturating_sub(EPOCH_MS);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = (now_ms << SEQUENCE_BITS).max(last + 1);
            match self.last.compare_exchange_weak(
                last,
                candidate,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.compose(candidate),
                Err(actual) => last = actual,
            }
        }
    }

    fn compose(&self, stamp: u64) -> Id {
        let ms = stamp >> SEQUENCE_BITS;
        let sequence = stamp & SEQUENCE_MASK;
        let raw = (ms << (NODE_BITS + SEQUENCE_BITS)) | (self.node << SEQUENCE_BITS) | sequence;
        Id((raw & (i64::MAX as u64)) as i64)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn ids_are_unique_and_increasing_under_contention() {
        let generator = Arc::new(IdGenerator::new(7));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let generator = Arc::clone(&generator);
                std::thread::spawn(move || {
                    let ids: Vec<Id> = (0..20_000).map(|_| generator.next_id()).collect();
                    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
                    ids
                })
            })
            .collect();
        let mut all = HashSet::new();
        for handle in handles {
            for id in handle.join().unwrap() {
                assert!(all.insert(id), "duplicate id {id}");
            }
        }
        assert_eq!(all.len(), 80_000);
    }

    #[test]
    fn ids_carry_their_creation_time_and_node() {
        let before = unix_ms();
        let id = IdGenerator::new(5).next_id();
        assert!(id.as_i64() > 0);
        assert!(id.created_at_unix_ms() >= before);
        assert_eq!((id.as_i64() >> SEQUENCE_BITS) & i64::from(MAX_NODE_ID), 5);
    }

    #[test]
    fn ids_round_trip_through_json_as_strings() {
        let id = Id::from_i64(178_250_616_291_024_896);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"178250616291024896\"");
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in ["", "abc", "-1", "0", "1.5", "99999999999999999999", " 1"] {
            assert!(bad.parse::<Id>().is_err(), "{bad:?} parsed");
        }
    }
}
