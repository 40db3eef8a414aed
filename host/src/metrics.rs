//! Counters and histograms rendered in the Prometheus text format (`GET /metrics`).
//!
//! The gateway's metrics are a fixed set known at compile time, so they are plain atomics
//! in the structs that own them; this module only provides the two primitives and the
//! text rendering (exposition format 0.0.4).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency buckets, in seconds: 2 us to 100 ms (the policy deadline
/// is 50 ms by default), so both a 5 us decision and a timeout land in a bucket of its own.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_002, 0.000_005, 0.000_010, 0.000_020, 0.000_050, 0.000_100, 0.000_250, 0.000_500, 0.001,
    0.005, 0.010, 0.025, 0.050, 0.100,
];

/// A latency histogram with the fixed [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the `_bucket`, `_sum` and `_count` series of `name{labels}` to `out`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bucket, le) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Appends `# HELP` and `# TYPE` lines for a metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(3));
        h.observe(Duration::from_micros(40));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        h.render(&mut out, "x", "d=\"a\"");
        assert!(
            out.contains("x_bucket{d=\"a\",le=\"0.000005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{d=\"a\",le=\"0.00005\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("x_bucket{d=\"a\",le=\"0.1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{d=\"a\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{d=\"a\"} 3\n"), "{out}");
    }
}
