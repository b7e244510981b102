//! Prometheus metrics: request counts and latency per S3 operation, bytes in and out.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<OperationLabel, Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
    lifecycle_scanned: Gauge,
    lifecycle_actions: Family<ActionLabel, Gauge>,
    lifecycle_running: Gauge,
    lifecycle_last_pass: Gauge,
    boundary_noncompliant: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every Vallum metric.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vallum");
        let requests = Family::<RequestLabels, Counter>::default();
        // 100 µs to ~52 s.
        let latency = Family::<OperationLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 20))
        });
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        registry.register(
            "s3_requests",
            "S3 requests by operation and HTTP status",
            requests.clone(),
        );
        registry.register(
            "s3_request_duration_seconds",
            "S3 request latency until response headers, by operation",
            latency.clone(),
        );
        registry.register(
            "s3_received_bytes",
            "Request body bytes received (declared Content-Length)",
            bytes_in.clone(),
        );
        registry.register(
            "s3_sent_bytes",
            "Response body bytes sent (declared Content-Length)",
            bytes_out.clone(),
        );
        let lifecycle_scanned = Gauge::default();
        let lifecycle_actions = Family::<ActionLabel, Gauge>::default();
        let lifecycle_running = Gauge::default();
        let lifecycle_last_pass = Gauge::default();
        registry.register(
            "lifecycle_pass_versions_scanned",
            "Versions the lifecycle worker examined in its current (or last) pass",
            lifecycle_scanned.clone(),
        );
        registry.register(
            "lifecycle_pass_actions",
            "Lifecycle actions taken in the current (or last) pass, by action",
            lifecycle_actions.clone(),
        );
        registry.register(
            "lifecycle_pass_running",
            "1 while a lifecycle pass is in progress",
            lifecycle_running.clone(),
        );
        registry.register(
            "lifecycle_last_pass_finished_timestamp_seconds",
            "When the last complete lifecycle pass finished (Unix time)",
            lifecycle_last_pass.clone(),
        );
        let boundary_noncompliant = Gauge::default();
        registry.register(
            "boundary_noncompliant_buckets",
            "Buckets whose stored data is on a site their boundary policy no longer permits",
            boundary_noncompliant.clone(),
        );
        Self {
            boundary_noncompliant,
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            lifecycle_scanned,
            lifecycle_actions,
            lifecycle_running,
            lifecycle_last_pass,
        }
    }

    /// Records one request.
    pub fn record(
        &self,
        operation: &str,
        status: u16,
        elapsed: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&OperationLabel {
                operation: operation.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        self.bytes_in.inc_by(bytes_in);
        self.bytes_out.inc_by(bytes_out);
    }

    /// Publishes the lifecycle worker's progress.
    pub fn set_lifecycle(&self, p: &vallum_core::lifecycle::LifecycleProgress) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.lifecycle_scanned.set(g(p.versions_scanned));
        for (action, value) in [
            ("current_expired", p.current_expired),
            ("noncurrent_deleted", p.noncurrent_deleted),
            ("delete_markers_removed", p.delete_markers_removed),
            ("uploads_aborted", p.uploads_aborted),
            ("skipped_locked", p.skipped_locked),
        ] {
            self.lifecycle_actions
                .get_or_create(&ActionLabel { action })
                .set(g(value));
        }
        self.lifecycle_running.set(i64::from(p.bucket.is_some()));
        if let Some(ms) = p.last_pass_finished_ms {
            self.lifecycle_last_pass.set(ms / 1000);
        }
    }

    /// Publishes how many buckets hold data outside their boundary policy.
    pub fn set_boundary_noncompliant(&self, buckets: usize) {
        self.boundary_noncompliant
            .set(i64::try_from(buckets).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_per_operation() {
        let m = Metrics::new();
        m.record("PutObject", 200, Duration::from_millis(3), 4096, 0);
        m.record("PutObject", 200, Duration::from_millis(5), 4096, 0);
        m.record("GetObject", 404, Duration::from_millis(1), 0, 120);
        let text = m.render();
        assert!(
            text.contains(r#"vallum_s3_requests_total{operation="PutObject",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"vallum_s3_requests_total{operation="GetObject",status="404"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("vallum_s3_received_bytes_total 8192"),
            "{text}"
        );
        assert!(
            text.contains(r#"vallum_s3_request_duration_seconds_count{operation="PutObject"} 2"#),
            "{text}"
        );
    }
}
