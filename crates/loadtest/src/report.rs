//! The result line every benchmark mode prints: one Markdown table row, so
//! `bench/jobs.sh` can stack the rows of every backend (and of the apalis peer, which
//! prints the same columns) under one header.

use crate::jobs_benchmark::JobsReport;
use std::time::Duration;

/// The header matching [`markdown_row`].
pub const MARKDOWN_HEADER: &str = "| backend | enqueue jobs/s | process jobs/s | enqueue-to-start p50 | p99 |\n|---|---|---|---|---|";

pub fn markdown_row(report: &JobsReport) -> String {
    format!(
        "| {} | {:.0} | {:.0} | {} | {} |",
        report.backend,
        report.enqueue_per_second,
        report.process_per_second,
        millis(report.latency_p50),
        millis(report.latency_p99),
    )
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_has_the_headers_columns() {
        let row = markdown_row(&JobsReport {
            backend: "sqlite".to_owned(),
            enqueue_per_second: 12_345.6,
            process_per_second: 7_000.0,
            latency_p50: Duration::from_micros(1_500),
            latency_p99: Duration::from_millis(12),
            latency_samples: 2_000,
        });
        assert_eq!(row, "| sqlite | 12346 | 7000 | 1.50 ms | 12.00 ms |");
        let columns = |line: &str| line.matches('|').count();
        assert_eq!(
            columns(&row),
            columns(MARKDOWN_HEADER.lines().next().unwrap_or(""))
        );
    }
}
