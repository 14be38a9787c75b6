//! Schema migrations, embedded in the binary.
//!
//! One portable set serves both engines: the tables use only types and DDL that SQLite and
//! PostgreSQL read alike (see `docs/decisions/0001-data-access.md`), and the HTTP suite
//! runs unchanged on both, which checks it. A future backend-specific feature (say, a
//! PostgreSQL trigger) gets its own migrator in the crate that needs it.

use sqlx::migrate::Migrator;

pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");
