//! FastPort's simulated network: remote hosts with real latency, loss and
//! ICMP errors, which the machine's own TCP stack talks to through a TUN
//! device in a private network namespace. Nothing leaves the machine.
//!
//! The layers, from the truth to the wire:
//!
//! - [`config`]: what a network is made of, as TOML or a built-in [`Preset`]
//!   (`internet-like`, `far`, `lossy`): hosts in 198.18.0.0/15 (RFC 2544's
//!   benchmark range), ports, the share of open / filtered / host-unreachable
//!   / admin-prohibited ports (the rest closed), a latency distribution
//!   (fixed, uniform, lognormal) plus per-packet jitter, and loss each way.
//! - [`model`]: a config and a seed become a pure function of (address,
//!   port): [`Model::state`], [`Model::latency`], the loss draws and the
//!   ground truth in FastPort's JSON-lines shape. It costs no memory, so a
//!   scorer asks it directly. Its randomness is the keyed hash of `hash.rs`.
//! - [`services`]: what a speaking open port says (ssh, smtp, ftp, pop3,
//!   imap greetings; http and redis answers), for service detection.
//! - [`wire`]: parsing what the kernel sends (etherparse) and building the
//!   answers: SYN-ACK, RST-ACK, ICMP destination unreachable (code 1 or 13)
//!   quoting the SYN's IP header and 8 bytes.
//! - [`responder`]: the hosts without I/O: `handle(now, packet)`, then
//!   `poll_transmit(now)` when answers fall due, from a timer queue. It keeps
//!   no connection state; the [`Record`] of what it injected (latency
//!   histograms, counts, SYNs per target) comes out at the end.
//! - [`oracle`]: the yardstick. For a run, the wall time a scanner that knew
//!   every latency (and every loss) would have needed at the launch rate the
//!   run sustained, and the accuracy the loss model allows at k tries.
//! - [`tun`], [`netns`] and [`sim`]: the device, the namespace plumbing, and
//!   the single-threaded mio loop joining them to the responder, which stops
//!   by itself when the scanner exits or at a deadline. `sys.rs` holds the
//!   only `unsafe` code (the `TUNSETIFF` ioctl and `pidfd_open`).
//!
//! The `fastport-netsim` binary wraps it: `run` makes the namespace, runs a
//! scanner inside and prints what it injected; `truth` dumps the ground truth.
//! A caller that made its own namespace (the lab) calls [`start`]:
//!
//! ```no_run
//! use fastport_netsim::{Model, ModelConfig, Options, Preset};
//! let model = Model::new(Preset::Far.config(), 7)?;
//! let sim = fastport_netsim::start(model.clone(), &Options::default())?;
//! // ... scan 198.18.0.0/16 here, then score against model.truth() ...
//! let record = sim.stop()?;
//! eprintln!("{}", record.summary());
//! # Ok::<(), fastport_netsim::NetsimError>(())
//! ```
//!
//! IPv4 only.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod error;
mod hash;
pub mod model;
pub mod netns;
pub mod oracle;
pub mod record;
pub mod responder;
pub mod services;
pub mod sim;
#[allow(unsafe_code)]
mod sys;
pub mod tun;
pub mod wire;

pub use config::{Cidr, Fractions, Hazards, Latency, Loss, ModelConfig, PortSet, Preset, Services};
pub use error::{ConfigError, ConfigErrorKind, NetsimError};
pub use model::{Model, PortState, Reason, ReplyKind, SeenByConnect, State, Truth};
pub use netns::NetConfig;
pub use oracle::{Accuracy, Oracle, OracleReport};
pub use record::{Counters, Fate, LogEntry, Record, Summary};
pub use responder::{Action, Responder};
pub use services::Service;
pub use sim::{Options, RunOutcome, RunningSim, Simulator, Stop, run_command, start};

/// Exit code of `fastport-netsim run` when no namespace or TUN device can
/// be made here and `CI` is not `true`.
pub const SKIP_EXIT: i32 = 3;
/// Exit code of `fastport-netsim run` when `--max-time` ran out.
pub const TIMEOUT_EXIT: i32 = 124;
