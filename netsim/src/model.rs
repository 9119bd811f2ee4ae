//! The simulated network's ground truth: a pure function of (seed, address,
//! port), so 2^17 hosts × 65535 ports cost no memory and a scorer can ask
//! the [`Model`] directly what any probe should find.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{MAX_LATENCY_MS, ModelConfig};
use crate::error::ConfigError;
use crate::hash::{Stream, draw, unit, unit_open0};

/// What a simulated (address, port) does with a SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Answers SYN-ACK.
    Open,
    /// Answers RST-ACK.
    Closed,
    /// Answers nothing.
    Filtered,
    /// Answers ICMP destination unreachable, code 1 (host unreachable).
    HostUnreach,
    /// Answers ICMP destination unreachable, code 13 (communication
    /// administratively prohibited, RFC 1812).
    AdminProhibited,
}

impl State {
    /// The state a port scanner reports.
    pub fn port_state(self) -> PortState {
        match self {
            State::Open => PortState::Open,
            State::Closed => PortState::Closed,
            State::Filtered | State::HostUnreach | State::AdminProhibited => PortState::Filtered,
        }
    }

    /// Why, in FastPort's (and nmap's) words.
    pub fn reason(self) -> Reason {
        match self {
            State::Open => Reason::SynAck,
            State::Closed => Reason::ConnRefused,
            State::Filtered => Reason::NoResponse,
            State::HostUnreach => Reason::HostUnreach,
            State::AdminProhibited => Reason::AdminProhibited,
        }
    }

    /// The answer a SYN gets, if any.
    pub fn reply(self) -> Option<ReplyKind> {
        match self {
            State::Open => Some(ReplyKind::SynAck),
            State::Closed => Some(ReplyKind::Rst),
            State::Filtered => None,
            State::HostUnreach => Some(ReplyKind::IcmpHostUnreach),
            State::AdminProhibited => Some(ReplyKind::IcmpAdminProhibited),
        }
    }
}

/// A port's state as a scanner reports it: FastPort's, from the shared
/// `fastport-reasons` crate.
pub use fastport_reasons::State as PortState;

/// Why a port has its state: FastPort's reason names, from the shared
/// `fastport-reasons` crate. netsim's truth uses `syn-ack`, `conn-refused`,
/// `no-response`, `host-unreach` and `admin-prohibited` (ICMP code 13).
pub use fastport_reasons::Reason;

/// What a connect scan can see of a [`Reason`].
pub trait SeenByConnect {
    /// The reason a connect scan on Linux can report: `connect()` fails
    /// with `EHOSTUNREACH` for both ICMP codes netsim sends, so only a
    /// scanner that reads the ICMP code itself (`IP_RECVERR`) can tell
    /// admin-prohibited apart. Measured in `tests/netsim.rs`.
    fn as_seen_by_connect(&self) -> Reason;
}

impl SeenByConnect for Reason {
    fn as_seen_by_connect(&self) -> Reason {
        match *self {
            Reason::AdminProhibited => Reason::HostUnreach,
            r => r,
        }
    }
}

/// The answer the simulator sends to a SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplyKind {
    /// SYN-ACK with an MSS option.
    SynAck,
    /// RST-ACK acknowledging the SYN.
    Rst,
    /// ICMP type 3 code 1, quoting the SYN's IP header and 8 bytes.
    IcmpHostUnreach,
    /// ICMP type 3 code 13, quoting the SYN's IP header and 8 bytes.
    IcmpAdminProhibited,
}

impl ReplyKind {
    /// Every kind, in the order records list them.
    pub const ALL: [ReplyKind; 4] = [
        ReplyKind::SynAck,
        ReplyKind::Rst,
        ReplyKind::IcmpHostUnreach,
        ReplyKind::IcmpAdminProhibited,
    ];

    /// Dense index for per-kind tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::SynAck => "syn-ack",
            ReplyKind::Rst => "rst",
            ReplyKind::IcmpHostUnreach => "icmp-host-unreach",
            ReplyKind::IcmpAdminProhibited => "icmp-admin-prohibited",
        }
    }
}

/// One line of ground truth, in FastPort's JSON-lines shape:
/// `{"addr":"198.18.0.5","port":80,"state":"open","reason":"syn-ack"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Truth {
    /// The address.
    pub addr: Ipv4Addr,
    /// The port.
    pub port: u16,
    /// What a scanner should report.
    pub state: PortState,
    /// Why.
    pub reason: Reason,
}

/// A [`ModelConfig`] and a seed: every answer of the simulated network.
#[derive(Debug, Clone)]
pub struct Model {
    config: ModelConfig,
    seed: u64,
    /// Cumulative thresholds on a unit draw: open, filtered, host-unreach,
    /// admin-prohibited; above the last, closed.
    thresholds: [f64; 4],
}

fn key(addr: Ipv4Addr, port: u16) -> u64 {
    (u64::from(u32::from(addr)) << 16) | u64::from(port)
}

impl Model {
    /// The model of `config` (validated here) under `seed`.
    pub fn new(config: ModelConfig, seed: u64) -> Result<Model, ConfigError> {
        config.validate()?;
        let f = &config.fractions;
        let t0 = f.open;
        let t1 = t0 + f.filtered;
        let t2 = t1 + f.host_unreach;
        let t3 = t2 + f.admin_prohibited;
        Ok(Model {
            thresholds: [t0, t1, t2, t3],
            config,
            seed,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// What `addr:port` does. Addresses outside the configured hosts have no
    /// host behind them and answer nothing.
    pub fn state(&self, addr: Ipv4Addr, port: u16) -> State {
        if !self.config.hosts.contains(addr) {
            return State::Filtered;
        }
        if self.middlebox(addr) {
            return State::Open;
        }
        let u = unit(draw(self.seed, Stream::State, key(addr, port), 0));
        let [open, filtered, host_unreach, admin] = self.thresholds;
        if u < open {
            State::Open
        } else if u < filtered {
            State::Filtered
        } else if u < host_unreach {
            State::HostUnreach
        } else if u < admin {
            State::AdminProhibited
        } else {
            State::Closed
        }
    }

    /// Whether `addr` sits behind a middlebox that answers SYN-ACK on every
    /// port (the `syn_ack_all_ports` hazard): a scan sees all its ports open,
    /// which says nothing about the host.
    pub fn middlebox(&self, addr: Ipv4Addr) -> bool {
        let p = self.config.hazards.syn_ack_all_ports;
        p > 0.0
            && self.config.hosts.contains(addr)
            && unit(draw(
                self.seed,
                Stream::Middlebox,
                u64::from(u32::from(addr)),
                0,
            )) < p
    }

    /// The hosts behind such middleboxes, ascending.
    pub fn middleboxes(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let any = self.config.hazards.syn_ack_all_ports > 0.0;
        self.config
            .hosts
            .iter()
            .filter(move |&a| any && self.middlebox(a))
    }

    /// The service `addr:port` plays once its handshake completes: a seeded
    /// share of open ports (not middleboxes') speak, a well-known port its
    /// own service, any other one drawn from the catalogue.
    pub fn service(&self, addr: Ipv4Addr, port: u16) -> Option<&'static crate::services::Service> {
        let share = self.config.services.share;
        if share <= 0.0 || self.middlebox(addr) || self.state(addr, port) != State::Open {
            return None;
        }
        let k = key(addr, port);
        if unit(draw(self.seed, Stream::Speaks, k, 0)) >= share {
            return None;
        }
        crate::services::well_known(port).or_else(|| {
            let n = crate::services::CATALOGUE.len() as u64;
            let i = draw(self.seed, Stream::Service, k, 0) % n;
            Some(&crate::services::CATALOGUE[i as usize])
        })
    }

    /// Whether the `send`-th transmission (from 0) of the data a service
    /// sends on the connection from `client` to `addr:port` is lost (the
    /// profile's reply loss).
    pub fn data_lost(&self, addr: Ipv4Addr, port: u16, client: SocketAddrV4, send: u32) -> bool {
        let p = self.config.loss.reply;
        let c = (u64::from(u32::from(*client.ip())) << 16) | u64::from(client.port());
        p > 0.0
            && unit(draw(
                self.seed,
                Stream::DataLoss,
                key(addr, port) ^ (c << 1),
                send.into(),
            )) < p
    }

    /// The host's base round-trip time, drawn once per address from the
    /// latency distribution; with `subnet_latency_spread`, drawn once per
    /// /24 and spread by a per-host factor.
    pub fn host_latency(&self, addr: Ipv4Addr) -> Duration {
        let a = u64::from(u32::from(addr));
        let Some(spread) = self.config.hazards.subnet_latency_spread else {
            let u1 = unit_open0(draw(self.seed, Stream::HostLatency, a, 0));
            let u2 = unit(draw(self.seed, Stream::HostLatencyAngle, a, 0));
            return ms(self.config.latency.sample_ms(u1, u2));
        };
        let net = a >> 8;
        let u1 = unit_open0(draw(self.seed, Stream::HostLatency, net, 24));
        let u2 = unit(draw(self.seed, Stream::HostLatencyAngle, net, 24));
        let u = unit(draw(self.seed, Stream::SubnetSpread, a, 0));
        let factor = 1.0 + spread * (2.0 * u - 1.0);
        ms((self.config.latency.sample_ms(u1, u2) * factor).clamp(0.0, MAX_LATENCY_MS))
    }

    /// How long the `attempt`-th SYN (counting from 0) to `addr:port` waits
    /// for its answer: the host's base latency plus this packet's jitter.
    pub fn latency(&self, addr: Ipv4Addr, port: u16, attempt: u32) -> Duration {
        let base = self.host_latency(addr);
        if self.config.jitter_ms == 0.0 {
            return base;
        }
        let u = unit(draw(
            self.seed,
            Stream::Jitter,
            key(addr, port),
            attempt.into(),
        ));
        base + ms(self.config.jitter_ms * u)
    }

    /// Whether the `attempt`-th SYN to `addr:port` is lost on its way.
    pub fn syn_lost(&self, addr: Ipv4Addr, port: u16, attempt: u32) -> bool {
        let p = self.config.loss.syn;
        p > 0.0
            && unit(draw(
                self.seed,
                Stream::SynLoss,
                key(addr, port),
                attempt.into(),
            )) < p
    }

    /// Whether the answer to the `attempt`-th SYN to `addr:port` is lost.
    pub fn reply_lost(&self, addr: Ipv4Addr, port: u16, attempt: u32) -> bool {
        let p = self.config.loss.reply;
        p > 0.0
            && unit(draw(
                self.seed,
                Stream::ReplyLoss,
                key(addr, port),
                attempt.into(),
            )) < p
    }

    /// The initial sequence number of the SYN-ACK to a SYN from `client` to
    /// `server` with sequence number `their_isn`: a hash, so the simulator
    /// keeps no connection state and a retransmitted SYN gets the same ISN.
    pub fn isn(&self, client: SocketAddrV4, server: SocketAddrV4, their_isn: u32) -> u32 {
        let a = (u64::from(u32::from(*client.ip())) << 16) | u64::from(client.port());
        let b = (key(*server.ip(), server.port()) << 32) ^ u64::from(their_isn);
        (draw(self.seed, Stream::Isn, a, b) >> 32) as u32
    }

    /// The truth of one (address, port).
    pub fn truth_of(&self, addr: Ipv4Addr, port: u16) -> Truth {
        let s = self.state(addr, port);
        Truth {
            addr,
            port,
            state: s.port_state(),
            reason: s.reason(),
        }
    }

    /// The truth of every configured host × port, address-major.
    pub fn truth(&self) -> impl Iterator<Item = Truth> + '_ {
        let ports = self.config.ports.as_slice();
        self.config
            .hosts
            .iter()
            .flat_map(move |addr| ports.iter().map(move |&port| self.truth_of(addr, port)))
    }
}

fn ms(v: f64) -> Duration {
    Duration::from_nanos((v * 1e6).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Latency, Preset};

    fn model(preset: Preset, seed: u64) -> Model {
        Model::new(preset.config(), seed).unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_world_and_another_seed_another() {
        let a = model(Preset::InternetLike, 1);
        let b = model(Preset::InternetLike, 1);
        let c = model(Preset::InternetLike, 2);
        let ta: Vec<Truth> = a.truth().take(5000).collect();
        assert_eq!(ta, b.truth().take(5000).collect::<Vec<_>>());
        assert_ne!(ta, c.truth().take(5000).collect::<Vec<_>>());
        let addr = Ipv4Addr::new(198, 18, 3, 4);
        assert_eq!(a.host_latency(addr), b.host_latency(addr));
        assert_eq!(a.latency(addr, 80, 3), b.latency(addr, 80, 3));
    }

    #[test]
    fn state_fractions_match_the_profile() {
        let m = model(Preset::InternetLike, 7);
        let mut counts = [0usize; 5];
        let n = 400_000;
        for t in (0u32..n).map(|i| {
            m.state(
                Ipv4Addr::from(0xC612_0000 + (i / 100)),
                crate::config::TOP_100_PORTS[(i % 100) as usize],
            )
        }) {
            counts[t as usize] += 1;
        }
        let frac = |s: State| counts[s as usize] as f64 / f64::from(n);
        assert!((frac(State::Open) - 0.01).abs() < 0.001);
        assert!((frac(State::Filtered) - 0.03).abs() < 0.002);
        assert!((frac(State::HostUnreach) - 0.0025).abs() < 0.0005);
        assert!((frac(State::AdminProhibited) - 0.0025).abs() < 0.0005);
        assert!((frac(State::Closed) - 0.955).abs() < 0.003);
    }

    #[test]
    fn addresses_outside_the_hosts_are_silent() {
        let m = model(Preset::Far, 1);
        let outside = Ipv4Addr::new(198, 19, 0, 1);
        assert!((1..=1000).all(|p| m.state(outside, p) == State::Filtered));
    }

    #[test]
    fn fixed_latency_is_exact_and_jitter_stays_in_its_band() {
        let far = model(Preset::Far, 1);
        let a = Ipv4Addr::new(198, 18, 9, 9);
        assert_eq!(far.latency(a, 22, 0), Duration::from_millis(250));
        let mut c = Preset::Far.config();
        c.jitter_ms = 10.0;
        let m = Model::new(c, 1).unwrap();
        let lats: Vec<Duration> = (0..200).map(|i| m.latency(a, 22, i)).collect();
        assert!(
            lats.iter()
                .all(|&l| l >= Duration::from_millis(250) && l <= Duration::from_millis(260))
        );
        assert!(lats.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn uniform_latency_stays_in_bounds() {
        let mut c = Preset::Far.config();
        c.latency = Latency::Uniform {
            min_ms: 10.0,
            max_ms: 20.0,
        };
        let m = Model::new(c, 3).unwrap();
        for a in c_hosts(&m).take(2000) {
            let l = m.host_latency(a);
            assert!(l >= Duration::from_millis(10) && l <= Duration::from_millis(20));
        }
    }

    fn c_hosts(m: &Model) -> impl Iterator<Item = Ipv4Addr> + '_ {
        m.config().hosts.iter()
    }

    #[test]
    fn loss_rates_match_the_profile_and_vary_by_attempt() {
        let m = model(Preset::Lossy, 5);
        let a = Ipv4Addr::new(198, 18, 1, 1);
        let n = 100_000u32;
        let syn = (0..n).filter(|&i| m.syn_lost(a, 80, i)).count() as f64 / f64::from(n);
        let reply = (0..n).filter(|&i| m.reply_lost(a, 80, i)).count() as f64 / f64::from(n);
        assert!((syn - 0.05).abs() < 0.005, "{syn}");
        assert!((reply - 0.05).abs() < 0.005, "{reply}");
        let far = model(Preset::Far, 5);
        assert!((0..1000).all(|i| !far.syn_lost(a, 80, i) && !far.reply_lost(a, 80, i)));
    }

    #[test]
    fn isn_is_a_pure_function_of_the_four_tuple_and_their_isn() {
        let m = model(Preset::Far, 1);
        let c = SocketAddrV4::new(Ipv4Addr::new(198, 19, 255, 254), 40000);
        let s = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80);
        assert_eq!(m.isn(c, s, 5), m.isn(c, s, 5));
        assert_ne!(m.isn(c, s, 5), m.isn(c, s, 6));
        let c2 = SocketAddrV4::new(*c.ip(), 40001);
        assert_ne!(m.isn(c, s, 5), m.isn(c2, s, 5));
    }

    #[test]
    fn truth_lines_are_in_fastports_json_shape() {
        let m = model(Preset::Far, 1);
        let t = Truth {
            addr: Ipv4Addr::new(198, 18, 0, 5),
            port: 80,
            state: PortState::Open,
            reason: Reason::SynAck,
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"addr":"198.18.0.5","port":80,"state":"open","reason":"syn-ack"}"#
        );
        assert_eq!(m.truth().count(), 65536 * 100);
        let first = m.truth().next().unwrap();
        assert_eq!((first.addr, first.port), (Ipv4Addr::new(198, 18, 0, 0), 7));
        for s in [
            State::Open,
            State::Closed,
            State::Filtered,
            State::HostUnreach,
            State::AdminProhibited,
        ] {
            assert_eq!(
                serde_json::to_value(s.reason()).unwrap(),
                serde_json::Value::String(s.reason().as_str().into())
            );
        }
        assert_eq!(
            Reason::AdminProhibited.as_seen_by_connect(),
            Reason::HostUnreach
        );
    }
}
