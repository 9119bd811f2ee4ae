//! How far a long scan has got, on stderr: a live bar when stderr is a
//! terminal, otherwise (with `--stats-every`) a status line now and then,
//! as nmap prints them:
//!
//! ```text
//! Stats: 0:00:05 elapsed; 123456/200000 probes (61.7%); 24691 probes/s; ETA 0:00:03
//! ```
//!
//! The writer thread calls [`Progress::advance`] once per batch of results,
//! so the clock is checked there; workers hand over what they have at least
//! every 50 ms while results come in.
//!
//! The bar redraws itself at most 20 times a second (indicatif's rate
//! limit). Hiding it around a batch write forces a redraw, so
//! [`Progress::suspend`] hides it only when the batch prints on the
//! terminal the bar shares: a closed-port batch, or output to a pipe or
//! file, leaves the bar alone. (Hiding it around every batch once redrew a
//! 5 s scan 8 547 times: 1 MB of terminal output.)

use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::dates::clock;

pub struct Progress {
    bar: Option<ProgressBar>,
    /// Whether stdout is a terminal too: only then can a write disturb the bar.
    stdout_terminal: bool,
    every: Option<Duration>,
    started: Instant,
    next_line: Instant,
    total: u64,
    done: u64,
}

impl Progress {
    /// A bar when stderr is a terminal; otherwise a status line every
    /// `every`, or nothing.
    pub fn new(total: u64, every: Option<Duration>) -> Progress {
        let started = Instant::now();
        let bar = io::stderr().is_terminal().then(|| bar(total));
        Progress {
            every: if bar.is_some() { None } else { every },
            bar,
            stdout_terminal: io::stdout().is_terminal(),
            started,
            next_line: started + every.unwrap_or_default(),
            total,
            done: 0,
        }
    }

    /// No bar and no status lines (`-q`); still counts.
    pub fn silent(total: u64) -> Progress {
        let started = Instant::now();
        Progress {
            bar: None,
            stdout_terminal: false,
            every: None,
            started,
            next_line: started,
            total,
            done: 0,
        }
    }

    /// Counts `n` more results.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
        }
        if let Some(every) = self.every {
            let now = Instant::now();
            if now >= self.next_line {
                eprintln!("{}", status_line(now - self.started, self.done, self.total));
                // Skip missed ticks rather than print a burst after a stall.
                while self.next_line <= now {
                    self.next_line += every;
                }
            }
        }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    /// Runs `f`, with the bar hidden if `prints` (`f` writes something to
    /// stdout) and stdout is the terminal the bar is drawn on.
    pub fn suspend<R>(&self, prints: bool, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) if prints && self.stdout_terminal => bar.suspend(f),
            _ => f(),
        }
    }

    /// Takes the bar off the screen.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} probes ({percent}%), {rate} probes/s, ETA {eta}",
    )
    .map(|style| {
        style
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}", state.per_sec());
                },
            )
            .with_key("eta", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", eta_text(Some(state.eta())));
            })
    })
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Longest time left worth showing: beyond it (a rate measured over the
/// first instant, a stalled scan) the figure means nothing.
const MAX_ETA: Duration = Duration::from_secs(100 * 24 * 3600);

/// The time left as `H:MM:SS`, or `unknown` when there is none worth
/// showing.
fn eta_text(eta: Option<Duration>) -> String {
    match eta {
        Some(d) if d <= MAX_ETA => clock(d),
        _ => "unknown".to_string(),
    }
}

/// One status line: elapsed time, results so far, rate, and the time left
/// at that rate.
pub fn status_line(elapsed: Duration, done: u64, total: u64) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let percent = if total > 0 {
        done as f64 * 100.0 / total as f64
    } else {
        100.0
    };
    let eta = if done >= total {
        clock(Duration::ZERO)
    } else if rate > 0.0 {
        eta_text(Duration::try_from_secs_f64((total - done) as f64 / rate).ok())
    } else {
        "unknown".to_string()
    };
    format!(
        "Stats: {} elapsed; {done}/{total} probes ({percent:.1}%); {rate:.0} probes/s; ETA {eta}",
        clock(elapsed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(Duration::from_secs(5), 123_456, 200_000),
            "Stats: 0:00:05 elapsed; 123456/200000 probes (61.7%); 24691 probes/s; ETA 0:00:03"
        );
        assert_eq!(
            status_line(Duration::from_secs(5), 0, 1000),
            "Stats: 0:00:05 elapsed; 0/1000 probes (0.0%); 0 probes/s; ETA unknown"
        );
        assert_eq!(
            status_line(Duration::from_secs(3725), 10, 10),
            "Stats: 1:02:05 elapsed; 10/10 probes (100.0%); 0 probes/s; ETA 0:00:00"
        );
    }

    #[test]
    fn eta_showed_a_million_years() {
        // One probe in an hour, 10^9 to go: no ETA in years.
        assert_eq!(
            status_line(Duration::from_secs(3600), 1, 1_000_000_000),
            "Stats: 1:00:00 elapsed; 1/1000000000 probes (0.0%); 0 probes/s; ETA unknown"
        );
    }
}
