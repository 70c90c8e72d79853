//! The figures of a bench line and what goes to stderr while it runs: percentiles, rates per
//! webhook, the progress bar, and this process's CPU time and peak memory.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub(super) fn per(count: Option<u64>, n: usize) -> Option<f64> {
    count.map(|c| round3(c as f64 / n.max(1) as f64))
}

pub(super) fn delta(before: Option<i64>, after: Option<i64>) -> Option<u64> {
    before
        .zip(after)
        .map(|(b, a)| u64::try_from(a - b).unwrap_or(0))
}

pub(super) fn cpu_us_per(before: Option<u64>, n: usize) -> Option<f64> {
    process_cpu_ns()
        .zip(before)
        .map(|(a, b)| round3(a.saturating_sub(b) as f64 / 1000.0 / n.max(1) as f64))
}

pub(super) fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v}"))
}

/// ", 0.01 SQL statements and 0.01 commits per webhook" (PostgreSQL), or nothing.
pub(super) fn sql_note(
    statements: Option<u64>,
    commits: Option<u64>,
    n: usize,
    unit: &str,
) -> String {
    match (statements, commits) {
        (Some(s), Some(x)) => format!(
            "; {} SQL statements and {} commits per {unit}",
            fmt_opt(per(Some(s), n)),
            fmt_opt(per(Some(x), n))
        ),
        _ => String::new(),
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub(super) struct Progress {
    pub(super) done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub(super) fn start(total: usize) -> Self {
        let done = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = std::io::stderr().is_terminal().then(|| {
            let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
            tokio::spawn(async move {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    draw(done.load(Ordering::Relaxed), total, started.elapsed());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                draw(done.load(Ordering::Relaxed), total, started.elapsed());
                eprintln!();
            })
        });
        Self { done, stop, handle }
    }

    pub(super) fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle {
            // The drawing task ends within one tick; abort rather than wait on it.
            handle.abort();
            eprint!("\r\x1b[2K");
        }
    }
}

pub(super) fn draw(done: usize, total: usize, elapsed: Duration) {
    const WIDTH: usize = 30;
    let filled = (done.min(total) * WIDTH) / total.max(1);
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total} {rate:.0}/s",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled)
    );
    let _ = err.flush();
}

/// The `p`th percentile (nearest rank) of sorted microsecond latencies, in milliseconds.
pub(super) fn percentile_ms(sorted_us: &[u64], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us.get(idx).map(|us| round3(*us as f64 / 1000.0))
}

pub(super) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// CPU time this process's live threads have used, in nanoseconds (from
/// `/proc/self/task/*/schedstat`); `None` where that is not available.
pub(super) fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The process's peak resident set (VmHWM), in MiB; `None` where /proc is not available.
pub(super) fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(round3(kb / 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&us, 50.0), Some(50.0));
        assert_eq!(percentile_ms(&us, 99.0), Some(99.0));
        assert_eq!(percentile_ms(&[], 50.0), None);
        assert_eq!(percentile_ms(&[1500], 99.0), Some(1.5));
    }

    #[test]
    fn per_webhook_figures() {
        assert_eq!(per(Some(3), 30), Some(0.1));
        assert_eq!(per(None, 30), None);
        assert_eq!(delta(Some(10), Some(25)), Some(15));
        assert_eq!(delta(None, Some(25)), None);
        assert_eq!(
            sql_note(Some(6), Some(9), 3, "delivery"),
            "; 2 SQL statements and 3 commits per delivery"
        );
        assert_eq!(sql_note(None, Some(9), 3, "delivery"), "");
    }
}
