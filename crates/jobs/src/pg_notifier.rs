//! Wake-ups for idle workers on PostgreSQL: `NOTIFY` on enqueue, `LISTEN` in every
//! process that runs workers.
//!
//! The enqueue sends `pg_notify('loadstar_jobs', <queue>)` inside its transaction, so the
//! notification is delivered exactly when the job becomes visible (at commit) and never
//! for a rolled-back job. One listener connection per process fans the queue names out to
//! its pools over a broadcast channel.

use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// The channel every enqueue notifies.
pub(crate) const CHANNEL: &str = "loadstar_jobs";

/// Queue names waiting in the broadcast channel before slow receivers lose some (a
/// lost wake-up only delays a job to the next poll).
const BACKLOG: usize = 1024;

/// Starts the listener on first use; later subscribers share it.
#[derive(Default)]
pub(crate) struct PgNotifier {
    sender: OnceLock<broadcast::Sender<String>>,
}

impl PgNotifier {
    pub(crate) fn subscribe(&self, url: &Arc<str>) -> broadcast::Receiver<String> {
        self.sender
            .get_or_init(|| {
                let (sender, _) = broadcast::channel(BACKLOG);
                tokio::spawn(listen(Arc::clone(url), sender.clone()));
                sender
            })
            .subscribe()
    }
}

/// Forwards notifications for as long as the runtime lives (one connection per process).
/// A lost connection is re-made (sqlx re-LISTENs on reconnect); notifications sent
/// meanwhile are lost, which the workers' polling covers.
async fn listen(url: Arc<str>, sender: broadcast::Sender<String>) {
    let mut listener = loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => break listener,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot LISTEN for job notifications; retrying")
                }
            },
            Err(error) => {
                tracing::warn!(error = %error, "cannot connect the job notification listener; retrying")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    loop {
        match listener.recv().await {
            Ok(notification) => {
                // No receiver right now (no idle pool) is fine: nobody needed waking.
                let _ = sender.send(notification.payload().to_owned());
            }
            Err(error) => {
                tracing::warn!(error = %error, "job notification listener lost its connection; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
