//! Node ids leased from PostgreSQL: distinct for concurrent starters, a configured id held
//! by a live node refused with the holder's name, a crashed holder's id free after its
//! lease, a released one free at once; SQLite takes the configured id as it is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use loadstar_store::test_support::fresh_database;
use loadstar_store::{Backend, NodeLease, NodeLeaseError};
use std::collections::BTreeSet;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starters_lease_distinct_ids_and_a_taken_one_is_refused_by_name() {
    let Some(db) = fresh_database(Backend::Postgres).await else {
        eprintln!("LOADSTAR_TEST_DATABASE_URL is not set: node lease test not run");
        return;
    };
    let leases = futures::future::join_all((0..8).map(|_| NodeLease::acquire(&db, None, LEASE)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    let ids: BTreeSet<u16> = leases.iter().map(NodeLease::node_id).collect();
    assert_eq!(
        ids,
        (0..8).collect(),
        "eight starters, eight distinct ids, lowest first"
    );

    let refused = NodeLease::acquire(&db, Some(3), LEASE).await.unwrap_err();
    match &refused {
        NodeLeaseError::Taken {
            node_id, holder, ..
        } => {
            assert_eq!(*node_id, 3);
            assert!(holder.contains("pid"), "the holder is named: {holder}");
        }
        other => panic!("expected Taken, got {other:?}"),
    }
    assert!(refused
        .to_string()
        .contains("node.id 3 is held by another live node"));

    let holder_of_3 = leases.iter().find(|lease| lease.node_id() == 3).unwrap();
    holder_of_3.release().await;
    let again = NodeLease::acquire(&db, Some(3), LEASE).await.unwrap();
    assert_eq!(again.node_id(), 3, "a released id is free at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holders_id_frees_once_its_lease_runs_out() {
    let Some(db) = fresh_database(Backend::Postgres).await else {
        eprintln!("LOADSTAR_TEST_DATABASE_URL is not set: node lease test not run");
        return;
    };
    let short = Duration::from_millis(600);
    let crashed = NodeLease::acquire(&db, Some(9), short).await.unwrap();
    // A crash: the renewal stops and nothing is released.
    drop(crashed);
    assert!(matches!(
        NodeLease::acquire(&db, Some(9), short).await,
        Err(NodeLeaseError::Taken { .. })
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let taken_over = loop {
        if let Ok(lease) = NodeLease::acquire(&db, Some(9), LEASE).await {
            break Some(lease);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the crashed holder's lease runs out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(taken_over.unwrap().node_id(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_keeps_its_id_past_one_lease_length() {
    let Some(db) = fresh_database(Backend::Postgres).await else {
        eprintln!("LOADSTAR_TEST_DATABASE_URL is not set: node lease test not run");
        return;
    };
    let short = Duration::from_millis(300);
    let holder = NodeLease::acquire(&db, Some(4), short).await.unwrap();
    let started = std::time::Instant::now();
    while started.elapsed() < short * 4 {
        assert!(
            matches!(
                NodeLease::acquire(&db, Some(4), short).await,
                Err(NodeLeaseError::Taken { .. })
            ),
            "renewed every third of its lease, a live holder's id is never free"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(holder);
}

#[tokio::test]
async fn sqlite_uses_the_configured_id_as_it_is() {
    let db = fresh_database(Backend::Sqlite).await.unwrap();
    assert_eq!(
        NodeLease::acquire(&db, Some(7), LEASE)
            .await
            .unwrap()
            .node_id(),
        7
    );
    assert_eq!(
        NodeLease::acquire(&db, None, LEASE)
            .await
            .unwrap()
            .node_id(),
        0
    );
}
