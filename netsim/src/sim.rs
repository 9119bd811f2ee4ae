//! The simulator's event loop: one thread, one mio `Poll` over the TUN
//! device (non-blocking, edge-triggered, read until `WouldBlock`), the
//! scanner's pidfd, a waker, and a timerfd armed for the earliest answer in
//! the [`Responder`]'s timer queue. Every wake-up reads what arrived, then writes what is
//! due. The loop ends by itself: when the scanner exits (after draining the
//! device), when asked to, or at `max_time`.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::error::NetsimError;
use crate::model::Model;
use crate::netns::{self, NetConfig};
use crate::record::Record;
use crate::responder::Responder;
use crate::sys;
use crate::tun::Tun;
use crate::wire::MAX_REPLY;

const TUN: Token = Token(0);
const CHILD: Token = Token(1);
const WAKE: Token = Token(2);
const TIMER: Token = Token(3);

/// Where no pidfd can be had, how often the loop checks on the child.
const CHILD_CHECK: Duration = Duration::from_millis(20);

/// The oracle's SYNs per target unless told otherwise: one try and two
/// retries, the `--retries 2` netsim's tests and benchmarks scan with.
pub const DEFAULT_ORACLE_TRIES: u32 = 3;

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The command it served exited.
    ChildExited,
    /// `max_time` ran out.
    MaxTime,
    /// [`RunningSim::stop`] asked.
    Requested,
}

/// How a simulation is plugged in and bounded.
#[derive(Debug, Clone)]
pub struct Options {
    /// The device, source address and route.
    pub net: NetConfig,
    /// Keep every answer for the record (`--record-log`).
    pub log: bool,
    /// The loop stops after this long whatever happens.
    pub max_time: Duration,
    /// SYNs per target for the oracle's report in the record (see
    /// [`crate::oracle`]); 0 leaves the oracle out.
    pub oracle_tries: u32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            net: NetConfig::default(),
            log: false,
            max_time: Duration::from_secs(600),
            oracle_tries: DEFAULT_ORACLE_TRIES,
        }
    }
}

/// The TUN device and the responder, with the poll that joins them.
pub struct Simulator {
    tun: Tun,
    responder: Responder,
    poll: Poll,
    events: Events,
    /// Fires when the earliest answer is due (a timerfd, read as a file).
    timer: File,
    /// The instant the timer is set for, to re-arm only when it changes.
    armed: Option<Instant>,
    started: Instant,
    buf: Vec<u8>,
}

impl Simulator {
    /// Serves `tun` with `responder`.
    pub fn new(mut tun: Tun, responder: Responder) -> Result<Simulator, NetsimError> {
        let poll = Poll::new().map_err(|e| NetsimError::io("creating a poll", e))?;
        poll.registry()
            .register(&mut tun, TUN, Interest::READABLE)
            .map_err(|e| NetsimError::io("registering the TUN device", e))?;
        let timer =
            File::from(sys::timerfd().map_err(|e| NetsimError::io("creating a timerfd", e))?);
        poll.registry()
            .register(&mut SourceFd(&timer.as_raw_fd()), TIMER, Interest::READABLE)
            .map_err(|e| NetsimError::io("registering the timerfd", e))?;
        Ok(Simulator {
            tun,
            responder,
            poll,
            events: Events::with_capacity(64),
            timer,
            armed: None,
            started: Instant::now(),
            buf: vec![0; 65536],
        })
    }

    /// A waker that interrupts [`Simulator::serve`] so that it rechecks its
    /// stop flag.
    pub fn waker(&self) -> Result<Arc<Waker>, NetsimError> {
        Waker::new(self.poll.registry(), WAKE)
            .map(Arc::new)
            .map_err(|e| NetsimError::io("creating a waker", e))
    }

    /// Serves until `child` exits, `stop` is set (then wake the loop) or
    /// `max_time` passes.
    pub fn serve(
        &mut self,
        mut child: Option<&mut Child>,
        stop: Option<&AtomicBool>,
        max_time: Duration,
    ) -> Result<Stop, NetsimError> {
        let deadline = Instant::now() + max_time;
        let pidfd: Option<OwnedFd> = match &child {
            Some(c) => sys::pidfd_open(c.id()).ok(),
            None => None,
        };
        if let Some(fd) = &pidfd {
            self.poll
                .registry()
                .register(&mut SourceFd(&fd.as_raw_fd()), CHILD, Interest::READABLE)
                .map_err(|e| NetsimError::io("registering the child's pidfd", e))?;
        }
        let result = self.serve_loop(&mut child, pidfd.is_some(), stop, deadline);
        if let Some(fd) = &pidfd {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        result
    }

    fn serve_loop(
        &mut self,
        child: &mut Option<&mut Child>,
        have_pidfd: bool,
        stop: Option<&AtomicBool>,
        deadline: Instant,
    ) -> Result<Stop, NetsimError> {
        loop {
            let now = Instant::now();
            self.flush(now);
            if stop.is_some_and(|s| s.load(Ordering::Acquire)) {
                return Ok(Stop::Requested);
            }
            if now >= deadline {
                return Ok(Stop::MaxTime);
            }
            let mut timeout = deadline - now;
            if let Some(due) = self.responder.poll_at()
                && self.armed != Some(due)
            {
                sys::timerfd_arm(self.timer.as_fd(), due.saturating_duration_since(now))
                    .map_err(|e| NetsimError::io("arming the timerfd", e))?;
                self.armed = Some(due);
            }
            if child.is_some() && !have_pidfd {
                timeout = timeout.min(CHILD_CHECK);
            }
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NetsimError::io("polling", e)),
            }
            let mut readable = false;
            let mut child_event = false;
            for event in &self.events {
                match event.token() {
                    TUN => readable = true,
                    CHILD => child_event = true,
                    TIMER => {
                        // Empty the expiry count so that the next arming wakes us again.
                        let _ = (&self.timer).read(&mut [0u8; 8]);
                        self.armed = None;
                    }
                    _ => {}
                }
            }
            if readable {
                self.read_all()?;
            }
            if let Some(c) = child
                && (child_event || !have_pidfd)
                && c.try_wait()
                    .map_err(|e| NetsimError::io("checking on the command", e))?
                    .is_some()
            {
                // Drain: take in what the command's last moments sent.
                self.read_all()?;
                return Ok(Stop::ChildExited);
            }
        }
    }

    fn read_all(&mut self) -> Result<(), NetsimError> {
        loop {
            match self.tun.recv(&mut self.buf) {
                Ok(n) => {
                    self.responder.handle(Instant::now(), &self.buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(NetsimError::io("reading the TUN device", e)),
            }
        }
    }

    fn flush(&mut self, now: Instant) {
        let mut out = [0u8; MAX_REPLY];
        while let Some(n) = self.responder.poll_transmit(now, &mut out) {
            if self.tun.send(&out[..n]).is_err() {
                self.responder.write_failed();
            }
        }
    }

    /// The record of everything served so far.
    pub fn finish(self) -> Record {
        let elapsed = self.started.elapsed();
        let drops = netns::device_drops(self.tun.name()).unwrap_or(0);
        let mut record = self.responder.finish(elapsed);
        record.counters.device_drops = drops;
        record
    }
}

/// A simulator serving in its own thread (see [`start`]).
pub struct RunningSim {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: JoinHandle<Result<(Stop, Record), NetsimError>>,
}

impl RunningSim {
    /// Stops the simulator and returns its record.
    pub fn stop(self) -> Result<Record, NetsimError> {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        match self.thread.join() {
            Ok(r) => r.map(|(_, record)| record),
            Err(_) => Err(NetsimError::Setup("the simulator thread panicked".into())),
        }
    }

    /// Whether the simulator already stopped by itself (at `max_time`).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

/// Sets the simulated network up in this process's (private) namespace and
/// serves it in a new thread until [`RunningSim::stop`] or `max_time`. For
/// callers that made the namespace themselves, such as the lab.
pub fn start(model: Model, options: &Options) -> Result<RunningSim, NetsimError> {
    check_source(&model, &options.net)?;
    let tun = netns::setup(&options.net)?;
    let mut sim = Simulator::new(tun, responder(model, options))?;
    let waker = sim.waker()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let max_time = options.max_time;
    let thread = std::thread::Builder::new()
        .name("fastport-netsim".into())
        .spawn(move || {
            let why = sim.serve(None, Some(&flag), max_time)?;
            Ok((why, sim.finish()))
        })
        .map_err(|e| NetsimError::io("starting the simulator thread", e))?;
    Ok(RunningSim {
        stop,
        waker,
        thread,
    })
}

/// How [`run_command`] went.
#[derive(Debug)]
pub struct RunOutcome {
    /// How the command ended (killed at `max_time` if it had not exited).
    pub status: ExitStatus,
    /// Why the simulator stopped.
    pub stop: Stop,
    /// What the simulator injected.
    pub record: Record,
}

/// Sets the simulated network up in this (private) namespace, runs
/// `command` against it and serves until the command exits or `max_time`
/// passes (then kills it).
pub fn run_command(
    model: Model,
    options: &Options,
    command: &mut Command,
) -> Result<RunOutcome, NetsimError> {
    check_source(&model, &options.net)?;
    let tun = netns::setup(&options.net)?;
    let mut sim = Simulator::new(tun, responder(model, options))?;
    let mut child = command
        .spawn()
        .map_err(|e| NetsimError::io(format!("running {:?}", command.get_program()), e))?;
    let served = sim.serve(Some(&mut child), None, options.max_time);
    if !matches!(served, Ok(Stop::ChildExited)) {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| NetsimError::io("waiting for the command", e))?;
    let stop = served?;
    Ok(RunOutcome {
        status,
        stop,
        record: sim.finish(),
    })
}

fn responder(model: Model, options: &Options) -> Responder {
    let r = Responder::new(model, options.log);
    if options.oracle_tries > 0 {
        r.with_oracle(options.oracle_tries)
    } else {
        r
    }
}

fn check_source(model: &Model, net: &NetConfig) -> Result<(), NetsimError> {
    let hosts = model.config().hosts;
    if hosts.contains(net.source) {
        return Err(NetsimError::Setup(format!(
            "the hosts {hosts} include {}, the scanner's own source address: \
             use a smaller block (198.18.0.0/16 is the largest that avoids it)",
            net.source
        )));
    }
    Ok(())
}
