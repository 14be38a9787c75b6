//! The open-files limit: every connection is a file, and the common soft limit of 1,024
//! is far below what a node serving many clients needs. A process may raise its soft
//! limit up to its hard one without privileges, so a server does so at start and says
//! what it got.

/// The open-files limits of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesLimit {
    /// The soft limit the process was started with.
    pub soft_at_start: u64,
    /// The soft limit in force now.
    pub soft: u64,
    /// The ceiling the soft limit may be raised to.
    pub hard: u64,
}

/// Raises the soft open-files limit to the hard one and logs both. Never fails: a limit
/// that cannot be read or raised is logged and the process goes on with what it has.
#[cfg(unix)]
pub fn raise_to_hard_limit() -> Option<OpenFilesLimit> {
    let (soft_at_start, hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(error = %error, "open files limit unknown: it could not be read");
            return None;
        }
    };
    let soft = match rlimit::increase_nofile_limit(hard) {
        Ok(soft) => soft,
        Err(error) => {
            tracing::warn!(
                error = %error,
                soft = soft_at_start,
                hard,
                "open files limit could not be raised to the hard limit"
            );
            soft_at_start
        }
    };
    tracing::info!(
        soft,
        hard,
        soft_at_start,
        "open files limit: {soft} (hard limit {hard}); each connection takes one"
    );
    Some(OpenFilesLimit {
        soft_at_start,
        soft,
        hard,
    })
}

/// Elsewhere there is no such limit to raise.
#[cfg(not(unix))]
pub fn raise_to_hard_limit() -> Option<OpenFilesLimit> {
    None
}
