//! Accepting connections without giving up, spinning or flooding the log.
//!
//! When the process is out of open files (EMFILE) or the system is (ENFILE), accept
//! fails while the connection waits in the kernel's queue. Retrying at once would spin
//! a core; giving up would stop the node. Instead the loop pauses briefly and retries,
//! and says what is wrong at most once a second, with what to do about it: the slow
//! and idle connections holding the files are cut by their timeouts meanwhile, and
//! accepting resumes by itself.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed accept, so a persistent failure costs nothing.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// At most one log line about failing accepts per this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Accepts the next connection, retrying through failures.
pub(crate) async fn accept(
    listener: &TcpListener,
    failures: &mut FailureLog,
) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            // The client gave up before it was accepted: nothing is wrong here.
            Err(error) if is_client_side(&error) => {}
            Err(error) => {
                failures.record(&error, Instant::now());
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

fn is_client_side(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Whether `error` means open files ran out (for this process or the whole system).
#[cfg(unix)]
fn is_out_of_files(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(not(unix))]
fn is_out_of_files(_error: &io::Error) -> bool {
    false
}

/// Logs failing accepts at most once per [`LOG_INTERVAL`], counting the ones it left out.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    last_logged: Option<Instant>,
    left_out: u64,
}

impl FailureLog {
    pub(crate) fn record(&mut self, error: &io::Error, now: Instant) {
        if !self.should_log(now) {
            return;
        }
        let left_out = std::mem::take(&mut self.left_out);
        if is_out_of_files(error) {
            tracing::error!(
                error = %error,
                failures_not_logged = left_out,
                "cannot accept connections: out of open files; raise the open-files limit \
                 (ulimit -n, or LimitNOFILE= under systemd) or lower the connections this \
                 node holds (server.header_read_timeout_ms, server.keepalive_timeout_ms); \
                 retrying"
            );
        } else {
            tracing::error!(
                error = %error,
                failures_not_logged = left_out,
                "cannot accept connections; retrying"
            );
        }
    }

    /// Whether a failure at `now` gets a line; if not, it is counted.
    fn should_log(&mut self, now: Instant) -> bool {
        let due = self
            .last_logged
            .is_none_or(|last| now.saturating_duration_since(last) >= LOG_INTERVAL);
        if due {
            self.last_logged = Some(now);
        } else {
            self.left_out += 1;
        }
        due
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn failures_are_logged_at_most_once_a_second_and_the_rest_counted() {
        let start = Instant::now();
        let mut log = FailureLog::default();
        assert!(log.should_log(start));
        for millis in (20..1000).step_by(20) {
            assert!(!log.should_log(start + Duration::from_millis(millis)));
        }
        assert_eq!(log.left_out, 49);
        assert!(log.should_log(start + Duration::from_secs(1)));
    }

    #[test]
    fn running_out_of_files_is_told_apart() {
        assert!(is_out_of_files(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_out_of_files(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!is_out_of_files(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
        assert!(is_client_side(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
