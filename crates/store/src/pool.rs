//! A connection pool that answers at once when its server is down and bounds every query
//! in time.
//!
//! [`Pool`] wraps `sqlx`'s `AnyPool` and implements `sqlx::Executor`, so repositories keep
//! writing `query(..).fetch_one(db.reader())`. Each query through it:
//!
//! 1. is refused at once when the [`Health`] state is down;
//! 2. waits for a connection at most `acquire_timeout`, and stops waiting the moment the
//!    server is found down;
//! 3. runs under the client-side deadline `query_timeout` (a silent network never answers,
//!    and TCP would take minutes to say so); a query past it puts the server down;
//! 4. on the read pool, is retried once on a fresh connection when the first one turns out
//!    to be broken (a restart closed it while it sat idle);
//! 5. never returns a connection to the pool in an unknown state: one that failed with a
//!    connection-class error or was cut short is closed, and on SQLite one whose statement
//!    failed is verified to be back in autocommit mode (see [`crate::transaction`]).
//!
//! Write transactions come from [`Pool::begin`]: see [`crate::Transaction`].

use crate::error::{classify, Class, GateRefusal};
use crate::health::Health;
use crate::transaction::{self, Transaction};
use crate::Backend;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Describe, Either, Error, Execute, Executor, SqlStr};
use std::future::Future;
use std::time::Duration;

/// One result of a query: a statement's outcome or a row.
pub(crate) type Step = Either<AnyQueryResult, AnyRow>;

/// A pool of connections to one server, with its health and deadlines.
#[derive(Debug, Clone)]
pub struct Pool {
    pool: AnyPool,
    backend: Backend,
    health: Health,
    query_timeout: Duration,
    /// Whether a query that met a broken connection is tried once more: reads only.
    retry_broken: bool,
}

impl Pool {
    pub(crate) fn new(
        pool: AnyPool,
        backend: Backend,
        health: Health,
        query_timeout: Duration,
        retry_broken: bool,
    ) -> Self {
        Self {
            pool,
            backend,
            health,
            query_timeout,
            retry_broken,
        }
    }

    /// Starts a write transaction (see [`Transaction`]).
    pub async fn begin(&self) -> Result<Transaction, Error> {
        let connection = self.acquire().await?;
        Transaction::begin(connection, self.clone()).await
    }

    /// The health of the server behind this pool.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// `sqlx`'s pool itself, for what must bypass the guards: migrations, which take
    /// their own lock and may run longer than a query deadline.
    pub fn raw(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    /// A connection, or at once [`StoreError::Down`](crate::StoreError::Down).
    pub(crate) async fn acquire(&self) -> Result<PoolConnection<Any>, Error> {
        if !self.health.is_up() {
            return Err(GateRefusal::Down.into_sqlx());
        }
        let acquired = tokio::select! {
            biased;
            acquired = self.pool.acquire() => acquired,
            () = self.health.went_down() => Err(GateRefusal::Down.into_sqlx()),
        };
        if let Err(error) = &acquired {
            self.observe(&classify(error));
        }
        acquired
    }

    /// Runs `work` on a checked-out connection under the query deadline, cut short when
    /// the server goes down; the caller decides what an error means for the connection.
    pub(crate) async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let outcome = tokio::select! {
            biased;
            result = work => result,
            () = self.health.went_down() => Err(GateRefusal::Down.into_sqlx()),
            () = tokio::time::sleep(self.query_timeout) => {
                self.health.deadline_passed();
                Err(GateRefusal::Deadline.into_sqlx())
            }
        };
        if let Err(error) = &outcome {
            self.observe(&classify(error));
        }
        outcome
    }

    fn observe(&self, class: &Class) {
        if class.is_connection_class() {
            self.health.suspect();
        }
    }

    /// One try of a query on a fresh checkout; the connection goes back to the pool only
    /// in a known state.
    async fn attempt<'q, E>(&self, query: E) -> Result<Vec<Step>, Error>
    where
        E: 'q + Execute<'q, Any>,
    {
        let mut connection = self.acquire().await?;
        let result = self
            .bounded(connection.fetch_many(query).try_collect::<Vec<_>>())
            .await;
        if let Err(error) = &result {
            transaction::settle_after_error(&mut connection, self.backend, &classify(error)).await;
        }
        result
    }

    async fn run<'q, E>(&self, mut query: E) -> Result<Vec<Step>, Error>
    where
        E: 'q + Execute<'q, Any>,
    {
        if !self.retry_broken || query.statement().is_some() {
            return self.attempt(query).await;
        }
        let persistent = query.persistent();
        let arguments = query.take_arguments().map_err(Error::Encode)?;
        let sql = query.sql();
        let first = self
            .attempt(Replayable::new(sql.clone(), arguments.as_ref(), persistent))
            .await;
        match first {
            Err(error) if classify(&error) == Class::Connection => {
                tracing::debug!(%error, "read met a broken connection; trying a fresh one");
                self.attempt(Replayable::new(sql, arguments.as_ref(), persistent))
                    .await
            }
            other => other,
        }
    }
}

/// A query taken apart so that it can be sent twice.
struct Replayable {
    sql: SqlStr,
    arguments: Option<AnyArguments>,
    persistent: bool,
}

impl Replayable {
    fn new(sql: SqlStr, arguments: Option<&AnyArguments>, persistent: bool) -> Self {
        Self {
            sql,
            arguments: arguments.map(copy_arguments),
            persistent,
        }
    }
}

/// `AnyArguments` is not `Clone`, but its values are.
fn copy_arguments(arguments: &AnyArguments) -> AnyArguments {
    let mut copy = AnyArguments::default();
    copy.values.0.clone_from(&arguments.values.0);
    copy
}

impl<'q> Execute<'q, Any> for Replayable {
    fn sql(self) -> SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&AnyStatement> {
        None
    }

    fn take_arguments(&mut self) -> Result<Option<AnyArguments>, sqlx::error::BoxDynError> {
        Ok(self.arguments.take())
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

/// Turns collected steps back into the stream `sqlx` callers consume.
pub(crate) fn into_stream<'e>(
    result: Result<Vec<Step>, Error>,
) -> BoxStream<'e, Result<Step, Error>> {
    match result {
        Ok(steps) => futures::stream::iter(steps.into_iter().map(Ok)).boxed(),
        Err(error) => futures::stream::once(async move { Err(error) }).boxed(),
    }
}

pub(crate) fn first_row(steps: Vec<Step>) -> Option<AnyRow> {
    steps.into_iter().find_map(Either::right)
}

impl<'p> Executor<'p> for &'_ Pool {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let pool = self.clone();
        async move { pool.run(query).await }
            .map(into_stream)
            .flatten_stream()
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<AnyRow>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let pool = self.clone();
        async move { pool.run(query).await.map(first_row) }.boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, Error>>
    where
        'p: 'e,
    {
        let pool = self.clone();
        async move {
            let mut connection = pool.acquire().await?;
            pool.bounded(connection.prepare_with(sql, parameters)).await
        }
        .boxed()
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Any>, Error>>
    where
        'p: 'e,
    {
        let pool = self.clone();
        async move {
            let mut connection = pool.acquire().await?;
            pool.bounded(connection.describe(sql)).await
        }
        .boxed()
    }
}
