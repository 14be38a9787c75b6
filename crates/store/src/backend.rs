//! Which database engine a connection URL names.

use crate::error::StoreError;
use std::path::Path;

/// A supported database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded: one file under the data directory, WAL mode.
    Sqlite,
    /// Client/server: the primary (replicas and shards come later).
    Postgres,
}

impl Backend {
    /// Resolves the configured URL. Empty means the embedded default,
    /// `<data_dir>/loadstar.db`; the directory is created if needed.
    pub fn resolve(url: &str, data_dir: &Path) -> Result<(Backend, String), StoreError> {
        if url.is_empty() {
            std::fs::create_dir_all(data_dir).map_err(|error| {
                StoreError::Config(format!(
                    "cannot create data directory {}: {error}",
                    data_dir.display()
                ))
            })?;
            let path = data_dir.join("loadstar.db");
            return Ok((
                Backend::Sqlite,
                format!("sqlite://{}?mode=rwc", path.display()),
            ));
        }
        if url.starts_with("sqlite:") {
            let with_mode = if url.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            };
            return Ok((Backend::Sqlite, with_mode));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok((Backend::Postgres, url.to_owned()));
        }
        Err(StoreError::Config(
            "database.url must start with sqlite: or postgres:// (or be empty for the embedded default)"
                .to_owned(),
        ))
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// The database server's clock as unix microseconds (how timestamps are stored), for
    /// statements to read the time themselves. Every node sharing a database then agrees
    /// on what time it is, whatever its own clock says: leases, due times and expiries
    /// that decide between nodes must use this, never a time bound from a node's clock
    /// (see `docs/decisions/0007-database-time.md`).
    ///
    /// The value is fixed for the whole statement, and stable functions keep index range
    /// scans possible: PostgreSQL's `statement_timestamp()` (not `now()`, which is the
    /// start of the transaction and goes stale in a long one; not `clock_timestamp()`,
    /// which changes row by row and is volatile); SQLite's `'now'`, which is fixed per
    /// `sqlite3_step`, to the millisecond.
    pub fn now_micros_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => "CAST(ROUND(unixepoch('subsec') * 1000000) AS INTEGER)",
            Backend::Postgres => "(EXTRACT(EPOCH FROM statement_timestamp()) * 1000000)::BIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_url_means_sqlite_in_the_data_dir() {
        let dir = std::env::temp_dir().join(format!("loadstar-backend-{}", std::process::id()));
        let (backend, url) = Backend::resolve("", &dir).unwrap();
        assert_eq!(backend, Backend::Sqlite);
        assert!(url.ends_with("loadstar.db?mode=rwc"), "{url}");
        assert!(dir.is_dir());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn postgres_urls_are_recognised_and_others_rejected() {
        let dir = Path::new("unused");
        assert_eq!(
            Backend::resolve("postgres://u@h/db", dir).unwrap().0,
            Backend::Postgres
        );
        assert!(Backend::resolve("mysql://u@h/db", dir).is_err());
    }
}
