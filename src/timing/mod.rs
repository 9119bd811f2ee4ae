//! Adaptive timing: how long an attempt waits, how many probes are in
//! flight, and how many times a silent port is tried — learnt from the
//! answers, as nmap does (docs/TIMING.md).
//!
//! - [`rtt`]: RFC 6298's smoothed RTT and variation; an attempt's timeout is
//!   `srtt + 4 × rttvar` within `--min-rtt-timeout`..`--max-rtt-timeout`,
//!   `--initial-rtt-timeout` before any sample.
//! - [`window`]: a congestion window in probes (slow start, congestion
//!   avoidance, halving on drops).
//! - [`hosts`]: per-host estimate and window in a fixed-size table.
//! - [`worker`]: [`WorkerTiming`], one probe machine's timing state, tying
//!   them together: a host's own estimate once it has [`HOST_SAMPLES`]
//!   samples, the scan-wide one before; the host's window and the scan's
//!   window both bound what is in flight. Both engines use it (the threads
//!   engine through its one shared machine).
//! - [`conntrack`]: the namespace's connection-tracking table, and the
//!   unanswered connects per second it can hold.
//! - [`template`]: `-T0` … `-T5` and their parsing; [`settings`]: the
//!   validated [`AdaptiveTiming`]; [`summary`]: what the run reports.
//!
//! All of it is pure: `now` and the measured RTTs are arguments, so the unit
//! tests drive it with a fake clock and scripted answers.
//!
//! **Karn's rule.** A sample is taken only from an attempt whose SYN went
//! out once. FastPort's retries are new sockets (new source port, new ISN):
//! an answer belongs to the attempt that got it, so a retry's answer is a
//! clean sample. The ambiguity is inside one socket, when the kernel
//! retransmits the SYN (at 1 s, see docs/NETSIM.md): the engines read
//! `TCP_INFO` for answers that took at least [`KERNEL_SYN_RTO`] and pass no
//! sample when the SYN was retransmitted. Faster answers cannot have been
//! retransmitted and pay nothing.

pub mod conntrack;
pub mod hosts;
pub mod limit;
pub mod rtt;
pub mod settings;
pub mod summary;
pub mod template;
pub mod window;
pub mod worker;

use std::time::Duration;

pub use settings::AdaptiveTiming;
pub use summary::TimingSummary;
pub use template::{Template, TemplateError, TemplateValues};
pub use worker::{HOST_SAMPLES, HOST_SLOTS, HostRef, WorkerTiming};

/// Linux's initial retransmission timeout for a SYN (`TCP_TIMEOUT_INIT`):
/// an answer that took less cannot be to a retransmitted SYN.
pub const KERNEL_SYN_RTO: Duration = Duration::from_secs(1);
