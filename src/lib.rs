//! FastPort: a TCP connect port scanner built on one non-blocking event loop
//! per core.
//!
//! **As a library**, start at [`scanner`]: [`scanner::Scanner::builder`]
//! takes targets, ports, timing and the engine, and the results come to a
//! callback ([`scanner::Scanner::run`]) or through an iterator fed by a
//! background thread ([`scanner::Scanner::scan`]); a [`scanner::Stop`]
//! cancels. The modules below are the layers it drives, public for the
//! binary, the benchmarks and anyone who wants one layer alone.
//!
//! The layers, in the order a probe goes through them:
//!
//! - **Input** — [`cli`] decides the mode from the first word (scan, merge,
//!   completions, manpage) and holds the raw flags as typed (nmap spellings
//!   such as `-iL`, `-oJ`, `-p-`, `-sT`, `-Pn` included, and a one-line
//!   refusal for those it cannot honour); [`config`] validates them once into a
//!   [`config::ScanConfig`]. Every usage error is found here, before any
//!   probe, and names the token the user typed.
//! - **Targets** — [`targets`] turns addresses, ranges, CIDR blocks,
//!   hostnames, `-iL` files, excludes and port specs into a
//!   [`targets::TargetSpace`]: merged address intervals × a port list,
//!   addressed by a dense `u64` index, so nothing proportional to
//!   targets × ports is ever materialised. A space of more than 2^63
//!   probes (2^80 for `-p 80 2001:2::/48`) is cut into
//!   [`targets::Segments`], each an ordinary space; the scan visits them in
//!   a seeded order ([`order::SegmentPlan`]) and the engine never sees more
//!   than one.
//! - **Order** — [`order`] decides which probe comes when: a seeded
//!   permutation of host blocks and of the probes within each (`--seed`,
//!   `--order`), so hosts finish within a bounded window; the positions one
//!   shard of a split scan owns (`--shard K/N`), how many results each host
//!   gets in this run, and what a resumed run skips; [`rate`] caps new
//!   connects per second (`--rate`).
//! - **Engine** — [`engine`] splits the shard's sequence between workers and
//!   gathers their results. Every rule a probe follows is in one sans-IO
//!   state machine ([`engine::machine`]): it decides when a probe is *born*
//!   (the in-flight cap, `--rate`, host windows), how long it is *waited
//!   on* (its deadline in the machine's [`wheel`], under its slab index),
//!   retries, back-off and timing. A worker of [`engine::event_loop`] drives
//!   it with syscalls: a non-blocking socket and a connect ([`probe`]), a
//!   mio poll under a token that is the slab index; the answer is
//!   *classified* by [`classify`] from what the kernel reports (`SO_ERROR`,
//!   peer and local address) into a [`classify::Reason`] with nmap's name.
//!   [`engine::threads`] drives the same machine with one blocking OS
//!   thread per probe, for comparison.
//! - **Results** — batches travel to the writer thread ([`scan`]), which
//!   feeds the [`output`] sinks (human text, JSON lines, ...) as results
//!   arrive; each worker's [`stats`] (counts and HdrHistograms of connect
//!   latency per reason) are merged into the run's summary at the end.
//! - **Library** — [`scanner`] wraps the engine for programs: a builder with
//!   the command line's checks and defaults, a callback or a streaming
//!   iterator of [`scanner::ScanResult`]s, a stop handle, the summary.
//! - **Shards** — [`order`] gives the seeded permutation of the index space
//!   that `--shard K/N` splits ([`shard_env`] reads K/N from Slurm,
//!   Kubernetes or GNU parallel for `--shard auto`), [`rate`] the shared
//!   `--rate` limiter, [`resume`] the resume file written on Ctrl-C (a resumed
//!   run continues the first run's output files), and [`merge`] joins
//!   shards' results (`fastport merge`), checked against their `--stats`
//!   documents, into every output format.
//! - **Timing** — [`timing`] learns from the answers how long an attempt
//!   waits (RFC 6298's RTT estimate, per host and per scan), how many probes
//!   go out at once (a congestion window) and how often a silent port is
//!   retried; `-T0`…`-T5` are nmap's templates for it.
//! - **Seeing the run** — [`trace`] records every probe's life and the
//!   engine's decisions (`--trace`, sampled by a seeded hash);
//!   [`report::series`] counts launches, completions and in-flight per
//!   100 ms for `--stats`; [`report`] draws summaries, results and traces
//!   into one self-contained HTML page (`fastport report`).
//! - **Services** — [`service`] (`-sV`, `--banners`) keeps talking to an
//!   open port: a pure per-connection machine waits for a banner, sends
//!   probes from a database in the nmap-service-probes format (FastPort's
//!   own, or a file the user loads), matches the answers and names the
//!   service and version, through a TLS tunnel when the port speaks TLS.
//!   In the scan, the machine answers an open port with
//!   [`engine::machine::Fate::Serve`]: the worker hands the connected socket
//!   to an [`engine::services::Session`] in its own poll (the threads
//!   engine runs the blocking form), the probe keeps its slot (it counts in
//!   flight) and its result, with a [`service::record::ServiceRecord`],
//!   goes to the writer when the session ends: every format writes each
//!   open port once, with its service.
//! - **System** — [`sys`] is the one module allowed `unsafe`: process limits
//!   and the `TCP_INFO` read that neither std nor socket2 wrap.
//!
//! docs/ARCHITECTURE.md tells the same story with the reasons behind it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod classify;
pub mod cli;
pub mod config;
pub mod engine;
#[doc(hidden)] // the binary's own: its files and formats
pub mod merge;
pub mod order;
#[doc(hidden)] // the binary's own: its files and formats
pub mod output;
pub mod probe;
pub mod rate;
#[doc(hidden)] // the binary's own: its files and formats
pub mod report;
#[doc(hidden)] // the binary's own: its files and formats
pub mod resume;
pub mod scan;
pub mod scanner;
pub mod service;
#[doc(hidden)] // the binary's own: its files and formats
pub mod shard_env;
pub mod stats;
pub mod sys;
pub mod targets;
#[cfg(test)]
mod test_util;
pub mod timing;
#[doc(hidden)] // the binary's own: its files and formats
pub mod trace;
pub mod wheel;
