//! Database failures in the terms a caller acts on, and the one place a driver error is
//! sorted into them.
//!
//! The sorting matters beyond the status code: a connection-class failure (the server went
//! away, a restart cut the connection, the network went silent) also tells the
//! [`crate::health`] monitor to look at the server now, and a write that failed because
//! the disk is full is a 507 the client can retry, never a 500 and never a silent loss.

use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;
use std::fmt;
use std::io;

/// How long a client should wait before retrying a request that failed because the
/// database is down, busy or out of space: a few health probes' worth.
pub const RETRY_AFTER_SECS: u32 = 1;

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint rejected the write: the caller maps it to 409 or retries a read.
    #[error("unique constraint violated: {constraint}")]
    UniqueViolation { constraint: String },
    /// The health monitor knows the server is down: answered at once, without trying.
    /// The outage itself is logged once by the monitor, so callers need not log this.
    #[error("database is down")]
    Down,
    /// No connection could be had in time, the server cut the connection, the write lock
    /// is held elsewhere, or the query ran past its deadline: 503, retryable.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The disk under the database is full: the write was not committed and nothing of it
    /// remains; 507, retryable once space returns.
    #[error("database storage full: {0}")]
    StorageFull(String),
    /// The configuration names a database we cannot use.
    #[error("database configuration: {0}")]
    Config(String),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Anything else: a bug or a broken schema. Logged in full, shown to nobody.
    #[error("database error: {0}")]
    Other(sqlx::Error),
}

impl StoreError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::UniqueViolation { .. })
    }

    /// Whether retrying later can succeed: the client gets 503/507 with `Retry-After`.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Down | StoreError::Unavailable(_) | StoreError::StorageFull(_)
        )
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match classify(&error) {
            Class::UniqueViolation(constraint) => StoreError::UniqueViolation { constraint },
            Class::Down => StoreError::Down,
            Class::StorageFull => StoreError::StorageFull(error.to_string()),
            Class::Connection | Class::Busy | Class::Deadline => {
                StoreError::Unavailable(error.to_string())
            }
            Class::Other => StoreError::Other(error),
        }
    }
}

/// The kinds of failure the store reacts to differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Class {
    UniqueViolation(String),
    /// Refused by our own health gate: the server is known to be down.
    Down,
    /// The connection is gone or the server is going away: SQLSTATE classes 08 and 57P,
    /// socket errors, pool exhaustion. The connection must not be reused.
    Connection,
    /// The server answered but cannot do it now: a lock held elsewhere (SQLITE_BUSY,
    /// SQLITE_LOCKED), too many connections, a serialization failure, a standby.
    Busy,
    /// The query ran past its client-side deadline (or the server's statement timeout).
    Deadline,
    /// The disk is full (SQLITE_FULL, PostgreSQL's disk_full).
    StorageFull,
    Other,
}

impl Class {
    /// Whether the connection that produced this error may hold an unknown transaction
    /// state or be broken: it is verified or replaced before anyone uses it again.
    pub(crate) fn taints_connection(&self) -> bool {
        matches!(
            self,
            Class::Connection | Class::Busy | Class::Deadline | Class::StorageFull | Class::Other
        )
    }

    /// Whether this says something about the server as a whole, so the health monitor
    /// should probe it now instead of at its next tick.
    pub(crate) fn is_connection_class(&self) -> bool {
        matches!(self, Class::Connection | Class::Deadline)
    }
}

/// Sorts a driver error.
pub(crate) fn classify(error: &sqlx::Error) -> Class {
    match error {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return Class::UniqueViolation(db.constraint().unwrap_or_default().to_owned());
            }
            if let Some(sqlite) = db.try_downcast_ref::<SqliteError>() {
                return classify_sqlite(sqlite);
            }
            if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
                return classify_sqlstate(pg.code());
            }
            db.code()
                .map(|code| classify_sqlstate(&code))
                .unwrap_or(Class::Other)
        }
        sqlx::Error::Io(io) => match io.get_ref().and_then(|inner| inner.downcast_ref()) {
            Some(GateRefusal::Down) => Class::Down,
            Some(GateRefusal::Deadline) => Class::Deadline,
            None => Class::Connection,
        },
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => Class::Connection,
        _ => Class::Other,
    }
}

/// SQLite's primary result codes (the low byte of an extended code).
mod sqlite_code {
    pub const BUSY: i64 = 5;
    pub const LOCKED: i64 = 6;
    pub const IOERR: i64 = 10;
    pub const FULL: i64 = 13;
    pub const CANTOPEN: i64 = 14;
    pub const PROTOCOL: i64 = 15;
}

fn classify_sqlite(error: &SqliteError) -> Class {
    let extended: i64 = sqlx::error::DatabaseError::code(error)
        .and_then(|code| code.parse().ok())
        .unwrap_or_default();
    match extended & 0xff {
        sqlite_code::FULL => Class::StorageFull,
        sqlite_code::BUSY | sqlite_code::LOCKED | sqlite_code::PROTOCOL => Class::Busy,
        sqlite_code::IOERR | sqlite_code::CANTOPEN => Class::Connection,
        _ => Class::Other,
    }
}

fn classify_sqlstate(code: &str) -> Class {
    match code {
        // disk_full
        "53100" => Class::StorageFull,
        // query_canceled: the server's statement_timeout fired.
        "57014" => Class::Deadline,
        // too_many_connections, serialization_failure, deadlock_detected,
        // read_only_sql_transaction (a standby or a read-only primary), lock_not_available
        "53300" | "40001" | "40P01" | "25006" | "55P03" => Class::Busy,
        _ if code.starts_with("08") || code.starts_with("57P") => Class::Connection,
        _ => Class::Other,
    }
}

/// Why the store refused a query itself, carried inside an `sqlx::Error::Io` so that it
/// travels through `sqlx`'s `Executor` signatures and is recognised by [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GateRefusal {
    /// The health monitor has the server down.
    Down,
    /// The query did not finish within its client-side deadline.
    Deadline,
}

impl fmt::Display for GateRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GateRefusal::Down => "the database is down",
            GateRefusal::Deadline => "the query ran past its deadline",
        })
    }
}

impl std::error::Error for GateRefusal {}

impl GateRefusal {
    pub(crate) fn into_sqlx(self) -> sqlx::Error {
        let kind = match self {
            GateRefusal::Down => io::ErrorKind::NotConnected,
            GateRefusal::Deadline => io::ErrorKind::TimedOut,
        };
        sqlx::Error::Io(io::Error::new(kind, self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_class_sqlstates_are_unavailable_not_bugs() {
        for code in ["08006", "08001", "57P01", "57P02", "57P03"] {
            assert_eq!(classify_sqlstate(code), Class::Connection, "{code}");
        }
        assert_eq!(classify_sqlstate("53100"), Class::StorageFull);
        assert_eq!(classify_sqlstate("57014"), Class::Deadline);
        assert_eq!(classify_sqlstate("42P01"), Class::Other);
    }

    #[test]
    fn gate_refusals_survive_the_trip_through_sqlx_errors() {
        let down = StoreError::from(GateRefusal::Down.into_sqlx());
        assert!(matches!(down, StoreError::Down), "{down:?}");
        let late = StoreError::from(GateRefusal::Deadline.into_sqlx());
        assert!(matches!(late, StoreError::Unavailable(_)), "{late:?}");
        let reset = StoreError::from(sqlx::Error::Io(io::Error::from(
            io::ErrorKind::ConnectionReset,
        )));
        assert!(reset.is_transient());
    }
}
