//! nmap's timing templates (`-T0` … `-T5`): what each sets, in FastPort's
//! terms, and how `-T` is parsed on the command line. The values become an
//! [`AdaptiveTiming`](super::AdaptiveTiming) (and the concurrency and rate
//! caps) in `config`.

use std::fmt;
use std::time::Duration;

/// nmap's timing templates, `-T0` … `-T5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Template {
    /// `-T0`: one probe at a time, five minutes apart.
    Paranoid,
    /// `-T1`: one probe at a time, 15 seconds apart.
    Sneaky,
    /// `-T2`: one probe at a time, 0.4 seconds apart.
    Polite,
    /// `-T3`: the default.
    Normal,
    /// `-T4`: shorter waits, fewer retries.
    Aggressive,
    /// `-T5`: shorter waits still, for fast networks.
    Insane,
}

/// A `-T` value that is neither 0-5 nor one of nmap's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid -T \"{0}\": expected 0-5 or paranoid, sneaky, polite, normal, aggressive, insane")]
pub struct TemplateError(pub String);

/// What a template sets (each can still be given by its own flag).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemplateValues {
    /// The wait before any answer was measured.
    pub initial_rtt: Duration,
    /// The shortest wait an attempt gets.
    pub min_rtt: Duration,
    /// The longest wait an attempt gets.
    pub max_rtt: Duration,
    /// Retries of a silent port, at most.
    pub max_retries: u32,
    /// Probes in flight at most (nmap's `--max-parallelism`).
    pub max_concurrency: Option<usize>,
    /// Probes per second at most (nmap's `--scan-delay`, as a rate).
    pub rate: Option<f64>,
    /// The scan-wide window at the start, per worker.
    pub initial_window: usize,
}

/// The scan-wide window at the start, per worker, of the parallel
/// templates (`-T3` to `-T5`): the worker's whole share of `--concurrency`
/// (the window is capped by it), as a fixed `--timeout` sends. Slow start
/// doubles a window per round trip, so a start at 64 took seven round trips
/// to reach a 2-core worker's share (~7 500): on netsim's far world (every
/// host 250 ms away) 1.75 s of a 4.7-6.3 s scan, 128, 242, 460, 892, 1 743,
/// 3 338 SYNs in its first quarter-seconds. 1 024 needed three round trips,
/// 2 048 two, and far then took 1.08 × the best fixed setting's time and
/// 1.56 × its oracle's; the whole share, 0.97 × and 1.41 ×. An earlier
/// trial of the whole share, on a loaded machine, made netsim's timers run
/// 150-265 ms late and two internet-like runs of six reported 362 and 1 532
/// closed ports filtered; with attempts judged again by their hosts'
/// answers and a third try while answers run late, nine loaded and
/// unloaded runs held the truth's states. A lossy path still halves the
/// window from there.
pub const PARALLEL_INITIAL_WINDOW: usize = usize::MAX;

impl Template {
    /// Every template, `-T0` first.
    pub const ALL: [Template; 6] = [
        Template::Paranoid,
        Template::Sneaky,
        Template::Polite,
        Template::Normal,
        Template::Aggressive,
        Template::Insane,
    ];

    /// `0`..`5` or nmap's name, any case.
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        let t = s.trim();
        Template::ALL
            .into_iter()
            .enumerate()
            .find(|(i, t2)| t == i.to_string() || t.eq_ignore_ascii_case(t2.name()))
            .map(|(_, t)| t)
            .ok_or_else(|| TemplateError(s.to_string()))
    }

    /// The template's number, 0-5.
    pub fn level(self) -> u8 {
        self as u8
    }

    /// nmap's name for the template.
    pub fn name(self) -> &'static str {
        match self {
            Template::Paranoid => "paranoid",
            Template::Sneaky => "sneaky",
            Template::Polite => "polite",
            Template::Normal => "normal",
            Template::Aggressive => "aggressive",
            Template::Insane => "insane",
        }
    }

    /// nmap's values for the template (nmap.cc), in FastPort's terms.
    pub fn values(self) -> TemplateValues {
        let ms = Duration::from_millis;
        let normal = TemplateValues {
            initial_rtt: ms(1000),
            min_rtt: ms(100),
            max_rtt: ms(10_000),
            max_retries: 10,
            max_concurrency: None,
            rate: None,
            initial_window: PARALLEL_INITIAL_WINDOW,
        };
        let serial = |initial_rtt: Duration, delay: Duration| TemplateValues {
            initial_rtt,
            // nmap: an initial timeout above the maximum raises the maximum.
            max_rtt: normal.max_rtt.max(initial_rtt),
            max_concurrency: Some(1),
            rate: Some(1.0 / delay.as_secs_f64()),
            initial_window: 1,
            ..normal
        };
        match self {
            Template::Paranoid => serial(ms(300_000), ms(300_000)),
            Template::Sneaky => serial(ms(15_000), ms(15_000)),
            Template::Polite => serial(normal.initial_rtt, ms(400)),
            Template::Normal => normal,
            Template::Aggressive => TemplateValues {
                initial_rtt: ms(500),
                min_rtt: ms(100),
                max_rtt: ms(1250),
                max_retries: 6,
                ..normal
            },
            Template::Insane => TemplateValues {
                initial_rtt: ms(250),
                min_rtt: ms(50),
                max_rtt: ms(300),
                max_retries: 2,
                ..normal
            },
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{} ({})", self.level(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// Slow start from 64 probes per worker spent seven round trips
    /// reaching the worker's share of `--concurrency`: 1.75 s of a far
    /// world's scan (every host 250 ms away).
    #[test]
    fn parallel_templates_start_their_window_at_a_workers_whole_share() {
        let share = 15_000 / 2;
        for t in [Template::Normal, Template::Aggressive, Template::Insane] {
            let w = t.values().initial_window;
            assert!(w >= share, "{t}: {w}");
            assert_eq!(w, PARALLEL_INITIAL_WINDOW);
        }
        for t in [Template::Paranoid, Template::Sneaky, Template::Polite] {
            assert_eq!(t.values().initial_window, 1, "{t}: parallelism 1");
        }
    }

    #[test]
    fn templates_parse_by_level_and_name() {
        assert_eq!(Template::parse("4"), Ok(Template::Aggressive));
        assert_eq!(Template::parse("Insane"), Ok(Template::Insane));
        assert_eq!(Template::parse("paranoid"), Ok(Template::Paranoid));
        assert!(Template::parse("6").is_err());
        assert_eq!(
            Template::parse("fast").unwrap_err().to_string(),
            "invalid -T \"fast\": expected 0-5 or paranoid, sneaky, polite, normal, aggressive, insane"
        );
        // nmap's facts.
        let v = Template::Aggressive.values();
        assert_eq!(
            (v.min_rtt, v.max_rtt, v.initial_rtt),
            (MS(100), MS(1250), MS(500))
        );
        assert_eq!(v.max_retries, 6);
        let v = Template::Insane.values();
        assert_eq!(
            (v.min_rtt, v.max_rtt, v.initial_rtt),
            (MS(50), MS(300), MS(250))
        );
        assert_eq!(v.max_retries, 2);
        let v = Template::Paranoid.values();
        assert_eq!(v.max_concurrency, Some(1));
        assert_eq!(v.initial_window, 1);
        assert_eq!(v.max_rtt, MS(300_000));
    }
}
