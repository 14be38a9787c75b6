//! Scale-out without hand-numbered nodes: `loadstar api` processes started at once from
//! one template on one PostgreSQL database lease distinct node ids, and one told to use an
//! id a live node holds refuses to start, naming the holder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use loadstar_store::test_support::fresh_postgres_url;
use process::{loadstar, temp_data_dir, Node};
use sqlx::Connection;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_at_once_lease_distinct_ids_and_a_taken_one_is_refused() {
    let Some(database_url) = fresh_postgres_url().await else {
        eprintln!("LOADSTAR_TEST_DATABASE_URL is not set: node id test not run");
        return;
    };
    let data_dir = temp_data_dir();
    let env = vec![
        ("LOADSTAR_DATABASE__URL".to_owned(), database_url.clone()),
        (
            "LOADSTAR_DATA_DIR".to_owned(),
            data_dir.to_str().unwrap().to_owned(),
        ),
        ("LOADSTAR_LOG__FORMAT".to_owned(), "json".to_owned()),
    ];
    let migrate = loadstar(&["migrate"]).envs(env.clone()).output().unwrap();
    assert!(migrate.status.success());

    // One template, four processes, started together.
    let starting: Vec<_> = (0..4)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || Node::start("api", &env))
        })
        .collect();
    let nodes: Vec<Node> = starting
        .into_iter()
        .map(|node| node.join().unwrap())
        .collect();

    let mut db = sqlx::PgConnection::connect(&database_url).await.unwrap();
    let leased: Vec<(i64, String)> =
        sqlx::query_as("SELECT node_id, holder FROM node_leases ORDER BY node_id")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let ids: BTreeSet<i64> = leased.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids.len(),
        4,
        "four nodes, four distinct node ids: {leased:?}"
    );

    let (taken, holder) = &leased[0];
    let refused = loadstar(&["api", "--listen", "127.0.0.1:0"])
        .envs(env.clone())
        .env("LOADSTAR_NODE__ID", taken.to_string())
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a fifth node with a taken id must not start"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "node.id {taken} is held by another live node ({holder})"
        )),
        "the refusal names the id and its holder: {stderr}"
    );

    // A graceful stop gives the id back at once.
    let mut nodes = nodes;
    let mut first = nodes.remove(0);
    first.signal("-TERM");
    let remaining: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM node_leases")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(remaining, 3, "the stopped node released its id");
    db.close().await.unwrap();
}
