//! Database failures in the terms a caller acts on.

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint rejected the write: the caller maps it to 409 or retries a read.
    #[error("unique constraint violated: {constraint}")]
    UniqueViolation { constraint: String },
    /// No connection could be had in time, or the server is unreachable: 503, retryable.
    #[error("database unavailable: {0}")]
    Unavailable(String),
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
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::UniqueViolation {
                constraint: db.constraint().unwrap_or_default().to_owned(),
            },
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(error.to_string())
            }
            _ => StoreError::Other(error),
        }
    }
}
