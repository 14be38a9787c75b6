//! Process-wide telemetry: the `tracing` subscriber and the Prometheus recorder.
//!
//! Both are global by nature, so both install at most once per process; tests that start
//! many apps in one process share them.
//!
//! The recorder keeps every histogram sample raw until its upkeep folds them into buckets
//! (or summaries). Built with `build_recorder`, nothing runs that upkeep but a `/metrics`
//! scrape, and an embedded node that nobody scrapes grew ~19 bytes per request without end
//! (docs/performance.md); so the recorder comes with an upkeep thread of its own.

use crate::config::{LogConfig, LogFormat};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Latency buckets (seconds) from 0.5 ms to 10 s: fine at the fast end, where the
/// interesting regressions of a cached read live.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Drivers that log each failed connection themselves: sqlx's pool warns for every
/// connection that fails its release check (dozens of lines per database outage), and
/// lapin logs an ERROR per broken connection, at every outage of the broker. The store's
/// health monitor and the job backend's broker log each outage themselves, once, with
/// the driver's error as the cause; so unless the operator names such a target in
/// `log.level`, these keep only what their own targets mean by it.
const QUIET_DRIVERS: &[(&str, &str)] = &[("sqlx", "sqlx_core::pool=error"), ("lapin", "lapin=off")];

fn with_quiet_drivers(level: &str) -> String {
    QUIET_DRIVERS
        .iter()
        .filter(|(target, _)| !level.contains(target))
        .fold(level.to_owned(), |filter, (_, quiet)| {
            format!("{filter},{quiet}")
        })
}

/// Installs the global log subscriber. JSON lines when stdout is not a terminal (or
/// `log.format = "json"`), readable text otherwise. A second call is a no-op.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_new(with_quiet_drivers(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _already_installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// How often histogram samples are folded into their buckets. Between two upkeeps the raw
/// samples take ~8 bytes each: at 65,000 requests/s and a few histograms per request,
/// about a megabyte and a half.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The process's Prometheus recorder, installed on first use, with its upkeep running
/// every [`UPKEEP_INTERVAL`] whether or not anyone scrapes.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; ours then simply renders
        // nothing, which the /metrics test would catch.
        let _ = metrics::set_global_recorder(recorder);
        spawn_upkeep(handle.clone(), UPKEEP_INTERVAL);
        handle
    })
}

/// Runs `handle`'s upkeep every `interval` for the rest of the process. A thread rather
/// than a task: the recorder is process-wide and may be installed before (or outside) any
/// runtime, and the upkeep must outlive every runtime that records into it.
fn spawn_upkeep(handle: PrometheusHandle, interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || loop {
            std::thread::sleep(interval);
            handle.run_upkeep();
        });
    if let Err(error) = spawned {
        tracing::error!(
            %error,
            "metrics upkeep thread did not start: histogram samples pile up until /metrics is scraped"
        );
    }
}
