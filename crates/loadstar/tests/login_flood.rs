//! A flood of logins cannot take the node's memory: a real `loadstar serve` with the
//! production Argon2id cost (19 MiB per computation) answers 200 concurrent
//! wrong-password logins while its peak RSS stays within 128 MiB of what it was idle.
//! Unbounded, one computation per request at once, the same flood took 1.4 GB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use futures::future::join_all;
use process::{login, sign_up_buyer, temp_data_dir, Node, BUYER_EMAIL, BUYER_PASSWORD};
use serde_json::json;

const ATTEMPTS: usize = 200;
const ALLOWED_GROWTH_KIB: u64 = 128 * 1024;

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .map(|number| number.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_flood_leaves_peak_memory_within_128_mib_of_idle() {
    let data_dir = temp_data_dir();
    let node = Node::start(
        "serve",
        &[
            ("LOADSTAR_DATA_DIR", data_dir.to_str().unwrap()),
            ("LOADSTAR_LOG__FORMAT", "json"),
            // The production cost, not the tests' cheap one: memory is the point.
            ("LOADSTAR_AUTH__ARGON2_MEMORY_KIB", "19456"),
            ("LOADSTAR_AUTH__ARGON2_ITERATIONS", "2"),
            // Fixed, so the bound does not depend on the cores of the machine.
            ("LOADSTAR_AUTH__PASSWORD_HASH_CONCURRENCY", "2"),
            // Fixed, so the bound does not depend on the cores of the machine.
        ],
    );
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    sign_up_buyer(&http, &node.url).await;
    let pid = node.child.id();
    let idle_kib = memory_kib(pid, "VmRSS");

    let wrong = json!({"email": BUYER_EMAIL, "password": "not the password"});
    let attempts = (0..ATTEMPTS).map(|_| {
        http.post(format!("{}/v1/sessions", node.url))
            .json(&wrong)
            .send()
    });
    let mut unauthorized = 0;
    let mut refused = 0;
    for response in join_all(attempts).await {
        match response.unwrap().status().as_u16() {
            401 => unauthorized += 1,
            503 => refused += 1,
            other => panic!("a wrong password got {other}"),
        }
    }
    let peak_kib = memory_kib(pid, "VmHWM");
    eprintln!(
        "{ATTEMPTS} wrong logins: {unauthorized} checked (401), {refused} refused (503); \
         RSS idle {idle_kib} KiB, peak {peak_kib} KiB"
    );
    assert!(
        peak_kib.saturating_sub(idle_kib) < ALLOWED_GROWTH_KIB,
        "peak RSS {peak_kib} KiB is more than 128 MiB above idle ({idle_kib} KiB)"
    );

    login(&http, &node.url, BUYER_EMAIL, BUYER_PASSWORD).await;
    drop(node);
    let _ = std::fs::remove_dir_all(data_dir);
}
