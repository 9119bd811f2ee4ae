//! The simulated hosts, without I/O: packets in with the time they arrived,
//! answers out when they are due. Like smoltcp's `iface.poll(timestamp)` and
//! quinn-proto's `handle_*(now)`, it reads no clock, so tests drive it with
//! made-up instants and no sleeps; [`crate::sim`] feeds it the TUN device.
//!
//! It keeps no connection state: a SYN-ACK's sequence number is a hash of
//! the 4-tuple, the final ACK and the scanner's RST are consumed (the final
//! ACK to a speaking service also starts its greeting, and a speaking
//! service answers the client's first data: see [`crate::services`]), and
//! any other FIN or data gets a stateless RST. With hazards on, it also
//! keeps a one-second window per /24 (ICMP) and per host (RST) for the
//! rate limits. The only memory per target is how many SYNs it
//! has seen, so that the n-th SYN's loss and jitter draws are the same in
//! every run with the same seed, whatever the kernel's ISNs and ports.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::model::{Model, ReplyKind};
use crate::oracle::Oracle;
use crate::record::{Counters, Fate, LogEntry, Record, Recorder, micros};
use crate::services;
use crate::wire::{self, AckSegment, Incoming, Stray, Syn};

/// What [`Responder::handle`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// An answer of this kind will be due at this instant.
    Scheduled(ReplyKind, Instant),
    /// The SYN was lost on its way to the host.
    SynLost,
    /// The host will answer, but the answer is lost on its way back.
    ReplyLost(ReplyKind),
    /// A filtered port: no answer.
    Silent,
    /// The host (RST) or its router (ICMP) was over its rate limit: no answer.
    RateLimited(ReplyKind),
    /// A bare ACK or a RST: nothing to do.
    Consumed,
    /// A FIN or data: a RST is due now.
    Reset,
    /// A speaking service's greeting or answer will be due at this instant
    /// (after the transmissions the reply loss took).
    Speaks(Instant),
    /// A speaking service's data was lost on every transmission.
    Unheard,
    /// Not IPv4 TCP, or malformed.
    Ignored,
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Reply {
        kind: ReplyKind,
        syn: Syn,
        attempt: u32,
        intended: Duration,
    },
    Reset(Stray),
    /// A speaking service's greeting or answer.
    Data {
        client: std::net::SocketAddrV4,
        server: std::net::SocketAddrV4,
        seq: u32,
        ack: u32,
        payload: &'static [u8],
    },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    due: Instant,
    /// Arrival order, so answers due at the same instant leave in order.
    id: u64,
    received: Instant,
    job: Job,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.id) == (other.due, other.id)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    /// Reversed, so the max-heap's top is the earliest due.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.id).cmp(&(self.due, self.id))
    }
}

/// The simulated hosts behind the TUN device.
#[derive(Debug)]
pub struct Responder {
    model: Model,
    queue: BinaryHeap<Pending>,
    next_id: u64,
    /// SYNs seen per (address, port), keyed `addr << 16 | port`.
    attempts: HashMap<u64, u32>,
    counters: Counters,
    recorder: Recorder,
    /// The first packet's arrival: the log's time origin.
    origin: Option<Instant>,
    /// SYNs received per [`LAUNCH_BUCKET`] since `origin`: the launch rate
    /// the scanner sustained, for the oracle.
    launches: Vec<u32>,
    /// SYNs per target for the oracle's bounds; none, no oracle.
    oracle_tries: Option<u32>,
    /// Rate-limit windows: (second of the run, answers sent in it) per
    /// /24 for ICMP and per host for RSTs, keyed by the address's bits.
    icmp_windows: HashMap<u32, (u64, u32)>,
    rst_windows: HashMap<u32, (u64, u32)>,
}

/// Counts one answer against `limit` per second in `key`'s window; false
/// when the window is full. Windows are whole seconds of the run, by when
/// the SYN arrived (when the host makes its answer).
fn within_limit(windows: &mut HashMap<u32, (u64, u32)>, key: u32, second: u64, limit: u32) -> bool {
    if limit == 0 {
        return true;
    }
    let w = windows.entry(key).or_insert((second, 0));
    if w.0 != second {
        *w = (second, 0);
    }
    if w.1 >= limit {
        return false;
    }
    w.1 += 1;
    true
}

/// The most targets the SYN count is sized for up front (16 M: a /15 ×
/// 256 ports, or any /16 × top 100; 16 bytes each, touched as they fill).
/// Grown from empty, the map rehashed every entry at each doubling, and at
/// /16 × top 100 the rehashes of 1.8 M and 3.7 M entries stopped the
/// responder for a few hundred milliseconds: every answer in flight came
/// late at once, a latency spike the model does not have, and the
/// scanner's window was cut for it.
const PRESIZED_TARGETS: u64 = 1 << 24;

/// The resolution of the launch-rate record.
pub const LAUNCH_BUCKET: Duration = Duration::from_millis(10);

impl Responder {
    /// The hosts of `model`. With `log`, every answer is kept for the record.
    pub fn new(model: Model, log: bool) -> Responder {
        let config = model.config();
        let targets = config.hosts.len() * config.ports.len() as u64;
        let presized = usize::try_from(targets.min(PRESIZED_TARGETS)).unwrap_or(0);
        Responder {
            model,
            queue: BinaryHeap::new(),
            next_id: 0,
            attempts: HashMap::with_capacity(presized),
            counters: Counters::default(),
            recorder: Recorder::new(log),
            origin: None,
            launches: Vec::new(),
            oracle_tries: None,
            icmp_windows: HashMap::new(),
            rst_windows: HashMap::new(),
        }
    }

    /// Adds the oracle's report at `tries` SYNs per target to the record
    /// (see [`crate::oracle`]).
    pub fn with_oracle(mut self, tries: u32) -> Responder {
        self.oracle_tries = Some(tries);
        self
    }

    /// The most SYNs received in any one second, per second; over a run
    /// shorter than a second, the SYNs over the time they took.
    pub fn launch_rate(&self) -> f64 {
        let per_second = (Duration::from_secs(1).as_nanos() / LAUNCH_BUCKET.as_nanos()) as usize;
        if self.launches.len() >= per_second {
            crate::oracle::busiest(&self.launches, per_second) as f64
        } else {
            let syns: u64 = self.launches.iter().map(|&n| u64::from(n)).sum();
            let span = (self.launches.len().max(1) as f64) * LAUNCH_BUCKET.as_secs_f64();
            syns as f64 / span
        }
    }

    /// The model it answers from.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Counts so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Answers waiting for their time.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Takes in one packet read from the device at `now`.
    pub fn handle(&mut self, now: Instant, packet: &[u8]) -> Action {
        self.counters.packets += 1;
        self.origin.get_or_insert(now);
        match wire::parse(packet) {
            Incoming::Syn(syn) => self.syn(now, syn),
            Incoming::Ack(seg) => self.ack(now, seg),
            Incoming::Rst => {
                self.counters.rsts_consumed += 1;
                Action::Consumed
            }
            Incoming::Stray(stray) => {
                if let Some(action) = self.request(now, stray) {
                    return action;
                }
                self.push(now, now, Job::Reset(stray));
                Action::Reset
            }
            Incoming::Other => {
                self.counters.other += 1;
                Action::Ignored
            }
            Incoming::Malformed => {
                self.counters.malformed += 1;
                Action::Ignored
            }
        }
    }

    fn syn(&mut self, now: Instant, syn: Syn) -> Action {
        self.counters.syns += 1;
        let (addr, port) = (*syn.server.ip(), syn.server.port());
        let key = (u64::from(u32::from(addr)) << 16) | u64::from(port);
        let attempt = match self.attempts.entry(key) {
            Entry::Occupied(mut e) => {
                *e.get_mut() += 1;
                *e.get()
            }
            Entry::Vacant(e) => *e.insert(0),
        };
        let at = self.since_origin(now);
        let bucket = (at.as_nanos() / LAUNCH_BUCKET.as_nanos()) as usize;
        if self.launches.len() <= bucket {
            self.launches.resize(bucket + 1, 0);
        }
        self.launches[bucket] += 1;
        if self.model.syn_lost(addr, port, attempt) {
            self.counters.syns_lost += 1;
            self.log_unanswered(addr, port, attempt, at, Fate::SynLost);
            return Action::SynLost;
        }
        let Some(kind) = self.model.state(addr, port).reply() else {
            self.counters.silent += 1;
            self.log_unanswered(addr, port, attempt, at, Fate::Silent);
            return Action::Silent;
        };
        if !self.rate_allows(kind, addr, at) {
            self.log_unanswered(addr, port, attempt, at, Fate::RateLimited);
            return Action::RateLimited(kind);
        }
        if self.model.reply_lost(addr, port, attempt) {
            self.counters.replies_lost += 1;
            self.log_unanswered(addr, port, attempt, at, Fate::ReplyLost);
            return Action::ReplyLost(kind);
        }
        let intended = self.model.latency(addr, port, attempt);
        let due = now + intended;
        self.push(
            due,
            now,
            Job::Reply {
                kind,
                syn,
                attempt,
                intended,
            },
        );
        Action::Scheduled(kind, due)
    }

    /// The server's ISN on the connection `seg` belongs to, when the
    /// client has sent no data yet (its sequence number is its ISN + 1).
    fn server_isn(&self, client: SocketAddrV4, server: SocketAddrV4, seq: u32) -> u32 {
        self.model.isn(client, server, seq.wrapping_sub(1))
    }

    /// A bare ACK: the handshake's final one starts a greeting service's
    /// banner; any other is consumed.
    fn ack(&mut self, now: Instant, seg: AckSegment) -> Action {
        self.counters.acks_consumed += 1;
        let (addr, port) = (*seg.server.ip(), seg.server.port());
        let Some(greeting) = self.model.service(addr, port).and_then(|s| s.greeting) else {
            return Action::Consumed;
        };
        let isn = self.server_isn(seg.client, seg.server, seg.seq);
        if seg.ack != isn.wrapping_add(1) {
            return Action::Consumed;
        }
        self.counters.greetings += 1;
        self.send_data(now, seg.client, seg.server, seg.ack, seg.seq, greeting)
    }

    /// The client's first data to a service that answers it; `None` when
    /// the port does not answer data (it gets a RST).
    fn request(&mut self, now: Instant, stray: Stray) -> Option<Action> {
        if stray.fin {
            return None;
        }
        let (addr, port) = (*stray.server.ip(), stray.server.port());
        let service = self.model.service(addr, port)?;
        let reply = service.reply?;
        let isn = self.server_isn(stray.client, stray.server, stray.seq);
        let sent = service.greeting.map_or(0, |g| g.len() as u32);
        let ours = isn.wrapping_add(1).wrapping_add(sent);
        if stray.ack != Some(ours) {
            return None;
        }
        self.counters.requests_answered += 1;
        Some(self.send_data(
            now,
            stray.client,
            stray.server,
            ours,
            stray.seq.wrapping_add(stray.len),
            reply,
        ))
    }

    /// Schedules `payload` one round trip after `now`, resent after
    /// [`services::RESEND`] for each transmission the reply loss takes.
    fn send_data(
        &mut self,
        now: Instant,
        client: SocketAddrV4,
        server: SocketAddrV4,
        seq: u32,
        ack: u32,
        payload: &'static [u8],
    ) -> Action {
        let (addr, port) = (*server.ip(), server.port());
        let Some(send) =
            (0..services::SENDS).find(|&n| !self.model.data_lost(addr, port, client, n))
        else {
            self.counters.data_lost += u64::from(services::SENDS);
            return Action::Unheard;
        };
        self.counters.data_lost += u64::from(send);
        let due = now + self.model.latency(addr, port, 0) + services::RESEND * send;
        self.push(
            due,
            now,
            Job::Data {
                client,
                server,
                seq,
                ack,
                payload,
            },
        );
        Action::Speaks(due)
    }

    /// Whether the hazards' rate limits let this answer out (and counts it).
    fn rate_allows(&mut self, kind: ReplyKind, addr: Ipv4Addr, at: Duration) -> bool {
        let h = self.model.config().hazards;
        let second = at.as_secs();
        let a = u32::from(addr);
        match kind {
            ReplyKind::IcmpHostUnreach | ReplyKind::IcmpAdminProhibited => {
                let ok = within_limit(&mut self.icmp_windows, a >> 8, second, h.icmp_unreach_per_s);
                self.counters.icmp_rate_limited += u64::from(!ok);
                ok
            }
            ReplyKind::Rst => {
                let ok = within_limit(&mut self.rst_windows, a, second, h.rst_per_s);
                self.counters.rst_rate_limited += u64::from(!ok);
                ok
            }
            ReplyKind::SynAck => true,
        }
    }

    fn log_unanswered(
        &mut self,
        addr: Ipv4Addr,
        port: u16,
        attempt: u32,
        at: Duration,
        fate: Fate,
    ) {
        self.recorder.syn(LogEntry {
            addr,
            port,
            attempt,
            at_us: micros(at),
            fate,
            intended_us: None,
            latency_us: None,
        });
    }

    fn since_origin(&self, t: Instant) -> Duration {
        self.origin
            .map_or(Duration::ZERO, |o| t.saturating_duration_since(o))
    }

    fn push(&mut self, due: Instant, received: Instant, job: Job) {
        self.queue.push(Pending {
            due,
            id: self.next_id,
            received,
            job,
        });
        self.next_id += 1;
    }

    /// When the next answer is due, if any is waiting.
    pub fn poll_at(&self) -> Option<Instant> {
        self.queue.peek().map(|p| p.due)
    }

    /// Writes the next answer due by `now` into `buf` (at least
    /// [`wire::MAX_REPLY`] bytes) and returns its length; `None` when
    /// nothing is due. Call until `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if self.queue.peek()?.due > now {
            return None;
        }
        let p = self.queue.pop()?;
        Some(match p.job {
            Job::Reply {
                kind,
                syn,
                attempt,
                intended,
            } => {
                let isn = self.model.isn(syn.client, syn.server, syn.seq);
                let n = wire::build_reply(kind, &syn, isn, buf);
                self.counters.count_reply(kind);
                let at = self.since_origin(p.received);
                self.recorder.syn(LogEntry {
                    addr: *syn.server.ip(),
                    port: syn.server.port(),
                    attempt,
                    at_us: micros(at),
                    fate: kind.into(),
                    intended_us: Some(micros(intended)),
                    latency_us: Some(micros(now.saturating_duration_since(p.received))),
                });
                n
            }
            Job::Reset(stray) => {
                self.counters.strays_reset += 1;
                wire::build_reset(&stray, buf)
            }
            Job::Data {
                client,
                server,
                seq,
                ack,
                payload,
            } => {
                self.counters.data_sent += 1;
                wire::build_data(server, client, seq, ack, payload, buf)
            }
        })
    }

    /// Counts a failed write to the device.
    pub fn write_failed(&mut self) {
        self.counters.write_errors += 1;
    }

    /// The record of the run, which lasted `elapsed`; answers still waiting
    /// are counted as abandoned.
    pub fn finish(mut self, elapsed: Duration) -> Record {
        self.counters.abandoned = self.queue.len() as u64;
        let mut syns_per_target = BTreeMap::new();
        for &n in self.attempts.values() {
            *syns_per_target.entry(n + 1).or_insert(0) += 1;
        }
        let launch_rate = self.launch_rate();
        // The oracle walks every configured target (a /16 × 100 ports is
        // 6.5 M): only for a run that scanned.
        let oracle = self
            .oracle_tries
            .filter(|_| self.counters.syns > 0)
            .map(|k| Oracle::new(&self.model).report(k, launch_rate));
        let config = self.model.config();
        let middleboxes = self.model.middleboxes().collect();
        Record {
            launch_rate,
            oracle,
            middleboxes,
            profile: config.name.clone(),
            seed: self.model.seed(),
            hosts: config.hosts.to_string(),
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            counters: self.counters,
            syns_per_target,
            latency_us: self.recorder.latency(),
            lateness_us: self.recorder.lateness(),
            log: self.recorder.take_log(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};

    use super::*;
    use crate::config::{Latency, Preset};
    use crate::model::State;

    fn syn(server: SocketAddrV4, sport: u16, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4([198, 19, 255, 254], server.ip().octets(), 64)
            .tcp(sport, server.port(), seq, 64240)
            .syn()
            .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
            .write_to_vec(&mut v, &[])
            .unwrap();
        v
    }

    fn far_model(seed: u64) -> Model {
        Model::new(Preset::Far.config(), seed).unwrap()
    }

    /// The first target of `model` in `state`, scanning 198.18.0.0/24 × top 100.
    fn find(model: &Model, state: State) -> SocketAddrV4 {
        model
            .truth()
            .take(25_600)
            .map(|t| SocketAddrV4::new(t.addr, t.port))
            .find(|sa| model.state(*sa.ip(), sa.port()) == state)
            .expect("the /24 has one of each")
    }

    fn drain(r: &mut Responder, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; wire::MAX_REPLY];
        while let Some(n) = r.poll_transmit(now, &mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    #[test]
    fn each_state_gets_its_answer_after_the_hosts_latency_and_not_before() {
        let t0 = Instant::now();
        let mut r = Responder::new(far_model(1), true);
        let cases = [
            (State::Open, Some(ReplyKind::SynAck)),
            (State::Closed, Some(ReplyKind::Rst)),
            (State::HostUnreach, Some(ReplyKind::IcmpHostUnreach)),
            (State::AdminProhibited, Some(ReplyKind::IcmpAdminProhibited)),
            (State::Filtered, None),
        ];
        let lat = Duration::from_millis(250);
        for (state, reply) in cases {
            let target = find(r.model(), state);
            let action = r.handle(t0, &syn(target, 40000, 1));
            match reply {
                Some(kind) => assert_eq!(action, Action::Scheduled(kind, t0 + lat)),
                None => assert_eq!(action, Action::Silent),
            }
        }
        assert_eq!(r.poll_at(), Some(t0 + lat));
        assert!(drain(&mut r, t0 + lat - Duration::from_nanos(1)).is_empty());
        let sent = drain(&mut r, t0 + lat);
        assert_eq!(sent.len(), 4);
        assert!(sent.iter().all(|p| wire::checksums_valid(p)));
        assert_eq!(r.poll_at(), None);
        let mut record = r.finish(lat);
        assert_eq!(record.counters.replies(), 4);
        assert_eq!(record.counters.silent, 1);
        assert_eq!(record.latency_us["all"].count, 4);
        // HdrHistogram keeps three significant digits.
        assert!((250_000..250_250).contains(&record.latency_us["all"].p50));
        assert_eq!(record.log.len(), 5);
        assert_eq!(
            record.log.iter().filter(|e| e.fate == Fate::Silent).count(),
            1
        );
        record.log.retain(|e| e.fate != Fate::Silent);
        assert!(
            record
                .log
                .iter()
                .all(|e| e.latency_us == Some(250_000) && e.at_us == 0)
        );
    }

    #[test]
    fn answers_leave_in_due_order_whatever_the_arrival_order() {
        let mut c = Preset::Far.config();
        c.latency = Latency::Uniform {
            min_ms: 1.0,
            max_ms: 500.0,
        };
        c.fractions = Default::default();
        let model = Model::new(c, 9).unwrap();
        let t0 = Instant::now();
        let mut r = Responder::new(model, true);
        for i in 0..200u16 {
            let host = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, i as u8), 80);
            r.handle(
                t0 + Duration::from_micros(u64::from(i)),
                &syn(host, 1000 + i, 5),
            );
        }
        let mut last = Duration::ZERO;
        let mut sent = 0;
        for step in 0..=600 {
            let now = t0 + Duration::from_millis(step);
            sent += drain(&mut r, now).len();
            if let Some(due) = r.poll_at() {
                assert!(due > now);
                assert!(due - t0 >= last);
                last = due - t0;
            }
        }
        assert_eq!(sent, 200);
        let rec = r.finish(Duration::from_millis(600));
        // Polled every millisecond: no answer is more than 1 ms late.
        assert!(rec.lateness_us.max <= 1001, "{:?}", rec.lateness_us);
    }

    #[test]
    fn a_seeded_run_loses_the_same_packets_whatever_the_isns_and_ports() {
        let run = |sport_base: u16, isn_base: u32| {
            let model = Model::new(Preset::Lossy.config(), 4).unwrap();
            let mut r = Responder::new(model, false);
            let t0 = Instant::now();
            let mut actions = Vec::new();
            for attempt in 0..3u32 {
                for i in 0..300u32 {
                    let host = SocketAddrV4::new(Ipv4Addr::from(0xC612_0000 + i), 443);
                    let a = r.handle(
                        t0,
                        &syn(
                            host,
                            sport_base.wrapping_add(i as u16),
                            isn_base ^ i ^ attempt,
                        ),
                    );
                    actions.push(match a {
                        Action::Scheduled(k, due) => Some((k, due - t0)),
                        Action::SynLost => None,
                        Action::ReplyLost(_) => None,
                        Action::Silent => None,
                        other => panic!("{other:?}"),
                    });
                }
            }
            (actions, r.finish(Duration::ZERO))
        };
        let (a, ra) = run(1000, 7);
        let (b, rb) = run(50000, 123_456);
        assert_eq!(a, b);
        assert_eq!(ra.counters, rb.counters);
        assert!(ra.counters.syns_lost > 0 && ra.counters.replies_lost > 0);
        assert_eq!(ra.syns_per_target, BTreeMap::from([(3, 300)]));
    }

    #[test]
    fn the_handshakes_ack_and_our_rst_are_consumed_and_a_fin_is_reset() {
        let t0 = Instant::now();
        let mut r = Responder::new(far_model(1), false);
        let open = find(r.model(), State::Open);
        let mut v = Vec::new();
        let ip = |v: &mut Vec<u8>,
                  f: &dyn Fn(
            etherparse::PacketBuilderStep<etherparse::TcpHeader>,
        ) -> etherparse::PacketBuilderStep<etherparse::TcpHeader>| {
            v.clear();
            f(
                PacketBuilder::ipv4([198, 19, 255, 254], open.ip().octets(), 64).tcp(
                    40000,
                    open.port(),
                    2,
                    64240,
                ),
            )
            .write_to_vec(v, &[])
            .unwrap();
        };
        ip(&mut v, &|t| t.ack(99));
        assert_eq!(r.handle(t0, &v), Action::Consumed);
        ip(&mut v, &|t| t.rst().ack(99));
        assert_eq!(r.handle(t0, &v), Action::Consumed);
        ip(&mut v, &|t| t.fin().ack(99));
        assert_eq!(r.handle(t0, &v), Action::Reset);
        let sent = drain(&mut r, t0);
        assert_eq!(sent.len(), 1);
        let p = SlicedPacket::from_ip(&sent[0]).unwrap();
        assert!(matches!(p.net, Some(NetSlice::Ipv4(_))));
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            unreachable!()
        };
        assert!(t.rst());
        assert_eq!(r.counters().acks_consumed, 1);
        assert_eq!(r.counters().rsts_consumed, 1);
        assert_eq!(r.counters().strays_reset, 1);
        assert_eq!(r.counters().syns, 0);
    }

    #[test]
    fn a_retransmitted_syn_gets_the_same_isn() {
        let t0 = Instant::now();
        let mut r = Responder::new(far_model(1), false);
        let open = find(r.model(), State::Open);
        r.handle(t0, &syn(open, 40000, 77));
        r.handle(t0, &syn(open, 40000, 77));
        let sent = drain(&mut r, t0 + Duration::from_secs(1));
        let seq = |p: &[u8]| match SlicedPacket::from_ip(p).unwrap().transport {
            Some(TransportSlice::Tcp(t)) => t.sequence_number(),
            _ => unreachable!(),
        };
        assert_eq!(sent.len(), 2);
        assert_eq!(seq(&sent[0]), seq(&sent[1]));
        let rec = r.finish(Duration::from_secs(1));
        assert_eq!(rec.syns_per_target, BTreeMap::from([(2, 1)]));
    }
}

/// The hazards of [`crate::config::Hazards`], each driven through the
/// responder with made-up instants.
#[cfg(test)]
mod hazards {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::{Duration, Instant};

    use etherparse::{PacketBuilder, TcpOptionElement};

    use super::*;
    use crate::config::{Fractions, Hazards, Latency, ModelConfig, Preset};

    fn syn(server: SocketAddrV4, sport: u16) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4([198, 19, 255, 254], server.ip().octets(), 64)
            .tcp(sport, server.port(), 1, 64240)
            .syn()
            .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
            .write_to_vec(&mut v, &[])
            .unwrap();
        v
    }

    /// A far world on 198.18.0.0/22 where every port does the same thing.
    fn world(fractions: Fractions, hazards: Hazards) -> Model {
        let mut c: ModelConfig = Preset::Far.config();
        c.hosts = "198.18.0.0/22".parse().unwrap();
        c.fractions = fractions;
        c.hazards = hazards;
        Model::new(c, 3).unwrap()
    }

    fn target(a: u32, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(0xC612_0000 + a), port)
    }

    #[test]
    fn a_routers_icmp_unreachables_stop_after_the_limit_each_second_per_24() {
        let unreach = Fractions {
            host_unreach: 1.0,
            ..Fractions::default()
        };
        let limits = Hazards {
            icmp_unreach_per_s: 5,
            ..Hazards::default()
        };
        let mut r = Responder::new(world(unreach, limits), false);
        let t0 = Instant::now();
        let sent = |r: &mut Responder, at: Duration, net: u32| {
            (0..20u16)
                .filter(|&i| {
                    let a = r.handle(t0 + at, &syn(target(net * 256 + 1 + u32::from(i), 80), i));
                    matches!(a, Action::Scheduled(ReplyKind::IcmpHostUnreach, _))
                })
                .count()
        };
        // 20 SYNs to hosts of one /24 within a second: 5 answered.
        assert_eq!(sent(&mut r, Duration::ZERO, 0), 5);
        assert_eq!(sent(&mut r, Duration::from_millis(900), 0), 0);
        // Another /24 has its own router.
        assert_eq!(sent(&mut r, Duration::from_millis(900), 1), 5);
        // The next second, the first router answers again.
        assert_eq!(sent(&mut r, Duration::from_millis(1000), 0), 5);
        assert_eq!(r.counters().icmp_rate_limited, 80 - 15);
        // Without the hazard, every SYN is answered.
        let mut free = Responder::new(world(unreach, Hazards::default()), false);
        assert_eq!(sent(&mut free, Duration::ZERO, 0), 20);
    }

    #[test]
    fn a_hosts_rsts_stop_after_the_limit_each_second_and_other_hosts_are_unaffected() {
        let limits = Hazards {
            rst_per_s: 3,
            ..Hazards::default()
        };
        let mut r = Responder::new(world(Fractions::default(), limits), false);
        let t0 = Instant::now();
        let answered = |r: &mut Responder, host: u32, at_ms: u64| {
            (1..=10u16)
                .filter(|&p| {
                    matches!(
                        r.handle(t0 + Duration::from_millis(at_ms), &syn(target(host, p), p)),
                        Action::Scheduled(ReplyKind::Rst, _)
                    )
                })
                .count()
        };
        assert_eq!(answered(&mut r, 7, 0), 3);
        assert_eq!(answered(&mut r, 8, 10), 3);
        assert_eq!(answered(&mut r, 7, 999), 0);
        assert_eq!(answered(&mut r, 7, 1500), 3);
        assert_eq!(r.counters().rst_rate_limited, 7 + 7 + 10 + 7);
        let rec = r.finish(Duration::from_secs(2));
        assert!(
            rec.summary().contains("31 RSTs held back"),
            "{}",
            rec.summary()
        );
    }

    #[test]
    fn middlebox_hosts_answer_syn_ack_on_every_port_and_are_listed() {
        let closed = Fractions::default();
        let hazards = Hazards {
            syn_ack_all_ports: 0.1,
            ..Hazards::default()
        };
        let m = world(closed, hazards);
        let boxes: Vec<Ipv4Addr> = m.middleboxes().collect();
        // 1024 hosts, 10 %: about 102.
        assert!((70..140).contains(&boxes.len()), "{}", boxes.len());
        for a in m.config().hosts.iter() {
            let all_open = (1..=2000u16).all(|p| m.state(a, p) == crate::model::State::Open);
            let none_open = (1..=2000u16).all(|p| m.state(a, p) == crate::model::State::Closed);
            assert_eq!(all_open, boxes.contains(&a), "{a}");
            assert_eq!(none_open, !boxes.contains(&a), "{a}");
        }
        let mut r = Responder::new(m, false);
        let t0 = Instant::now();
        let b = SocketAddrV4::new(boxes[0], 31337);
        assert!(matches!(
            r.handle(t0, &syn(b, 1)),
            Action::Scheduled(ReplyKind::SynAck, _)
        ));
        let rec = r.finish(Duration::ZERO);
        assert_eq!(rec.middleboxes, boxes);
        assert!(rec.summary().contains("answer SYN-ACK on every port"));
    }

    #[test]
    fn subnet_latency_is_shared_by_a_24_within_its_spread() {
        let spread = 0.1;
        let hazards = Hazards {
            subnet_latency_spread: Some(spread),
            ..Hazards::default()
        };
        let mut c = Preset::InternetLike.config();
        c.hosts = "198.18.0.0/22".parse().unwrap();
        c.latency = Latency::Lognormal {
            median_ms: 80.0,
            sigma: 0.8,
        };
        c.hazards = hazards;
        let m = Model::new(c.clone(), 5).unwrap();
        let mut centres = Vec::new();
        for net in 0..4u32 {
            let lats: Vec<f64> = (0..256)
                .map(|h| {
                    m.host_latency(Ipv4Addr::from(0xC612_0000 + net * 256 + h))
                        .as_secs_f64()
                })
                .collect();
            let (lo, hi) = lats
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), &l| (lo.min(l), hi.max(l)));
            // All within ±10 % of one centre: max/min ≤ 1.1/0.9.
            assert!(hi / lo <= 1.1 / 0.9 + 1e-6, "{net}: {lo} {hi}");
            assert!(hi > lo, "hosts still differ");
            centres.push((lo + hi) / 2.0);
        }
        centres.sort_by(f64::total_cmp);
        centres.dedup();
        assert_eq!(centres.len(), 4, "each /24 draws its own");
        // Without the hazard, one /24's hosts spread over the whole distribution.
        c.hazards = Hazards::default();
        let free = Model::new(c, 5).unwrap();
        let lats: Vec<f64> = (0..256)
            .map(|h| {
                free.host_latency(Ipv4Addr::from(0xC612_0000 + h))
                    .as_secs_f64()
            })
            .collect();
        let (lo, hi) = lats
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &l| (lo.min(l), hi.max(l)));
        assert!(hi / lo > 5.0);
    }

    #[test]
    fn hazards_round_trip_through_toml_and_bad_ones_are_refused() {
        let mut c = Preset::Lossy.config();
        c.hazards = Hazards {
            icmp_unreach_per_s: 10,
            rst_per_s: 50,
            syn_ack_all_ports: 0.01,
            subnet_latency_spread: Some(0.1),
        };
        assert_eq!(ModelConfig::from_toml(&c.to_toml()).unwrap(), c);
        // A preset's TOML has no [hazards] table.
        assert!(!Preset::Lossy.config().to_toml().contains("hazards"));
        c.hazards.syn_ack_all_ports = 1.5;
        assert!(c.validate().is_err());
    }
}

/// Speaking services, driven through the responder with made-up instants.
#[cfg(test)]
mod speaking {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::{Duration, Instant};

    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    use super::*;
    use crate::config::{Fractions, Loss, Preset, Services};

    const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 19, 255, 254), 40000);

    fn model(loss: f64) -> Model {
        let mut c = Preset::Far.config();
        c.hosts = "198.18.0.0/24".parse().unwrap();
        c.fractions = Fractions {
            open: 1.0,
            ..Fractions::default()
        };
        c.services = Services { share: 1.0 };
        c.loss = Loss {
            syn: 0.0,
            reply: loss,
        };
        Model::new(c, 2).unwrap()
    }

    fn segment(server: SocketAddrV4, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4(CLIENT.ip().octets(), server.ip().octets(), 64)
            .tcp(CLIENT.port(), server.port(), seq, 64240)
            .ack(ack)
            .write_to_vec(&mut v, payload)
            .unwrap();
        v
    }

    fn payload_of(p: &[u8]) -> (u32, u32, Vec<u8>) {
        match SlicedPacket::from_ip(p).unwrap().transport {
            Some(TransportSlice::Tcp(t)) => (
                t.sequence_number(),
                t.acknowledgment_number(),
                t.payload().to_vec(),
            ),
            _ => panic!("not TCP"),
        }
    }

    #[test]
    fn the_handshakes_ack_starts_the_greeting_one_round_trip_later() {
        let m = model(0.0);
        let ssh = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 9), 22);
        assert_eq!(m.service(*ssh.ip(), 22).unwrap().name, "ssh");
        let isn = m.isn(CLIENT, ssh, 1000);
        let mut r = Responder::new(m, false);
        let t0 = Instant::now();
        // Not the handshake's ACK (wrong acknowledgment): consumed.
        assert_eq!(
            r.handle(t0, &segment(ssh, 1001, isn, &[])),
            Action::Consumed
        );
        let lat = Duration::from_millis(250);
        assert_eq!(
            r.handle(t0, &segment(ssh, 1001, isn.wrapping_add(1), &[])),
            Action::Speaks(t0 + lat)
        );
        let mut buf = [0u8; wire::MAX_REPLY];
        assert!(
            r.poll_transmit(t0 + lat - Duration::from_nanos(1), &mut buf)
                .is_none()
        );
        let n = r.poll_transmit(t0 + lat, &mut buf).unwrap();
        assert!(wire::checksums_valid(&buf[..n]));
        let (seq, ack, data) = payload_of(&buf[..n]);
        assert_eq!((seq, ack), (isn.wrapping_add(1), 1001));
        assert!(data.starts_with(b"SSH-2.0-"));
        // The kernel's ACK of the banner starts nothing more.
        let after = isn.wrapping_add(1 + data.len() as u32);
        assert_eq!(
            r.handle(t0 + lat, &segment(ssh, 1001, after, &[])),
            Action::Consumed
        );
        assert_eq!(r.counters().greetings, 1);
        assert_eq!(r.counters().data_sent, 1);
    }

    #[test]
    fn http_answers_a_get_and_redis_a_ping_and_other_ports_reset_data() {
        let m = model(0.0);
        let host = Ipv4Addr::new(198, 18, 0, 3);
        let http = SocketAddrV4::new(host, 80);
        let redis = SocketAddrV4::new(host, 6379);
        let mut r = Responder::new(m.clone(), false);
        let t0 = Instant::now();
        let lat = Duration::from_millis(250);
        let mut buf = [0u8; wire::MAX_REPLY];
        for (target, request, want) in [
            (
                http,
                &b"GET / HTTP/1.0\r\n\r\n"[..],
                &b"HTTP/1.1 200 OK\r\n"[..],
            ),
            (redis, b"PING\r\n", b"+PONG\r\n"),
        ] {
            let isn = m.isn(CLIENT, target, 5000);
            let seg = segment(target, 5001, isn.wrapping_add(1), request);
            assert_eq!(r.handle(t0, &seg), Action::Speaks(t0 + lat));
            let n = r.poll_transmit(t0 + lat, &mut buf).unwrap();
            let (seq, ack, data) = payload_of(&buf[..n]);
            assert_eq!(seq, isn.wrapping_add(1));
            assert_eq!(ack, 5001 + request.len() as u32);
            assert!(data.starts_with(want), "{}", String::from_utf8_lossy(&data));
        }
        // Data that does not belong to a handshake of ours gets a RST.
        assert_eq!(
            r.handle(t0, &segment(http, 5001, 7, b"GET /\r\n")),
            Action::Reset
        );
        assert_eq!(r.counters().requests_answered, 2);
    }

    #[test]
    fn lost_service_data_is_resent_a_second_later_and_the_share_is_seeded() {
        let m = model(0.5);
        let t0 = Instant::now();
        let mut r = Responder::new(m.clone(), false);
        let mut delays = Vec::new();
        for i in 0..64u8 {
            let ssh = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, i), 22);
            let isn = m.isn(CLIENT, ssh, 1);
            match r.handle(t0, &segment(ssh, 2, isn.wrapping_add(1), &[])) {
                Action::Speaks(due) => delays.push(due - t0),
                Action::Unheard => {}
                other => panic!("{other:?}"),
            }
        }
        let lat = Duration::from_millis(250);
        assert!(delays.contains(&lat));
        assert!(delays.contains(&(lat + services::RESEND)));
        assert!(
            delays
                .iter()
                .all(|d| (*d - lat).as_millis() % 1000 == 0 && *d < lat + services::RESEND * 4)
        );
        // Half the open ports of a world with share 0.5 speak.
        let mut c = m.config().clone();
        c.services.share = 0.5;
        let half = Model::new(c, 2).unwrap();
        let speaking = (1..=2000u16)
            .filter(|&p| half.service(Ipv4Addr::new(198, 18, 0, 1), p).is_some())
            .count();
        assert!((900..1100).contains(&speaking), "{speaking}");
    }
}
