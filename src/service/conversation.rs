//! One port's service conversation as a pure state machine: bytes and `now` in, actions out.
//!
//! The shape is rustls' (`read_tls`, `process_new_packets`, `write_tls`): the machine never
//! touches a socket and never reads a clock. The driver (the scan's event loop) tells it what
//! happened — [`Conversation::handle_connected`], [`Conversation::handle_data`],
//! [`Conversation::handle_closed`], [`Conversation::handle_timeout`] — and carries out what it
//! asks for, taken with [`Conversation::poll_action`]: connect another socket (a *lane*) for
//! a probe, send a probe's bytes on a lane, close a lane. [`Conversation::next_deadline`] says
//! when to call `handle_timeout`; [`Conversation::verdict`] is set once it is over.
//!
//! The order, nmap's:
//!
//! 1. **NULL probe** on the connection the port scan opened (lane 0): send nothing and wait
//!    for a banner. A peer that closes before `tcpwrappedms` without a byte is `tcpwrapped`.
//! 2. **Probes hinted for the port** (`ports`, or `sslports` inside TLS), then **the others
//!    with rarity ≤ intensity**, in file order. They do not wait for the NULL probe: while
//!    lane 0 listens for a banner, the first of them go out at once on lanes of their own, up
//!    to [`Settings::parallel`] lanes in all (as naabu does: a service that waits for the
//!    client is answered in a round trip, not after the banner wait). If the NULL probe heard
//!    nothing and lane 0 is still open, the next probe goes out on lane 0; every other probe
//!    gets a new lane, never more than `parallel` open at once.
//!    Only TCP probes are used (`Probe UDP` lines are parsed and left out), and none marked
//!    `no-payload`.
//! 3. Each answer is read up to [`Settings::read_limit`] bytes and matched as it arrives. The
//!    **first hard match wins** and closes every lane. A **softmatch** names the service and
//!    drops the queued probes that cannot name it ([`Matcher::can_name`]).
//!
//! Waits come from the host's RTT, not nmap's fixed 5–6 s: a probe waits
//! `clamp(rtt × rtt_multiple, floor, totalwaitms)`, and once bytes have arrived, only a quiet
//! interval (`max(2 × rtt, quiet_floor)`) more for the rest of them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::matcher::{Matcher, ServiceMatch};
use super::probes::Protocol;

/// Index of a connection within one conversation; lane 0 is the port scan's own connect.
pub type Lane = usize;

/// Whether the conversation runs over the plain connection or inside a TLS tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    /// Over the plain TCP connection.
    Plain,
    /// Inside a TLS tunnel ([`super::tls`]).
    Tls,
}

/// How a conversation probes and waits.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--version-intensity`: probes with rarity above it are sent only when hinted.
    pub intensity: u8,
    /// The host's smoothed round-trip time, measured by the port scan.
    pub rtt: Duration,
    /// A probe waits `rtt × rtt_multiple` …
    pub rtt_multiple: u32,
    /// … but never less than this for the NULL probe's banner (servers that look the client
    /// up before greeting it take a while) …
    pub banner_floor: Duration,
    /// … or than this for any other probe's answer …
    pub probe_floor: Duration,
    /// … and never more than the probe's `totalwaitms` (this when it has none).
    pub default_cap: Duration,
    /// After the first bytes of an answer, wait at most `max(2 × rtt, quiet_floor)` for more.
    pub quiet_floor: Duration,
    /// Most connections open at once for one port (lane 0 included).
    pub parallel: usize,
    /// Bytes of an answer kept and matched.
    pub read_limit: usize,
    /// `--banners`: listen to the NULL probe only and report what was said, unmatched.
    pub banners_only: bool,
    /// Whether a port found to speak TLS should be probed again inside the tunnel.
    pub tls: bool,
    /// Whether this conversation runs over the plain connection or in a tunnel.
    pub tunnel: Tunnel,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            intensity: 7,
            rtt: Duration::from_millis(100),
            rtt_multiple: 10,
            banner_floor: Duration::from_millis(1500),
            probe_floor: Duration::from_millis(500),
            default_cap: Duration::from_secs(5),
            quiet_floor: Duration::from_millis(100),
            parallel: 3,
            read_limit: 16 * 1024,
            banners_only: false,
            tls: true,
            tunnel: Tunnel::Plain,
        }
    }
}

/// What the driver must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a new connection to the same address and port (inside TLS: and handshake),
    /// then call [`Conversation::handle_connected`], or [`Conversation::handle_closed`] if
    /// the connect fails or outlasts the scan's own connect timeout (the machine sets no
    /// deadline on connects). The connection counts in the scan's concurrency and rate.
    Connect(Lane),
    /// Send probe `probe`'s payload ([`Conversation::payload`]) on `lane`.
    Send {
        /// The connection to send on.
        lane: Lane,
        /// The probe whose payload to send.
        probe: usize,
    },
    /// Close `lane` and forget it.
    Close(Lane),
}

/// How a conversation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A hard match named service and version.
    Matched(ServiceMatch),
    /// Only a softmatch: the service is known, its version is not.
    Soft(ServiceMatch),
    /// The port speaks TLS (a hard `ssl` match) and [`Settings::tls`] is on: open a tunnel
    /// ([`super::tls`]) and run a new conversation in it with [`Tunnel::Tls`].
    Tls(ServiceMatch),
    /// The service answered, nothing matched: the first answer, for a fingerprint.
    Unrecognized {
        /// The probe that got the answer.
        probe: usize,
        /// The answer, as received.
        response: Vec<u8>,
    },
    /// `--banners`: what the service said by itself (possibly nothing).
    Banner(Vec<u8>),
    /// The peer closed at once, before saying anything.
    Tcpwrapped,
    /// Nothing answered anything.
    Silent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LaneState {
    Connecting,
    /// Probe sent (or, for NULL, listening); waiting for bytes until `deadline`.
    Waiting,
    Finished,
}

#[derive(Debug)]
struct LaneSlot {
    probe: usize,
    state: LaneState,
    opened: Instant,
    deadline: Instant,
    response: Vec<u8>,
    peer_closed: bool,
}

/// One port's service detection. See the module documentation.
#[derive(Debug)]
pub struct Conversation {
    matcher: Arc<Matcher>,
    settings: Settings,
    queue: VecDeque<usize>,
    lanes: Vec<LaneSlot>,
    actions: VecDeque<Action>,
    soft: Option<ServiceMatch>,
    first_answer: Option<(usize, Vec<u8>)>,
    verdict: Option<Verdict>,
}

impl Conversation {
    /// Starts the conversation on lane 0, the connection the port scan just confirmed, at
    /// `now`, for `port`.
    pub fn new(matcher: Arc<Matcher>, port: u16, settings: Settings, now: Instant) -> Conversation {
        let null = matcher
            .probes()
            .iter()
            .position(|p| p.is_null() && p.protocol == Protocol::Tcp);
        let mut queue = VecDeque::new();
        if !settings.banners_only {
            let usable = |i: &usize| {
                let p = &matcher.probes()[*i];
                p.protocol == Protocol::Tcp && !p.is_null() && !p.no_payload
            };
            let hinted = |i: &usize| {
                let p = &matcher.probes()[*i];
                match settings.tunnel {
                    Tunnel::Plain => p.ports.contains(port),
                    Tunnel::Tls => p.sslports.contains(port) || p.ports.contains(port),
                }
            };
            let all = 0..matcher.probes().len();
            queue.extend(all.clone().filter(usable).filter(hinted));
            queue.extend(
                all.filter(usable)
                    .filter(|i| !hinted(i) && matcher.probes()[*i].rarity <= settings.intensity),
            );
        }
        let mut c = Conversation {
            matcher,
            settings,
            queue,
            lanes: Vec::new(),
            actions: VecDeque::new(),
            soft: None,
            first_answer: None,
            verdict: None,
        };
        match null {
            Some(null) => {
                let deadline = now + c.wait_for(null);
                c.lanes.push(LaneSlot {
                    probe: null,
                    state: LaneState::Waiting,
                    opened: now,
                    deadline,
                    response: Vec::new(),
                    peer_closed: false,
                });
                // While lane 0 waits for a banner, the first probes go out on lanes of
                // their own: a service that waits for the client to speak is answered
                // without first sitting out the banner wait.
                c.fill_lanes(now, None);
            }
            None => {
                // No NULL probe in the file: lane 0 carries the first probe at once.
                c.lanes.push(LaneSlot {
                    probe: usize::MAX,
                    state: LaneState::Finished,
                    opened: now,
                    deadline: now,
                    response: Vec::new(),
                    peer_closed: false,
                });
                c.after_finish(0, now, true);
            }
        }
        c
    }

    /// The bytes of probe `probe`.
    pub fn payload(&self, probe: usize) -> &[u8] {
        &self.matcher.probes()[probe].payload
    }

    /// The probe database the conversation matches with.
    pub fn matcher(&self) -> &Arc<Matcher> {
        &self.matcher
    }

    /// The settings the conversation runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Conversation::handle_timeout`] is next due (`None` once over).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.verdict.is_some() {
            return None;
        }
        self.lanes
            .iter()
            .filter(|l| l.state == LaneState::Waiting)
            .map(|l| l.deadline)
            .min()
    }

    /// How it ended, once it has.
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    /// Lanes currently open (connecting or waiting).
    pub fn open_lanes(&self) -> usize {
        self.lanes
            .iter()
            .filter(|l| l.state != LaneState::Finished)
            .count()
    }

    /// A lane asked for with [`Action::Connect`] is connected: its probe is sent.
    pub fn handle_connected(&mut self, lane: Lane, now: Instant) {
        if self.verdict.is_some() {
            return;
        }
        let Some(probe) = self
            .lanes
            .get(lane)
            .filter(|l| l.state == LaneState::Connecting)
            .map(|l| l.probe)
        else {
            return;
        };
        let deadline = now + self.wait_for(probe);
        let slot = &mut self.lanes[lane];
        slot.state = LaneState::Waiting;
        slot.opened = now;
        slot.deadline = deadline;
        self.actions.push_back(Action::Send { lane, probe });
    }

    /// Bytes arrived on `lane`.
    pub fn handle_data(&mut self, lane: Lane, bytes: &[u8], now: Instant) {
        if self.verdict.is_some() {
            return;
        }
        let limit = self.settings.read_limit;
        let quiet = (self.settings.rtt * 2).max(self.settings.quiet_floor);
        let Some(slot) = self.lanes.get_mut(lane) else {
            return;
        };
        if slot.state != LaneState::Waiting || bytes.is_empty() {
            return;
        }
        let room = limit.saturating_sub(slot.response.len());
        slot.response
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        slot.deadline = slot.deadline.min(now + quiet);
        let full = slot.response.len() >= limit;
        if !self.settings.banners_only && self.try_match(lane) {
            return;
        }
        if full {
            self.finish(lane, now);
        }
    }

    /// The peer closed `lane` (end of stream or reset), or a lane's connect failed.
    pub fn handle_closed(&mut self, lane: Lane, now: Instant) {
        if self.verdict.is_some() {
            return;
        }
        let Some(slot) = self.lanes.get_mut(lane) else {
            return;
        };
        if slot.state == LaneState::Finished {
            return;
        }
        slot.peer_closed = true;
        let wrapped_ms = self
            .matcher
            .probes()
            .get(slot.probe)
            .and_then(|p| p.tcpwrapped_ms);
        if lane == 0
            && slot.response.is_empty()
            && slot.state == LaneState::Waiting
            && wrapped_ms.is_some_and(|ms| {
                now.saturating_duration_since(slot.opened) < Duration::from_millis(u64::from(ms))
            })
            && self.matcher.probes()[slot.probe].is_null()
        {
            slot.state = LaneState::Finished;
            self.conclude(Verdict::Tcpwrapped);
            return;
        }
        self.finish(lane, now);
    }

    /// Time passed: lanes whose wait is over are finished.
    pub fn handle_timeout(&mut self, now: Instant) {
        for lane in 0..self.lanes.len() {
            if self.verdict.is_some() {
                return;
            }
            let l = &self.lanes[lane];
            if l.state == LaneState::Waiting && l.deadline <= now {
                self.finish(lane, now);
            }
        }
    }

    fn wait_for(&self, probe: usize) -> Duration {
        let p = &self.matcher.probes()[probe];
        let s = &self.settings;
        let cap = p
            .total_wait_ms
            .map_or(s.default_cap, |ms| Duration::from_millis(u64::from(ms)));
        let floor = if p.is_null() {
            s.banner_floor
        } else {
            s.probe_floor
        };
        (s.rtt * s.rtt_multiple).max(floor).min(cap)
    }

    /// Matches what `lane` has so far; true if that ended the conversation.
    fn try_match(&mut self, lane: Lane) -> bool {
        let slot = &self.lanes[lane];
        let soft = self.soft.as_ref().map(|s| s.service.as_str());
        let Some(hit) = self
            .matcher
            .match_response(slot.probe, &slot.response, soft)
        else {
            return false;
        };
        if !hit.soft {
            let verdict = if hit.service == "ssl"
                && self.settings.tls
                && self.settings.tunnel == Tunnel::Plain
            {
                Verdict::Tls(hit)
            } else {
                Verdict::Matched(hit)
            };
            self.conclude(verdict);
            return true;
        }
        if self.soft.is_none() {
            let matcher = &self.matcher;
            self.queue.retain(|&p| matcher.can_name(p, &hit.service));
            self.soft = Some(hit);
        }
        false
    }

    /// `lane`'s probe is over (timed out, closed, or read in full).
    fn finish(&mut self, lane: Lane, now: Instant) {
        let slot = &mut self.lanes[lane];
        // Only the NULL probe's connection is reused: nothing was sent on it and nothing said.
        let reusable = lane == 0
            && slot.response.is_empty()
            && !slot.peer_closed
            && self
                .matcher
                .probes()
                .get(slot.probe)
                .is_some_and(|p| p.is_null());
        slot.state = LaneState::Finished;
        if !slot.response.is_empty() && self.first_answer.is_none() {
            self.first_answer = Some((slot.probe, slot.response.clone()));
        }
        if self.settings.banners_only {
            let banner = std::mem::take(&mut self.lanes[lane].response);
            self.actions.push_back(Action::Close(lane));
            self.conclude(Verdict::Banner(banner));
            return;
        }
        self.lanes[lane].response = Vec::new();
        self.after_finish(lane, now, reusable);
    }

    /// Starts the next probes after `lane` finished, or ends the conversation.
    fn after_finish(&mut self, lane: Lane, now: Instant, reusable: bool) {
        if !reusable {
            self.actions.push_back(Action::Close(lane));
        }
        if !self.fill_lanes(now, reusable.then_some(lane)) && reusable {
            // Nothing left to send on lane 0.
            self.actions.push_back(Action::Close(lane));
        }
        if self.open_lanes() == 0 {
            let verdict = match (self.soft.take(), self.first_answer.take()) {
                (Some(soft), _) => Verdict::Soft(soft),
                (None, Some((probe, response))) => Verdict::Unrecognized { probe, response },
                (None, None) => Verdict::Silent,
            };
            self.conclude(verdict);
        }
    }

    /// Sends queued probes while fewer than `parallel` lanes are open: the first on
    /// `reuse` (lane 0, still connected and unused) if given, the others on new lanes.
    /// Whether `reuse` was used.
    fn fill_lanes(&mut self, now: Instant, mut reuse: Option<Lane>) -> bool {
        let given = reuse.is_some();
        while self.open_lanes() < self.settings.parallel.max(1) {
            let Some(probe) = self.queue.pop_front() else {
                break;
            };
            match reuse.take() {
                Some(lane) => {
                    let deadline = now + self.wait_for(probe);
                    let slot = &mut self.lanes[lane];
                    slot.probe = probe;
                    slot.state = LaneState::Waiting;
                    slot.opened = now;
                    slot.deadline = deadline;
                    self.actions.push_back(Action::Send { lane, probe });
                }
                None => self.open_lane(probe, now),
            }
        }
        given && reuse.is_none()
    }

    /// Asks for a new connection that will carry `probe`.
    fn open_lane(&mut self, probe: usize, now: Instant) {
        let new = self.lanes.len();
        self.lanes.push(LaneSlot {
            probe,
            state: LaneState::Connecting,
            opened: now,
            deadline: now,
            response: Vec::new(),
            peer_closed: false,
        });
        self.actions.push_back(Action::Connect(new));
    }

    fn conclude(&mut self, verdict: Verdict) {
        for (lane, slot) in self.lanes.iter_mut().enumerate() {
            if slot.state != LaneState::Finished {
                slot.state = LaneState::Finished;
                self.actions.push_back(Action::Close(lane));
            }
        }
        self.queue.clear();
        self.verdict = Some(verdict);
    }
}

#[cfg(test)]
mod tests {
    use super::super::probes::parse;
    use super::*;

    const DB: &str = "\
Probe TCP NULL q||
totalwaitms 6000
tcpwrappedms 3000
match ssh m|^SSH-2\\.0-OpenSSH_([\\w.]+)\\r\\n| p/OpenSSH/ v/$1/
softmatch ftp m|^220 |
Probe TCP Get q|GET / HTTP/1.0\\r\\n\\r\\n|
rarity 1
ports 80
match http m|^HTTP/1\\.[01] \\d\\d\\d .*Server: (\\w+)|s p/$1/
match ftp m|^220 ProFTPD| p/ProFTPD/
match ssl m|^\\x15\\x03| p/TLS/
Probe TCP Help q|HELP\\r\\n|
rarity 3
match ftp m|^214 | p/some ftpd/
Probe TCP Rare q|RARE|
rarity 9
ports 9999
match rare m|^R| p/rare/
";

    fn db() -> Arc<Matcher> {
        Arc::new(Matcher::new(parse(DB.as_bytes()).unwrap()))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings() -> Settings {
        Settings {
            rtt: ms(10),
            parallel: 1,
            ..Settings::default()
        }
    }

    /// A conversation with the service on `port`, begun now.
    fn begin(port: u16, s: Settings) -> (Conversation, Instant) {
        let t0 = Instant::now();
        (Conversation::new(db(), port, s, t0), t0)
    }

    /// [`begin`] at intensity 0: the NULL probe's banner wait, then only the probes the
    /// port hints at (Get on port 80, none on 22).
    fn begin_common(port: u16) -> (Conversation, Instant) {
        begin(
            port,
            Settings {
                intensity: 0,
                ..settings()
            },
        )
    }

    /// The verdict on an answer to the NULL probe that no rule matched.
    fn unrecognized(response: &[u8]) -> Verdict {
        Verdict::Unrecognized {
            probe: 0,
            response: response.to_vec(),
        }
    }

    fn drain(c: &mut Conversation) -> Vec<Action> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    #[test]
    fn banner_matched_at_once() {
        let (mut c, t0) = begin(22, settings());
        assert_eq!(drain(&mut c), vec![]);
        // Banner floor 1.5 s > 10 × 10 ms.
        assert_eq!(c.next_deadline(), Some(t0 + ms(1500)));
        c.handle_data(0, b"SSH-2.0-OpenSSH_9.6\r\n", t0 + ms(3));
        match c.verdict() {
            Some(Verdict::Matched(m)) => assert_eq!(m.version.as_deref(), Some("9.6")),
            v => panic!("{v:?}"),
        }
        assert_eq!(drain(&mut c), vec![Action::Close(0)]);
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn silent_service_gets_probes_hinted_first_then_by_rarity() {
        let (mut c, t0) = begin(9999, settings());
        c.handle_timeout(t0 + ms(1500));
        // NULL heard nothing: the hinted (rare) probe goes out on lane 0 itself.
        let rare = c.matcher.probe_index(Protocol::Tcp, "Rare").unwrap();
        assert_eq!(
            drain(&mut c),
            vec![Action::Send {
                lane: 0,
                probe: rare
            }]
        );
        assert_eq!(c.payload(rare), b"RARE");
        assert_eq!(c.next_deadline(), Some(t0 + ms(2000)));
        c.handle_timeout(t0 + ms(2000));
        // Then Get (rarity 1) and Help (3) on new lanes, one at a time.
        let acts = drain(&mut c);
        assert_eq!(acts, vec![Action::Close(0), Action::Connect(1)]);
        c.handle_connected(1, t0 + ms(2010));
        assert_eq!(drain(&mut c), vec![Action::Send { lane: 1, probe: 1 }]);
        c.handle_timeout(t0 + ms(2510));
        assert_eq!(drain(&mut c), vec![Action::Close(1), Action::Connect(2)]);
        c.handle_connected(2, t0 + ms(2520));
        assert_eq!(drain(&mut c), vec![Action::Send { lane: 2, probe: 2 }]);
        c.handle_timeout(t0 + ms(3020));
        assert_eq!(drain(&mut c), vec![Action::Close(2)]);
        assert_eq!(c.verdict(), Some(&Verdict::Silent));
    }

    #[test]
    fn intensity_leaves_out_rare_probes_unless_hinted() {
        let (mut c, t0) = begin_common(22);
        c.handle_timeout(t0 + ms(1500));
        // Nothing is hinted for port 22 and every probe is rarer than 0.
        assert_eq!(drain(&mut c), vec![Action::Close(0)]);
        assert_eq!(c.verdict(), Some(&Verdict::Silent));
    }

    #[test]
    fn parallel_lanes_and_first_hard_match_closes_the_rest() {
        let (mut c, t0) = begin(
            80,
            Settings {
                parallel: 3,
                ..settings()
            },
        );
        // The first probes go out at once on lanes of their own, while lane 0 waits for a
        // banner.
        assert_eq!(drain(&mut c), vec![Action::Connect(1), Action::Connect(2)]);
        c.handle_connected(2, t0 + ms(1));
        c.handle_connected(1, t0 + ms(2));
        assert_eq!(
            drain(&mut c),
            vec![
                Action::Send { lane: 2, probe: 2 },
                Action::Send { lane: 1, probe: 1 }
            ]
        );
        // A softmatch (ftp) on lane 0's banner: from now on only ftp rules count.
        c.handle_data(0, b"220 ", t0 + ms(3));
        assert!(c.verdict().is_none());
        // Get's answer is an http response; under the ftp softmatch only ftp rules count.
        c.handle_data(1, b"HTTP/1.0 200 OK\r\nServer: x\r\n", t0 + ms(20));
        assert!(c.verdict().is_none());
        c.handle_data(2, b"214 help\r\n", t0 + ms(21));
        match c.verdict() {
            Some(Verdict::Matched(m)) => assert_eq!(
                (m.service.as_str(), m.product.as_deref()),
                ("ftp", Some("some ftpd"))
            ),
            v => panic!("{v:?}"),
        }
        // The first hard match closes every lane, the banner's too.
        assert_eq!(
            drain(&mut c),
            vec![Action::Close(0), Action::Close(1), Action::Close(2)]
        );
    }

    #[test]
    fn service_that_never_speaks_costs_bounded_time() {
        let (mut c, t0) = begin(80, settings());
        let mut now = t0;
        let mut steps = 0;
        while c.verdict().is_none() {
            for a in drain(&mut c) {
                if let Action::Connect(l) = a {
                    c.handle_connected(l, now);
                }
            }
            let Some(d) = c.next_deadline() else { break };
            now = d;
            c.handle_timeout(now);
            steps += 1;
            assert!(steps < 20);
        }
        assert_eq!(c.verdict(), Some(&Verdict::Silent));
        // NULL 1.5 s, then Get and Help 0.5 s each.
        assert_eq!(now - t0, ms(2500));
    }

    #[test]
    fn one_byte_a_second_is_cut_by_the_quiet_interval() {
        let (mut c, t0) = begin_common(22);
        c.handle_data(0, b"S", t0 + ms(1000));
        // Quiet interval: max(2 × 10 ms, 100 ms) after the byte.
        assert_eq!(c.next_deadline(), Some(t0 + ms(1100)));
        c.handle_timeout(t0 + ms(1100));
        assert_eq!(c.verdict(), Some(&unrecognized(b"S")));
    }

    #[test]
    fn megabyte_of_binary_is_read_up_to_the_bound() {
        let (mut c, t0) = begin(
            22,
            Settings {
                intensity: 0,
                read_limit: 4096,
                ..settings()
            },
        );
        let junk: Vec<u8> = (0..1_000_000u64).map(|i| (i * 7919 % 251) as u8).collect();
        for chunk in junk.chunks(65536) {
            c.handle_data(0, chunk, t0 + ms(5));
        }
        match c.verdict() {
            Some(Verdict::Unrecognized { response, .. }) => assert_eq!(response.len(), 4096),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn closes_at_once_is_tcpwrapped() {
        let (mut c, t0) = begin(80, settings());
        c.handle_closed(0, t0 + ms(2));
        assert_eq!(c.verdict(), Some(&Verdict::Tcpwrapped));
    }

    #[test]
    fn closed_after_the_tcpwrapped_window_is_not_tcpwrapped() {
        let (mut c, t0) = begin_common(80);
        c.handle_timeout(t0 + ms(1500));
        assert_eq!(drain(&mut c), vec![Action::Send { lane: 0, probe: 1 }]);
        // Closed while the Get probe waits: not the NULL probe's quick close.
        c.handle_closed(0, t0 + ms(1600));
        assert_eq!(c.verdict(), Some(&Verdict::Silent));
    }

    #[test]
    fn reset_after_the_banner_keeps_the_banner() {
        let (mut c, t0) = begin_common(22);
        c.handle_data(0, b"hello\x1b[2J", t0 + ms(5));
        c.handle_closed(0, t0 + ms(6));
        assert_eq!(c.verdict(), Some(&unrecognized(b"hello\x1b[2J")));
    }

    #[test]
    fn tls_alert_asks_for_a_tunnel() {
        let (mut c, t0) = begin(80, settings());
        c.handle_timeout(t0 + ms(1500));
        assert_eq!(drain(&mut c), vec![Action::Send { lane: 0, probe: 1 }]);
        c.handle_data(0, b"\x15\x03\x03\0\x02\x02\x0a", t0 + ms(1510));
        assert!(matches!(c.verdict(), Some(Verdict::Tls(m)) if m.service == "ssl"));
        // Inside the tunnel, the same answer is just a match.
        let s = Settings {
            tunnel: Tunnel::Tls,
            ..settings()
        };
        let mut c = Conversation::new(db(), 80, s, t0);
        c.handle_timeout(t0 + ms(1500));
        c.handle_data(0, b"\x15\x03\x03\0\x02\x02\x0a", t0 + ms(1510));
        assert!(matches!(c.verdict(), Some(Verdict::Matched(m)) if m.service == "ssl"));
    }

    #[test]
    fn banners_mode_reports_without_matching() {
        let (mut c, t0) = begin(
            22,
            Settings {
                banners_only: true,
                ..settings()
            },
        );
        c.handle_data(0, b"SSH-2.0-OpenSSH_9.6\r\n", t0 + ms(3));
        assert!(c.verdict().is_none());
        c.handle_timeout(t0 + ms(103));
        assert_eq!(
            c.verdict(),
            Some(&Verdict::Banner(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()))
        );
        assert_eq!(drain(&mut c), vec![Action::Close(0)]);
    }

    #[test]
    fn waits_follow_the_rtt_up_to_the_probe_cap() {
        let (c, t0) = begin(
            22,
            Settings {
                rtt: ms(300),
                ..settings()
            },
        );
        // 10 × 300 ms = 3 s, above the 1.5 s floor, under the 6 s cap.
        assert_eq!(c.next_deadline(), Some(t0 + ms(3000)));
        let s = Settings {
            rtt: ms(2000),
            ..settings()
        };
        let c = Conversation::new(db(), 22, s, t0);
        assert_eq!(c.next_deadline(), Some(t0 + ms(6000)));
    }
}
