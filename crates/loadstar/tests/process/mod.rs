//! Running the real `loadstar` binary from tests: a clean environment, its JSON log
//! lines, and waiting for one of them.
#![allow(dead_code)] // each test crate uses a different part

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_loadstar");

pub fn temp_data_dir() -> PathBuf {
    std::env::temp_dir().join(format!("loadstar-cli-{:016x}", rand::random::<u64>()))
}

/// A `loadstar` command with a clean `LOADSTAR_` environment and cheap password hashing.
pub fn loadstar(args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    for (key, _) in std::env::vars() {
        if key.starts_with("LOADSTAR_") {
            command.env_remove(key);
        }
    }
    command
        .args(args)
        .env("LOADSTAR_AUTH__ARGON2_MEMORY_KIB", "1024")
        .env("LOADSTAR_AUTH__ARGON2_ITERATIONS", "1");
    command
}

/// Lines of the child's stdout, delivered as they arrive.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The first log line whose message starts with `prefix`, within `deadline`.
pub fn wait_for_log(lines: &mpsc::Receiver<String>, prefix: &str, deadline: Duration) -> Value {
    let until = Instant::now() + deadline;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line starting with {prefix:?} in time"));
        if let Ok(entry) = serde_json::from_str::<Value>(&line) {
            if entry["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
            {
                return entry;
            }
        }
    }
}
