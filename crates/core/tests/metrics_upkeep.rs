//! Histogram samples do not pile up when nobody scrapes `/metrics`: the process recorder
//! folds them into buckets on its own. Its own test binary, because it counts every live
//! byte of the process through the global allocator.
#![allow(clippy::unwrap_used)]

use cap::Cap;
use loadstar_core::telemetry::metrics_handle;
use loadstar_core::test_support::poll_until;
use std::alloc::System;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Raw samples take ~8 bytes each until upkeep: 2 million are ~16 MB.
const SAMPLES: usize = 2_000_000;
const PENDING_BYTES: usize = SAMPLES * 8;

fn record(samples: usize) {
    for i in 0..samples {
        // One histogram with buckets (`_seconds`) and one summary, as the app has both.
        metrics::histogram!("upkeep_test_request_seconds").record(0.001);
        metrics::histogram!("upkeep_test_rows").record((i % 100) as f64);
    }
}

#[tokio::test]
async fn histogram_samples_are_folded_away_without_a_scrape() {
    let handle = metrics_handle();
    record(1);
    let before = ALLOCATOR.allocated();

    record(SAMPLES / 2);
    let grown = ALLOCATOR.allocated().saturating_sub(before);
    assert!(
        grown >= PENDING_BYTES / 2,
        "samples are held raw until upkeep: {grown} bytes"
    );

    // Freed blocks are reclaimed once the recording threads move on (epoch-based), so each
    // look records a few more samples.
    poll_until(
        "the held samples are freed",
        Duration::from_secs(30),
        || {
            record(100);
            let held = ALLOCATOR.allocated().saturating_sub(before);
            async move { held < PENDING_BYTES / 8 }
        },
    )
    .await;

    // Folding loses nothing: every sample is counted when /metrics is finally rendered.
    let rendered = handle.render();
    let count_line = rendered
        .lines()
        .find(|line| line.starts_with("upkeep_test_request_seconds_count"))
        .unwrap();
    let count: usize = count_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count > SAMPLES / 2, "{count_line}");
    assert!(
        rendered.contains("upkeep_test_rows{quantile=\"0.5\"}"),
        "{rendered}"
    );
}
