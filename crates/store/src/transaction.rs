//! Write transactions whose success means committed, and connections that are never
//! reused in an unknown transaction state.
//!
//! A driver's idea of whether a connection is inside a transaction can drift from the
//! server's: when a statement or COMMIT fails (SQLite: `SQLITE_FULL`, `SQLITE_IOERR`,
//! `SQLITE_BUSY` at commit), SQLite may end the transaction itself or keep it open, and a
//! driver that guesses wrong runs every later "transaction" inside one that never commits
//! while reporting each commit as done. So the store does not rely on the driver's
//! bookkeeping: [`Transaction`] issues `BEGIN`/`COMMIT`/`ROLLBACK` itself and checks the
//! connection's real state where it matters:
//!
//! - `commit` returns `Ok` only when the server said the COMMIT succeeded *and*, on SQLite,
//!   the connection is verified to be back in autocommit mode (a `ROLLBACK` that SQLite
//!   refuses with "no transaction is active"): so a 2xx built on it means on disk;
//! - after a failed statement or COMMIT the connection is rolled back and verified, or
//!   closed and replaced if that does not succeed;
//! - a transaction dropped without `commit` (an early `?` return) is rolled back in a task
//!   before its connection can serve anyone else.

use crate::error::{classify, Class};
use crate::pool::{first_row, into_stream, Pool, Step};
use crate::Backend;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use sqlx::any::{AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{Any, Describe, Error, Execute, Executor, SqlStr};
use std::io;
use std::ops::{Deref, DerefMut};

/// SQLite's answer to a `ROLLBACK` outside a transaction: proof of autocommit mode.
const SQLITE_NOT_IN_TRANSACTION: &str = "no transaction is active";

/// A write transaction on the primary. Run statements on `&mut *tx` (or `&mut **tx` when
/// holding a `&mut Transaction`), then [`Transaction::commit`].
#[derive(Debug)]
pub struct Transaction {
    connection: TxConnection,
}

/// The connection of an open [`Transaction`]: the `sqlx::Executor` its statements run on,
/// each under the pool's deadline.
#[derive(Debug)]
pub struct TxConnection {
    /// `None` once the transaction is finished and the connection handed back.
    connection: Option<PoolConnection<Any>>,
    pool: Pool,
    state: TxState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxState {
    Open,
    /// A statement was cut short or lost its connection: the state is unknown, so the
    /// connection is closed, never rolled back and reused.
    Broken,
    Finished,
}

impl Transaction {
    pub(crate) async fn begin(
        mut connection: PoolConnection<Any>,
        pool: Pool,
    ) -> Result<Transaction, Error> {
        // SQLite: take the write lock now, so a lock held by another process is met here
        // (and waited for up to busy_timeout) rather than halfway through the work.
        let begin = match pool.backend() {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        if let Err(error) = pool.bounded(connection.execute(begin)).await {
            settle_after_error(&mut connection, pool.backend(), &classify(&error)).await;
            return Err(error);
        }
        Ok(Transaction {
            connection: TxConnection {
                connection: Some(connection),
                pool,
                state: TxState::Open,
            },
        })
    }

    /// Commits. `Ok` means the transaction is durable on the server: on SQLite the
    /// connection is also verified to have left the transaction.
    pub async fn commit(mut self) -> Result<(), Error> {
        let tx = &mut self.connection;
        let pool = tx.pool.clone();
        let backend = pool.backend();
        let Some(connection) = tx.live_connection() else {
            return Err(unusable());
        };
        let committed = pool.bounded(connection.execute("COMMIT")).await;
        let outcome = match committed {
            Ok(_) if backend == Backend::Sqlite => verify_autocommit(connection).await,
            Ok(_) => Ok(()),
            Err(error) => {
                settle_after_error(connection, backend, &classify(&error)).await;
                Err(error)
            }
        };
        tx.state = TxState::Finished;
        outcome
    }

    /// Rolls back, and hands the connection back in autocommit mode (or closes it).
    pub async fn rollback(mut self) -> Result<(), Error> {
        let tx = &mut self.connection;
        let backend = tx.pool.backend();
        let Some(connection) = tx.live_connection() else {
            return Err(unusable());
        };
        let clean = roll_back(connection, backend).await;
        tx.state = TxState::Finished;
        if clean {
            Ok(())
        } else {
            Err(Error::Io(io::Error::other(
                "rollback failed; the connection was closed",
            )))
        }
    }
}

impl Deref for Transaction {
    type Target = TxConnection;

    fn deref(&self) -> &TxConnection {
        &self.connection
    }
}

impl DerefMut for Transaction {
    fn deref_mut(&mut self) -> &mut TxConnection {
        &mut self.connection
    }
}

impl TxConnection {
    /// The connection, unless the transaction is over or broken.
    fn live_connection(&mut self) -> Option<&mut PoolConnection<Any>> {
        match self.state {
            TxState::Open => self.connection.as_mut(),
            TxState::Broken | TxState::Finished => None,
        }
    }

    async fn run<'q, E>(&mut self, query: E) -> Result<Vec<Step>, Error>
    where
        E: 'q + Execute<'q, Any>,
    {
        let pool = self.pool.clone();
        let Some(connection) = self.live_connection() else {
            return Err(unusable());
        };
        let result = pool
            .bounded(connection.fetch_many(query).try_collect::<Vec<_>>())
            .await;
        if let Err(error) = &result {
            if leaves_connection_unknown(&classify(error)) {
                self.state = TxState::Broken;
            }
        }
        result
    }
}

impl Drop for TxConnection {
    fn drop(&mut self) {
        let Some(mut connection) = self.connection.take() else {
            return;
        };
        match self.state {
            TxState::Finished => {}
            TxState::Broken => connection.close_on_drop(),
            TxState::Open => {
                // Roll back before the connection serves anyone else: it stays checked out
                // (the single SQLite writer included) until the task is done.
                let backend = self.pool.backend();
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        runtime.spawn(async move {
                            roll_back(&mut connection, backend).await;
                        });
                    }
                    Err(_) => connection.close_on_drop(),
                }
            }
        }
    }
}

impl<'c> Executor<'c> for &'c mut TxConnection {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        async move { self.run(query).await }
            .map(into_stream)
            .flatten_stream()
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<AnyRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        async move { self.run(query).await.map(first_row) }.boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, Error>>
    where
        'c: 'e,
    {
        async move {
            let pool = self.pool.clone();
            let connection = self.live_connection().ok_or_else(unusable)?;
            pool.bounded(connection.prepare_with(sql, parameters)).await
        }
        .boxed()
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Any>, Error>>
    where
        'c: 'e,
    {
        async move {
            let pool = self.pool.clone();
            let connection = self.live_connection().ok_or_else(unusable)?;
            pool.bounded(connection.describe(sql)).await
        }
        .boxed()
    }
}

fn unusable() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::NotConnected,
        "the transaction is finished or its connection broke",
    ))
}

/// Whether an error mid-transaction leaves the connection in a state no one can know: the
/// statement may still be running, or the socket is gone.
fn leaves_connection_unknown(class: &Class) -> bool {
    matches!(class, Class::Connection | Class::Deadline | Class::Down)
}

/// After a failed statement on a pooled connection: close it when its state cannot be
/// known, and on SQLite bring it back to autocommit mode and verify that (or close it).
pub(crate) async fn settle_after_error(
    connection: &mut PoolConnection<Any>,
    backend: Backend,
    class: &Class,
) {
    if leaves_connection_unknown(class) {
        connection.close_on_drop();
        return;
    }
    if backend == Backend::Sqlite && class.taints_connection() {
        roll_back(connection, backend).await;
    }
}

/// Ends whatever transaction the connection may be in. Returns whether it is now known to
/// be in autocommit mode; if not, the connection is marked to be closed instead of reused.
async fn roll_back(connection: &mut PoolConnection<Any>, backend: Backend) -> bool {
    let clean = match connection.execute("ROLLBACK").await {
        Ok(_) => true,
        Err(error) => backend == Backend::Sqlite && is_not_in_transaction(&error),
    };
    if !clean {
        tracing::warn!(
            backend = backend.name(),
            "a connection could not be rolled back; closing it"
        );
        connection.close_on_drop();
    }
    clean
}

/// After SQLite reported a COMMIT as done: proves the connection left the transaction. A
/// `ROLLBACK` refused with "no transaction is active" is that proof; one that succeeds
/// means the COMMIT did not end the transaction, and what it held is now rolled back.
async fn verify_autocommit(connection: &mut PoolConnection<Any>) -> Result<(), Error> {
    match connection.execute("ROLLBACK").await {
        Err(error) if is_not_in_transaction(&error) => Ok(()),
        Ok(_) => {
            tracing::error!("sqlite kept a transaction open after a successful COMMIT; it was rolled back and the connection replaced");
            connection.close_on_drop();
            Err(Error::Io(io::Error::other(
                "the commit could not be verified and was rolled back",
            )))
        }
        Err(error) => {
            connection.close_on_drop();
            Err(error)
        }
    }
}

fn is_not_in_transaction(error: &Error) -> bool {
    matches!(error, Error::Database(db) if db.message().contains(SQLITE_NOT_IN_TRANSACTION))
}
