//! Schema migrations, embedded in the binary: one set per backend, same version numbers.
//!
//! The two sets differ only where the engines do (SQLite's `INTEGER PRIMARY KEY` rowid
//! alias, PostgreSQL's `BIGINT`); the tables, columns and indexes are the same, which the
//! HTTP suite checks by running unchanged on both.

use crate::backend::Backend;
use sqlx::migrate::Migrator;

static SQLITE: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("../../migrations/postgres");

pub(crate) fn for_backend(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}
