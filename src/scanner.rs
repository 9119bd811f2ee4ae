//! The library's front door: a [`Scanner`] built by a [`ScannerBuilder`]
//! (targets, ports, timing, engine), run either with a callback on the
//! calling thread ([`Scanner::run`]) or as an iterator whose results stream
//! from a background thread ([`Scanner::scan`]).
//!
//! It is a thin layer over [`crate::engine::run`]: the builder checks every
//! input once (as [`crate::config`] does for the command line) and the
//! results are the engine's [`ProbeResult`]s in a friendlier form
//! ([`ScanResult`]). Nothing here is async and nothing needs a runtime: the
//! scan runs on OS threads, so an async application hands it to a thread of
//! its own (`std::thread::spawn` or `tokio::task::spawn_blocking`) and awaits
//! the results through a channel; `examples/tokio_app.rs` and
//! `examples/embedded.rs` show the pattern.
//!
//! ```no_run
//! use std::time::Duration;
//! use fastport::scanner::{Engine, Scanner, State};
//!
//! # fn main() -> Result<(), fastport::scanner::Error> {
//! let scanner = Scanner::builder()
//!     .targets(["127.0.0.1"])?
//!     .ports("1-1024")?
//!     .timeout(Duration::from_millis(500))
//!     .engine(Engine::Mio)
//!     .build()?;
//! let summary = scanner.run(|result| {
//!     if result.state == State::Open {
//!         println!("{result}");
//!     }
//! })?;
//! println!("{} ports in {:?}", summary.stats.results(), summary.elapsed);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::classify::{Reason, State};
pub use crate::engine::EngineKind as Engine;
pub use crate::stats::Summary;
pub use crate::targets::{TargetError, TargetErrorKind};
pub use crate::timing::Template;

use crate::config::{default_concurrency, fd_budget};
use crate::engine::{self, EngineConfig, EngineError};
use crate::order::{Blocks, Done, Order, Schedule, Shard};
use crate::probe::ProbeResult;
use crate::targets::{self, TargetArgs, TargetSpace};
use crate::timing::AdaptiveTiming;

/// Event-loop workers per core, at most (as on the command line).
const WORKERS_PER_CORE: usize = 4;
/// Result batches buffered between the scan thread and a [`Scan`]
/// iterator: a consumer that stops reading holds the scan back after this
/// many, instead of letting results pile up in memory.
const ITER_DEPTH: usize = 4;

/// Why a scanner could not be built or a scan could not run. Each variant
/// names the setting or the resource that was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A target or port specification cannot be used (the error names the
    /// token).
    #[error(transparent)]
    Targets(#[from] TargetError),
    /// A numeric setting is out of its range.
    #[error("invalid {setting} {value}: {why}")]
    Setting {
        /// The builder method that was given the value.
        setting: &'static str,
        /// The value, as given.
        value: String,
        /// What the value must be.
        why: &'static str,
    },
    /// Both a fixed timeout and a timing template were given.
    #[error("timeout fixes every attempt's wait and timing(Template) adapts it: give only one")]
    FixedAndAdaptive,
    /// The engine could not start (no poller, too few file descriptors).
    #[error(transparent)]
    Engine(EngineError),
    /// The background thread of [`Scanner::scan`] could not be started.
    #[error("cannot start the scan thread: {0}")]
    Spawn(#[source] io::Error),
    /// The background thread of [`Scanner::scan`] panicked.
    #[error("the scan thread panicked")]
    Panicked,
}

/// One port's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScanResult {
    /// The address probed.
    pub addr: IpAddr,
    /// The port probed.
    pub port: u16,
    /// The port's state (implied by `reason`, kept here for convenience).
    pub state: State,
    /// Why the port has that state, in nmap's terms.
    pub reason: Reason,
    /// How long the attempt that answered took to connect (or be refused);
    /// `None` when nothing answered.
    pub rtt: Option<Duration>,
}

impl ScanResult {
    /// The address and port as one socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }
}

impl From<&ProbeResult> for ScanResult {
    fn from(r: &ProbeResult) -> ScanResult {
        ScanResult {
            addr: r.target.ip(),
            port: r.target.port(),
            state: r.reason.state(),
            reason: r.reason,
            rtt: r.rtt_us.map(|us| Duration::from_micros(u64::from(us))),
        }
    }
}

impl fmt::Display for ScanResult {
    /// `127.0.0.1:22 open syn-ack`, as the text output writes a result.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.socket_addr(), self.state, self.reason)
    }
}

/// A handle that stops a running scan from any thread: the scan stops
/// starting probes, closes those in flight without reporting them, and
/// returns its summary with [`Summary::interrupted`] set.
///
/// Stopping is permanent: a scanner whose handle was stopped before it ran
/// ends at once.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Asks the scan to stop. Returns at once; the scan ends shortly after
    /// (within one poll interval of its workers).
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Stop::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// In which order the probes go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeOrder {
    /// A seeded random permutation of host blocks and of the probes within
    /// each (the default): no host sees a sweep of its ports in order.
    #[default]
    Random,
    /// Address by address, port by port, in the order given.
    Sequential,
}

/// Builds a [`Scanner`]; start with [`Scanner::builder`].
///
/// Targets and ports are checked as they are given (their methods return a
/// `Result`); hostnames are resolved, and everything is checked together,
/// by [`ScannerBuilder::build`].
#[derive(Debug, Clone)]
pub struct ScannerBuilder {
    targets: Vec<String>,
    exclude: Vec<String>,
    ports: Option<String>,
    top_ports: Option<usize>,
    resolve: bool,
    timeout: Option<Duration>,
    template: Option<Template>,
    retries: Option<u32>,
    concurrency: Option<usize>,
    threads: Option<usize>,
    rate: Option<f64>,
    engine: Engine,
    order: ProbeOrder,
    seed: Option<u64>,
}

/// Checks target specifications without resolving names, token by token,
/// and returns them to keep: a syntax error is reported where the target
/// was given, a hostname waits for `build` (which resolves it).
fn checked_specs<I, S>(specs: I, excludes: bool) -> Result<Vec<String>, TargetError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let specs: Vec<String> = specs.into_iter().map(Into::into).collect();
    let separators: &[char] = if excludes {
        &[',', ' ', '\t', '\n']
    } else {
        &[' ', '\t', '\n']
    };
    for token in specs
        .iter()
        .flat_map(|spec| spec.split(separators))
        .filter(|t| !t.is_empty())
    {
        let one = [token.to_string()];
        let (targets, exclude): (&[String], &[String]) =
            if excludes { (&[], &one) } else { (&one, &[]) };
        let args = TargetArgs {
            targets,
            exclude,
            resolve: false,
            ports: Some("1"),
            ..TargetArgs::default()
        };
        if let Err(e) = targets::build(&args) {
            match e.kind() {
                TargetErrorKind::HostnameNotAllowed | TargetErrorKind::NothingToScan { .. } => {}
                _ => return Err(e),
            }
        }
    }
    Ok(specs)
}

/// Builder methods that only keep their value: `fn name(value: T) =>
/// field = kept;` becomes a `pub fn name(mut self, value: T) -> Self` that
/// sets `self.field` to `kept` (`Some(value)` for a setting that has no
/// default, the value itself for one that has).
macro_rules! keep {
    ($($(#[$doc:meta])* fn $name:ident($value:ident: $ty:ty) => $field:ident = $kept:expr;)+) => {$(
        $(#[$doc])*
        pub fn $name(mut self, $value: $ty) -> Self {
            self.$field = $kept;
            self
        }
    )+};
}

impl ScannerBuilder {
    /// Adds targets: addresses, ranges (`198.18.0.1-20`, nmap's octet
    /// ranges `198.18.0-3.1`), CIDR blocks, IPv6, or hostnames (resolved by
    /// [`build`](Self::build)). Without any target, the scan is of
    /// `127.0.0.1`.
    pub fn targets<I, S>(mut self, targets: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.targets.extend(checked_specs(targets, false)?);
        Ok(self)
    }

    /// Removes addresses from the scan, in the syntax of
    /// [`targets`](Self::targets).
    pub fn exclude<I, S>(mut self, targets: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exclude.extend(checked_specs(targets, true)?);
        Ok(self)
    }

    /// The ports to scan, as nmap's `-p` takes them: `22,80,8000-8100`,
    /// `-` for all of 1-65535. The default is 1-1024.
    pub fn ports(mut self, spec: &str) -> Result<Self, Error> {
        targets::parse_ports(spec)?;
        self.ports = Some(spec.to_string());
        self.top_ports = None;
        Ok(self)
    }

    /// Scans the `n` ports most often found open instead of a port list.
    pub fn top_ports(mut self, n: usize) -> Self {
        self.top_ports = Some(n);
        self.ports = None;
        self
    }

    keep! {
        /// Whether hostnames are resolved (the default); without, a hostname
        /// is an error.
        fn resolve(resolve: bool) => resolve = resolve;

        /// Fixes how long every attempt waits for an answer (then one retry,
        /// unless [`retries`](Self::retries) says otherwise). Without it the
        /// wait is learnt from the answers (nmap's normal timing).
        fn timeout(timeout: Duration) => timeout = Some(timeout);

        /// Adaptive timing after one of nmap's templates (`-T0` … `-T5`).
        fn timing(template: Template) => template = Some(template);

        /// Extra attempts for a port that did not answer: exactly this many
        /// with a fixed [`timeout`](Self::timeout), at most this many with
        /// adaptive timing. At most 100.
        fn retries(retries: u32) => retries = Some(retries);

        /// Probes in flight, at most (all workers together). The default is
        /// three quarters of what the open-file limit allows; more than the
        /// limit allows is lowered to it.
        fn concurrency(probes: usize) => concurrency = Some(probes);

        /// Event-loop worker threads (default: one per core).
        fn threads(threads: usize) => threads = Some(threads);

        /// New connects per second at most, all workers together.
        fn rate(per_second: f64) => rate = Some(per_second);

        /// Which engine waits for the probes (default [`Engine::Mio`]).
        fn engine(engine: Engine) => engine = engine;

        /// The order of the probes (default [`ProbeOrder::Random`]).
        fn order(order: ProbeOrder) => order = order;

        /// The seed of the random order: the same seed and inputs give the same
        /// order. Drawn from the OS by default.
        fn seed(seed: u64) => seed = Some(seed);
    }

    /// Resolves hostnames, checks every setting together and returns the
    /// scanner. Nothing is sent yet. A hostname that does not resolve is
    /// skipped and listed in [`Scanner::unresolved`], unless it leaves
    /// nothing to scan.
    pub fn build(self) -> Result<Scanner, Error> {
        let bad = |setting, value: String, why| Error::Setting {
            setting,
            value,
            why,
        };
        if self.concurrency == Some(0) {
            return Err(bad("concurrency", "0".into(), "at least 1 probe"));
        }
        if self.threads == Some(0) {
            return Err(bad("threads", "0".into(), "at least 1 thread"));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate >= 0.1) {
                return Err(bad(
                    "rate",
                    rate.to_string(),
                    "expected connects per second, at least 0.1",
                ));
            }
        }
        if let Some(n) = self.retries.filter(|&n| n > 100) {
            return Err(bad("retries", n.to_string(), "at most 100"));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(bad("timeout", "0s".into(), "must be above zero"));
        }
        if self.timeout.is_some() && self.template.is_some() {
            return Err(Error::FixedAndAdaptive);
        }
        let targets::Built {
            space, unresolved, ..
        } = targets::build_named(&TargetArgs {
            targets: &self.targets,
            exclude: &self.exclude,
            resolve: self.resolve,
            ports: self.ports.as_deref(),
            top_ports: self.top_ports,
            ..TargetArgs::default()
        })?;

        let values = self.template.unwrap_or(Template::Normal).values();
        let (timeout, retries, adaptive) = match self.timeout {
            Some(t) => (t, self.retries.unwrap_or(1), None),
            None => (
                values.initial_rtt,
                self.retries.unwrap_or(values.max_retries),
                Some(AdaptiveTiming {
                    initial_rtt: values.initial_rtt,
                    min_rtt: values.min_rtt,
                    max_rtt: values.max_rtt,
                    initial_window: values.initial_window,
                }),
            ),
        };
        // The open-file limit as it is: a library does not raise it behind
        // its caller's back (the binary does, at start).
        let fd_limit = crate::sys::fd_limit().map_or(1024, |l| l.soft);
        let budget = usize::try_from(fd_budget(fd_limit)).unwrap_or(usize::MAX);
        let mut concurrency = self
            .concurrency
            .or(values.max_concurrency)
            .unwrap_or_else(|| default_concurrency(fd_limit))
            .min(budget);
        if self.engine == Engine::Threads {
            if let Some(max) = crate::sys::thread_budget() {
                concurrency = concurrency.min(usize::try_from(max).unwrap_or(usize::MAX));
            }
        }
        let concurrency = concurrency
            .min(usize::try_from(space.len()).unwrap_or(usize::MAX))
            .max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = self
            .threads
            .unwrap_or(cores)
            .clamp(1, concurrency)
            .min(cores * WORKERS_PER_CORE);

        let seed = self.seed.unwrap_or_else(crate::order::random_seed);
        let blocks = Blocks::new(space.len(), space.ports().len() as u64);
        let order = match self.order {
            ProbeOrder::Random => Order::random(blocks, seed),
            ProbeOrder::Sequential => Order::Sequential,
        };
        Ok(Scanner {
            schedule: Schedule::new(blocks, order, Shard::WHOLE, Done::none()),
            space,
            seed,
            engine: EngineConfig {
                kind: self.engine,
                timeout,
                retries,
                adaptive,
                concurrency,
                threads,
                rate: self.rate.or(values.rate),
                unanswered_rate: None,
                trace: None,
                services: None,
            },
            stop: Stop::default(),
            unresolved,
        })
    }
}

/// A scan, checked and ready to run: run it once with [`run`](Self::run)
/// (callback) or [`scan`](Self::scan) (iterator). Build another from a
/// cloned [`ScannerBuilder`] to scan again.
#[derive(Debug)]
pub struct Scanner {
    space: TargetSpace,
    schedule: Schedule,
    seed: u64,
    engine: EngineConfig,
    stop: Stop,
    unresolved: Vec<TargetError>,
}

impl Scanner {
    /// A builder with the defaults: `127.0.0.1`, ports 1-1024, adaptive
    /// timing, the mio engine, random order.
    pub fn builder() -> ScannerBuilder {
        ScannerBuilder {
            targets: Vec::new(),
            exclude: Vec::new(),
            ports: None,
            top_ports: None,
            resolve: true,
            timeout: None,
            template: None,
            retries: None,
            concurrency: None,
            threads: None,
            rate: None,
            engine: Engine::Mio,
            order: ProbeOrder::Random,
            seed: None,
        }
    }

    /// How many probes the scan makes (one per address and port).
    pub fn len(&self) -> u64 {
        self.space.len()
    }

    /// Whether there is nothing to scan (never, for a built scanner).
    pub fn is_empty(&self) -> bool {
        self.space.is_empty()
    }

    /// Probes in flight at most, after the open-file limit was applied.
    pub fn concurrency(&self) -> usize {
        self.engine.concurrency
    }

    /// The seed of the random order (to repeat it with [`ScannerBuilder::seed`]).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Hostnames that did not resolve: skipped, as the command line skips
    /// them, while the other targets are scanned. (When no target is left,
    /// [`ScannerBuilder::build`] fails with the first of them instead.)
    pub fn unresolved(&self) -> &[TargetError] {
        &self.unresolved
    }

    /// A handle that stops this scanner's scan from another thread.
    pub fn stop_handle(&self) -> Stop {
        self.stop.clone()
    }

    /// Runs the scan on this thread (its workers are threads of their own)
    /// and calls `on_result` here for every port, as results arrive. Returns
    /// the summary when every port has its result, or when the scan was
    /// stopped ([`Summary::interrupted`]).
    pub fn run<F>(self, mut on_result: F) -> Result<Summary, Error>
    where
        F: FnMut(ScanResult),
    {
        self.run_batches(|batch| {
            batch.iter().for_each(|r| on_result(ScanResult::from(r)));
            Ok(())
        })
    }

    /// Starts the scan on a background thread and returns its results as an
    /// iterator. Results travel through a bounded channel: a consumer that
    /// reads slowly slows the scan down, it never buffers the whole scan.
    /// Dropping the iterator early stops the scan and waits for its threads
    /// to end (in-flight probes are closed, not reported).
    ///
    /// A scan that cannot start (an open-file limit too small for a single
    /// probe) ends the iterator at once; [`Scan::finish`] says why.
    ///
    /// ```no_run
    /// use fastport::scanner::{Scanner, State};
    ///
    /// # fn main() -> Result<(), fastport::scanner::Error> {
    /// let scanner = Scanner::builder().targets(["127.0.0.1"])?.ports("-")?.build()?;
    /// let mut scan = scanner.scan()?;
    /// // The first open port is enough: the rest of the scan is stopped.
    /// let first_open = scan.by_ref().find(|r| r.state == State::Open);
    /// let summary = scan.finish()?;
    /// println!("{first_open:?} after {} results", summary.stats.results());
    /// # Ok(())
    /// # }
    /// ```
    pub fn scan(self) -> Result<Scan, Error> {
        let stop = self.stop.clone();
        let (tx, rx) = mpsc::sync_channel::<Vec<ScanResult>>(ITER_DEPTH);
        let thread = std::thread::Builder::new()
            .name("fastport-scan".into())
            .spawn(move || self.run_into(tx))
            .map_err(Error::Spawn)?;
        Ok(Scan {
            rx: Some(rx),
            batch: Vec::new().into_iter(),
            thread: Some(thread),
            stop,
        })
    }

    /// The scan thread of [`Scanner::scan`]: results go to `tx` in batches;
    /// a hung-up receiver stops the scan.
    fn run_into(self, tx: SyncSender<Vec<ScanResult>>) -> Result<Summary, Error> {
        self.run_batches(|batch| {
            let results = batch.iter().map(ScanResult::from).collect();
            tx.send(results)
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
        })
    }

    /// The engine's run, with a callback per batch; a failing callback
    /// stops the scan (that is how a dropped iterator stops it) and the
    /// summary says interrupted. A panicking callback stops the scan too,
    /// and the panic goes on once the workers have ended.
    fn run_batches<F>(self, mut on_batch: F) -> Result<Summary, Error>
    where
        F: FnMut(&[ProbeResult]) -> io::Result<()>,
    {
        let started = Instant::now();
        let mut panicked = None;
        let result = engine::run(
            &self.space,
            &self.schedule,
            &self.engine,
            &self.stop.0,
            |batch| {
                // Unwinding through the engine would leave its workers
                // probing to the end with nobody reading.
                match panic::catch_unwind(AssertUnwindSafe(|| on_batch(batch))) {
                    Ok(written) => written,
                    Err(payload) => {
                        panicked = Some(payload);
                        Err(io::Error::other("the result callback panicked"))
                    }
                }
            },
        );
        if let Some(payload) = panicked {
            panic::resume_unwind(payload);
        }
        let end = match result {
            Ok(end) => end,
            Err(EngineError::Output(_, end)) => *end,
            Err(e) => return Err(Error::Engine(e)),
        };
        let planned = self.schedule.seq_len();
        Ok(Summary {
            interrupted: end.stats.results() < planned,
            elapsed: started.elapsed(),
            hosts: self.space.host_count(),
            ports_per_host: self.space.ports().len() as u64,
            planned,
            engine: self.engine.kind.as_str(),
            threads: self.engine.waiting_threads(),
            concurrency: self.engine.concurrency,
            seed: self.seed,
            order: self.schedule.order.name(),
            shard: self.schedule.shard,
            stats: end.stats,
        })
    }
}

/// The results of a scan running on a background thread
/// ([`Scanner::scan`]), in the order they arrive.
///
/// When the iterator ends, [`Scan::finish`] gives the summary (or why the
/// scan could not run). Dropping it before the end stops the scan and
/// waits for it to wind down.
#[derive(Debug)]
pub struct Scan {
    rx: Option<Receiver<Vec<ScanResult>>>,
    batch: std::vec::IntoIter<ScanResult>,
    thread: Option<JoinHandle<Result<Summary, Error>>>,
    stop: Stop,
}

impl Scan {
    /// A handle that stops the scan from another thread; the iterator then
    /// ends after the results already gathered.
    pub fn stop_handle(&self) -> Stop {
        self.stop.clone()
    }

    /// Stops the scan if it is still running (results not yet read are
    /// dropped), waits for its threads and returns its summary.
    pub fn finish(mut self) -> Result<Summary, Error> {
        self.end().unwrap_or(Err(Error::Panicked))
    }

    /// Stops the scan unless its channel has ended, hangs up and joins the
    /// scan thread. `None` once joined.
    fn end(&mut self) -> Option<Result<Summary, Error>> {
        let thread = self.thread.take()?;
        if self.rx.is_some() {
            // Results may still be coming: not reading them is asking the
            // scan to stop.
            self.stop.stop();
        }
        self.rx = None; // a send blocked on a full channel fails now
        Some(thread.join().unwrap_or(Err(Error::Panicked)))
    }
}

impl Iterator for Scan {
    type Item = ScanResult;

    fn next(&mut self) -> Option<ScanResult> {
        loop {
            if let Some(r) = self.batch.next() {
                return Some(r);
            }
            let rx = self.rx.as_ref()?;
            match rx.recv() {
                Ok(batch) => self.batch = batch.into_iter(),
                Err(_) => {
                    self.rx = None; // the scan ended
                    return None;
                }
            }
        }
    }
}

impl std::iter::FusedIterator for Scan {}

impl Drop for Scan {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_command_lines() {
        let scanner = Scanner::builder().build().unwrap();
        assert_eq!(scanner.len(), 1024, "127.0.0.1, ports 1-1024");
        assert_eq!(scanner.engine.kind, Engine::Mio);
        assert!(scanner.engine.adaptive.is_some(), "adaptive timing");
        assert_eq!(
            scanner.engine.retries,
            Template::Normal.values().max_retries
        );
        assert!((1..=1024).contains(&scanner.concurrency()));
        assert_eq!(scanner.schedule.order.name(), "random");
    }

    #[test]
    fn a_fixed_timeout_retries_once_unless_told() {
        let b = Scanner::builder().timeout(Duration::from_millis(300));
        let s = b.clone().build().unwrap();
        assert_eq!(
            (s.engine.timeout, s.engine.retries),
            (Duration::from_millis(300), 1)
        );
        assert!(s.engine.adaptive.is_none());
        assert_eq!(b.retries(0).build().unwrap().engine.retries, 0);
    }

    #[test]
    fn concurrency_is_capped_by_the_probes() {
        let s = Scanner::builder()
            .ports("22,80")
            .unwrap()
            .concurrency(5000)
            .threads(64)
            .build()
            .unwrap();
        assert_eq!(s.concurrency(), 2);
        assert_eq!(s.engine.threads, 2);
    }

    #[test]
    fn the_last_of_ports_and_top_ports_counts() {
        let s = Scanner::builder().ports("1-5").unwrap().top_ports(3);
        assert_eq!(s.build().unwrap().len(), 3);
        let s = Scanner::builder().top_ports(3).ports("7").unwrap();
        assert_eq!(s.build().unwrap().len(), 1);
    }

    #[test]
    fn the_same_seed_gives_the_same_order() {
        let order = |seed| {
            let s = Scanner::builder().seed(seed).build().unwrap();
            (0..1024).map(|i| s.schedule.index(i)).collect::<Vec<_>>()
        };
        assert_eq!(order(7), order(7));
        assert_ne!(order(7), order(8));
    }

    #[test]
    fn targets_and_excludes_are_checked_as_given_but_names_wait() {
        assert!(Scanner::builder().targets(["not a target!"]).is_err());
        assert!(Scanner::builder().exclude(["198.18.0.0/40"]).is_err());
        // Excluding the only target is fine until build, which says so.
        let b = Scanner::builder().exclude(["127.0.0.1"]).unwrap();
        let Err(Error::Targets(e)) = b.build() else {
            panic!("nothing to scan")
        };
        assert!(matches!(e.kind(), TargetErrorKind::NothingToScan { .. }));
        assert!(Scanner::builder().targets(["some.host.invalid"]).is_ok());
    }

    #[test]
    fn a_result_reads_like_the_text_output() {
        let r = ScanResult::from(&ProbeResult {
            index: 0,
            target: "[::1]:22".parse().unwrap(),
            reason: Reason::SynAck,
            rtt_us: Some(1500),
            service: None,
            reason_ip: None,
        });
        assert_eq!(r.to_string(), "[::1]:22 open syn-ack");
        assert_eq!(r.state, State::Open);
        assert_eq!(r.rtt, Some(Duration::from_micros(1500)));
        let r = ScanResult::from(&ProbeResult {
            index: 0,
            target: "198.18.0.1:80".parse().unwrap(),
            reason: Reason::NoResponse,
            rtt_us: None,
            service: None,
            reason_ip: None,
        });
        assert_eq!(r.to_string(), "198.18.0.1:80 filtered no-response");
        assert_eq!(r.rtt, None);
    }
}
