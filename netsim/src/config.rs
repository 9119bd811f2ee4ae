//! What a simulated network is made of, as the user writes it: the address
//! block, the ports, the share of each port behaviour, the latency
//! distribution and the loss. A [`ModelConfig`] is plain data (TOML on disk,
//! or one of the three built-in [`Preset`]s); [`crate::Model`] turns it and a
//! seed into answers.
//!
//! ```toml
//! name = "internet-like"
//! hosts = "198.18.0.0/16"   # inside 198.18.0.0/15
//! ports = "top100"          # or "22,80,8000-8100", or "-" for 1-65535
//! jitter_ms = 2.0           # per packet, uniform in [0, jitter_ms]
//!
//! [fractions]               # of (address, port) pairs; the rest are closed
//! open = 0.01
//! filtered = 0.03
//! host_unreach = 0.0025
//! admin_prohibited = 0.0025
//!
//! [latency]                 # each host's base round-trip time
//! dist = "lognormal"        # or "fixed" (ms), "uniform" (min_ms, max_ms)
//! median_ms = 80.0
//! sigma = 0.8
//!
//! [loss]                    # probability that each packet is dropped
//! syn = 0.005               # our SYN never reaches the host
//! reply = 0.005             # its answer never reaches us
//!
//! [services]                # open ports that complete the handshake and speak
//! share = 0.5               # (ssh, smtp, ftp, pop3, imap greet; http, redis answer)
//! ```
//!
//! A `[hazards]` table (see [`Hazards`]) adds rate limits, middleboxes and
//! per-/24 latency.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, ConfigErrorKind};

/// RFC 2544's benchmark range, the only addresses netsim answers for.
pub const BENCHMARK_RANGE: Cidr = Cidr {
    base: Ipv4Addr::new(198, 18, 0, 0),
    prefix: 15,
};

/// Latencies are capped here so that a lognormal tail stays finite.
pub const MAX_LATENCY_MS: f64 = 60_000.0;

/// nmap's 100 most frequently open TCP ports, most frequent first: the
/// first 100 of FastPort's `TOP_PORTS` (src/targets/services/table.rs,
/// generated from Nmap's `nmap-services`, whose licence that file records),
/// copied so that `--top-ports 100` and `top100` name the same ports.
pub const TOP_100_PORTS: [u16; 100] = [
    80, 23, 443, 21, 22, 25, 3389, 110, 445, 139, 143, 53, //
    135, 3306, 8080, 1723, 111, 995, 993, 5900, 1025, 587, 8888, 199, //
    1720, 465, 548, 113, 81, 6001, 10000, 514, 5060, 179, 1026, 2000, //
    8443, 8000, 32768, 554, 26, 1433, 49152, 2001, 515, 8008, 49154, 1027, //
    5666, 646, 5000, 5631, 631, 49153, 8081, 2049, 88, 79, 5800, 106, //
    2121, 1110, 49155, 6000, 513, 990, 5357, 427, 49156, 543, 544, 5101, //
    144, 7, 389, 8009, 3128, 444, 9999, 5009, 7070, 5190, 3000, 5432, //
    1900, 3986, 13, 1029, 9, 5051, 6646, 49157, 1028, 873, 1755, 2717, //
    4899, 9100, 119, 37,
];

/// An IPv4 address block, `198.18.0.0/16`. A bare address is a `/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    base: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    /// The block `base/prefix`; `base` must have no bits set past the prefix.
    pub fn new(base: Ipv4Addr, prefix: u8) -> Result<Cidr, ConfigError> {
        let text = format!("{base}/{prefix}");
        if prefix > 32 {
            return Err(ConfigError::new(
                "CIDR",
                text,
                ConfigErrorKind::OutOfRange("the prefix length must be at most 32".into()),
            ));
        }
        let cidr = Cidr { base, prefix };
        if u32::from(base) & !cidr.mask() != 0 {
            return Err(ConfigError::new(
                "CIDR",
                text,
                ConfigErrorKind::Syntax(format!(
                    "host bits are set (did you mean {}/{prefix}?)",
                    Ipv4Addr::from(u32::from(base) & cidr.mask())
                )),
            ));
        }
        Ok(cidr)
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The first address.
    pub fn base(&self) -> Ipv4Addr {
        self.base
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses, network and broadcast addresses included.
    pub fn len(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// Never: a block holds at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `addr` is in the block.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.base)
    }

    /// Whether all of `other` is in this block.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.base)
    }

    /// Every address, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let first = u64::from(u32::from(self.base));
        (first..first + self.len()).map(|a| Ipv4Addr::from(a as u32))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Cidr, ConfigError> {
        let syntax = |why: &str| ConfigError::new("CIDR", s, ConfigErrorKind::Syntax(why.into()));
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (
                a,
                p.parse::<u8>()
                    .map_err(|_| syntax("the prefix length is not a number from 0 to 32"))?,
            ),
            None => (s.trim(), 32),
        };
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| syntax("not an IPv4 address (netsim is IPv4 only)"))?;
        Cidr::new(addr, prefix).map_err(|e| ConfigError::new("CIDR", s, e.kind().clone()))
    }
}

impl TryFrom<String> for Cidr {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Cidr, ConfigError> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

/// A set of TCP ports, kept sorted and without repeats.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortSet {
    ports: Vec<u16>,
}

impl PortSet {
    /// The set of `ports` (sorted and deduplicated here); never empty.
    pub fn new(mut ports: Vec<u16>) -> Result<PortSet, ConfigError> {
        ports.sort_unstable();
        ports.dedup();
        if ports.is_empty() {
            return Err(ConfigError::new("port list", "", ConfigErrorKind::Empty));
        }
        Ok(PortSet { ports })
    }

    /// The ports, ascending.
    pub fn as_slice(&self) -> &[u16] {
        &self.ports
    }

    /// How many ports.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Never: a port set holds at least one port.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        self.ports.binary_search(&port).is_ok()
    }
}

impl fmt::Display for PortSet {
    /// The shortest `a-b,c` spelling, which FastPort's and nmap's `-p` accept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.ports.len() {
            let start = self.ports[i];
            let mut j = i;
            while j + 1 < self.ports.len() && self.ports[j + 1] == self.ports[j] + 1 {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if j == i {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{}", self.ports[j])?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

impl FromStr for PortSet {
    type Err = ConfigError;
    /// `top100` (or `topN`, N ≤ 100), `-` (1-65535), or `22,80,8000-8100`.
    fn from_str(s: &str) -> Result<PortSet, ConfigError> {
        let err = |kind| ConfigError::new("port list", s, kind);
        let syntax = |why: String| err(ConfigErrorKind::Syntax(why));
        let spec = s.trim();
        if let Some(n) = spec.strip_prefix("top") {
            let n: usize = n
                .parse()
                .map_err(|_| syntax(format!("{n:?} after \"top\" is not a number")))?;
            if n == 0 || n > TOP_100_PORTS.len() {
                return Err(err(ConfigErrorKind::OutOfRange(
                    "topN takes N from 1 to 100".into(),
                )));
            }
            return PortSet::new(TOP_100_PORTS[..n].to_vec());
        }
        if spec == "-" {
            return PortSet::new((1..=u16::MAX).collect());
        }
        let port = |p: &str| -> Result<u16, ConfigError> {
            match p.trim().parse::<u16>() {
                Ok(0) => Err(err(ConfigErrorKind::OutOfRange(
                    "port 0 is not scannable".into(),
                ))),
                Ok(n) => Ok(n),
                Err(_) => Err(syntax(format!("{p:?} is not a port from 1 to 65535"))),
            }
        };
        let mut ports = Vec::new();
        for item in spec.split(',') {
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (port(a)?, port(b)?);
                    if a > b {
                        return Err(syntax(format!("the range {item:?} is backwards")));
                    }
                    ports.extend(a..=b);
                }
                None => ports.push(port(item)?),
            }
        }
        PortSet::new(ports).map_err(|e| err(e.kind().clone()))
    }
}

impl TryFrom<String> for PortSet {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<PortSet, ConfigError> {
        s.parse()
    }
}

impl From<PortSet> for String {
    fn from(p: PortSet) -> String {
        p.to_string()
    }
}

/// The share of (address, port) pairs that behave each way. The rest are
/// closed (answer RST).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fractions {
    /// Answer SYN-ACK.
    pub open: f64,
    /// Answer nothing.
    pub filtered: f64,
    /// Answer ICMP destination unreachable, host unreachable (code 1).
    pub host_unreach: f64,
    /// Answer ICMP destination unreachable, communication administratively
    /// prohibited (code 13).
    pub admin_prohibited: f64,
}

/// The distribution of each host's base round-trip time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum Latency {
    /// Every host answers after `ms`.
    Fixed {
        /// Milliseconds.
        ms: f64,
    },
    /// Uniform in `[min_ms, max_ms]`.
    Uniform {
        /// Lower bound, milliseconds.
        min_ms: f64,
        /// Upper bound, milliseconds.
        max_ms: f64,
    },
    /// `median_ms · e^(sigma·Z)` for a standard normal Z: a long right tail,
    /// as measured Internet round-trip times have. Capped at [`MAX_LATENCY_MS`].
    Lognormal {
        /// The median, milliseconds.
        median_ms: f64,
        /// The standard deviation of the logarithm.
        sigma: f64,
    },
}

impl Latency {
    /// The latency in milliseconds for two independent uniform draws, `u1` in
    /// `(0, 1]` and `u2` in `[0, 1)` (Box–Muller for the lognormal).
    pub fn sample_ms(&self, u1: f64, u2: f64) -> f64 {
        let ms = match *self {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms } => min_ms + (max_ms - min_ms) * u2,
            Latency::Lognormal { median_ms, sigma } => {
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                median_ms * (sigma * z).exp()
            }
        };
        ms.clamp(0.0, MAX_LATENCY_MS)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |why: &str| {
            Err(ConfigError::new(
                "latency",
                format!("{self:?}"),
                ConfigErrorKind::OutOfRange(why.into()),
            ))
        };
        let ok_ms = |v: f64| v.is_finite() && (0.0..=MAX_LATENCY_MS).contains(&v);
        match *self {
            Latency::Fixed { ms } if !ok_ms(ms) => bad("ms must be from 0 to 60000"),
            Latency::Uniform { min_ms, max_ms } if !ok_ms(min_ms) || !ok_ms(max_ms) => {
                bad("min_ms and max_ms must be from 0 to 60000")
            }
            Latency::Uniform { min_ms, max_ms } if min_ms > max_ms => {
                bad("min_ms must not exceed max_ms")
            }
            Latency::Lognormal { median_ms, sigma }
                if !ok_ms(median_ms) || !sigma.is_finite() || !(0.0..=5.0).contains(&sigma) =>
            {
                bad("median_ms must be from 0 to 60000 and sigma from 0 to 5")
            }
            _ => Ok(()),
        }
    }
}

/// The probability that each packet is lost on the way.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Loss {
    /// A SYN never reaches the host (so it never answers that SYN).
    pub syn: f64,
    /// The host's answer (SYN-ACK, RST or ICMP) never reaches us.
    pub reply: f64,
}

/// What real networks do that a clean model would not: rate limits on
/// answers, middleboxes and latency shared by a subnet. All off by default.
///
/// ```toml
/// [hazards]
/// icmp_unreach_per_s = 10       # each /24's router: at most 10 ICMP unreachables a second
/// rst_per_s = 50                # each host: at most 50 RSTs a second
/// syn_ack_all_ports = 0.01      # 1 % of hosts sit behind a middlebox answering SYN-ACK on every port
/// subnet_latency_spread = 0.1   # a /24 shares one base latency; its hosts vary by ±10 %
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hazards {
    /// The router in front of each /24 sends at most this many ICMP
    /// unreachables per second (counted in whole seconds of the run, by the
    /// time the answer leaves); the rest are not sent. 0: no limit.
    pub icmp_unreach_per_s: u32,
    /// Each host sends at most this many RSTs to SYNs per second; the rest
    /// are not sent. 0: no limit.
    pub rst_per_s: u32,
    /// The share of hosts behind a middlebox that answers SYN-ACK on every
    /// port (so a scan sees every port open: `Model::middlebox`).
    pub syn_ack_all_ports: f64,
    /// When set, the base latency is drawn once per /24 and each host's is
    /// that times `1 + spread·u`, u uniform in [-1, 1): latency correlated
    /// by subnet, as hosts behind one path are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_latency_spread: Option<f64>,
}

impl Hazards {
    /// Whether any hazard is on.
    pub fn any(&self) -> bool {
        *self != Hazards::default()
    }
}

/// Which open ports complete the handshake and speak (see
/// [`crate::services`]).
///
/// ```toml
/// [services]
/// share = 0.5   # half the open ports play a banner from the catalogue
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Services {
    /// The share of open ports (middleboxes excepted) that speak.
    pub share: f64,
}

/// A simulated network, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A name for summaries and records.
    #[serde(default = "custom")]
    pub name: String,
    /// The simulated hosts: every address in the block is one.
    pub hosts: Cidr,
    /// The ports `truth` lists and `{ports}` stands for; the model answers
    /// on every port.
    pub ports: PortSet,
    /// How ports behave.
    #[serde(default)]
    pub fractions: Fractions,
    /// Each host's base round-trip time.
    pub latency: Latency,
    /// Per-packet jitter added to the base: uniform in `[0, jitter_ms]`.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Packet loss.
    #[serde(default)]
    pub loss: Loss,
    /// Real-network hazards (all off unless asked for).
    #[serde(default, skip_serializing_if = "is_default")]
    pub hazards: Hazards,
    /// Open ports that speak.
    #[serde(default, skip_serializing_if = "is_default")]
    pub services: Services,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn custom() -> String {
    "custom".into()
}

/// The built-in profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// 198.18.0.0/16 × the top 100 ports: 1 % open, 3 % filtered, 0.5 %
    /// unreachable (half host-unreachable, half admin-prohibited), lognormal
    /// latency with median 80 ms and a tail past 500 ms (p99 ≈ 514 ms),
    /// 2 ms jitter, 0.5 % loss each way.
    InternetLike,
    /// As internet-like, but every host 250 ms away and no loss.
    Far,
    /// As internet-like, but 5 % loss each way.
    Lossy,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 3] = [Preset::InternetLike, Preset::Far, Preset::Lossy];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::InternetLike => "internet-like",
            Preset::Far => "far",
            Preset::Lossy => "lossy",
        }
    }

    /// The preset called `name`.
    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Its configuration.
    pub fn config(self) -> ModelConfig {
        let internet = ModelConfig {
            name: self.name().into(),
            hosts: Cidr {
                base: Ipv4Addr::new(198, 18, 0, 0),
                prefix: 16,
            },
            ports: PortSet::new(TOP_100_PORTS.to_vec()).expect("100 ports"),
            fractions: Fractions {
                open: 0.01,
                filtered: 0.03,
                host_unreach: 0.0025,
                admin_prohibited: 0.0025,
            },
            latency: Latency::Lognormal {
                median_ms: 80.0,
                sigma: 0.8,
            },
            jitter_ms: 2.0,
            loss: Loss {
                syn: 0.005,
                reply: 0.005,
            },
            hazards: Hazards::default(),
            services: Services { share: 0.5 },
        };
        match self {
            Preset::InternetLike => internet,
            Preset::Far => ModelConfig {
                latency: Latency::Fixed { ms: 250.0 },
                jitter_ms: 0.0,
                loss: Loss::default(),
                ..internet
            },
            Preset::Lossy => ModelConfig {
                loss: Loss {
                    syn: 0.05,
                    reply: 0.05,
                },
                ..internet
            },
        }
    }
}

impl ModelConfig {
    /// A built-in profile by name, else a TOML file at that path.
    pub fn load(profile: &str) -> Result<ModelConfig, ConfigError> {
        if let Some(p) = Preset::from_name(profile) {
            return Ok(p.config());
        }
        let text = std::fs::read_to_string(profile).map_err(|e| {
            ConfigError::new(
                "profile",
                profile,
                ConfigErrorKind::UnknownProfile(e.to_string()),
            )
        })?;
        ModelConfig::from_toml(&text).map_err(|e| match e.kind() {
            ConfigErrorKind::Syntax(why) => {
                ConfigError::new("profile", profile, ConfigErrorKind::Syntax(why.clone()))
            }
            _ => e,
        })
    }

    /// Parses and validates a TOML profile.
    pub fn from_toml(text: &str) -> Result<ModelConfig, ConfigError> {
        let config: ModelConfig = toml::from_str(text).map_err(|e| {
            ConfigError::new(
                "profile",
                "<toml>",
                ConfigErrorKind::Syntax(e.message().to_string()),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The profile as TOML (what [`ModelConfig::from_toml`] reads back).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a model config is always representable in TOML")
    }

    /// Checks every number is in its range and the hosts are in 198.18.0.0/15.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !BENCHMARK_RANGE.covers(&self.hosts) {
            return Err(ConfigError::new(
                "hosts",
                self.hosts.to_string(),
                ConfigErrorKind::OutsideBenchmarkRange,
            ));
        }
        let prob = |what: &'static str, v: f64| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    what,
                    v.to_string(),
                    ConfigErrorKind::OutOfRange("must be from 0 to 1".into()),
                ))
            }
        };
        let f = &self.fractions;
        prob("fractions.open", f.open)?;
        prob("fractions.filtered", f.filtered)?;
        prob("fractions.host_unreach", f.host_unreach)?;
        prob("fractions.admin_prohibited", f.admin_prohibited)?;
        let sum = f.open + f.filtered + f.host_unreach + f.admin_prohibited;
        if sum > 1.0 + 1e-9 {
            return Err(ConfigError::new(
                "fractions",
                format!("{f:?}"),
                ConfigErrorKind::OutOfRange(format!("they add up to {sum}, more than 1")),
            ));
        }
        prob("loss.syn", self.loss.syn)?;
        prob("loss.reply", self.loss.reply)?;
        if !self.jitter_ms.is_finite() || !(0.0..=MAX_LATENCY_MS).contains(&self.jitter_ms) {
            return Err(ConfigError::new(
                "jitter_ms",
                self.jitter_ms.to_string(),
                ConfigErrorKind::OutOfRange("must be from 0 to 60000".into()),
            ));
        }
        prob("hazards.syn_ack_all_ports", self.hazards.syn_ack_all_ports)?;
        prob("services.share", self.services.share)?;
        if let Some(spread) = self.hazards.subnet_latency_spread {
            prob("hazards.subnet_latency_spread", spread)?;
        }
        self.latency.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_prints_and_contains() {
        let c: Cidr = "198.18.0.0/16".parse().unwrap();
        assert_eq!(c.to_string(), "198.18.0.0/16");
        assert_eq!(c.len(), 65536);
        assert!(c.contains(Ipv4Addr::new(198, 18, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(198, 19, 0, 0)));
        assert!(BENCHMARK_RANGE.covers(&c));
        let one: Cidr = "198.18.0.5".parse().unwrap();
        assert_eq!(
            one.iter().collect::<Vec<_>>(),
            [Ipv4Addr::new(198, 18, 0, 5)]
        );
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.len(), 1 << 32);
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn cidr_errors_name_the_input() {
        let e = "198.18.0.1/16".parse::<Cidr>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid CIDR \"198.18.0.1/16\": host bits are set (did you mean 198.18.0.0/16?)"
        );
        assert!("198.18.0.0/33".parse::<Cidr>().is_err());
        assert!("::1/128".parse::<Cidr>().is_err());
        assert!("198.18.0.0/x".parse::<Cidr>().is_err());
    }

    #[test]
    fn port_sets_parse_and_print_compactly() {
        let p: PortSet = "80,22,1-3,3,8000-8002".parse().unwrap();
        assert_eq!(p.as_slice(), [1, 2, 3, 22, 80, 8000, 8001, 8002]);
        assert_eq!(p.to_string(), "1-3,22,80,8000-8002");
        assert_eq!("top100".parse::<PortSet>().unwrap().len(), 100);
        assert_eq!("top3".parse::<PortSet>().unwrap().as_slice(), [23, 80, 443]);
        assert_eq!("-".parse::<PortSet>().unwrap().len(), 65535);
        for bad in ["", "0", "70000", "5-1", "top0", "top101", "a"] {
            assert!(bad.parse::<PortSet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn presets_are_valid_and_round_trip_through_toml() {
        for p in Preset::ALL {
            let c = p.config();
            c.validate().unwrap();
            assert_eq!(ModelConfig::from_toml(&c.to_toml()).unwrap(), c);
            assert_eq!(ModelConfig::load(p.name()).unwrap(), c);
        }
    }

    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let c = ModelConfig::from_toml(&text).unwrap();
        assert_eq!(c, Preset::InternetLike.config());
    }

    #[test]
    fn bad_profiles_are_refused() {
        let base = Preset::Far.config();
        let mut c = base.clone();
        c.hosts = "240.0.0.0/8".parse().unwrap();
        assert!(c.validate().is_err());
        let mut c = base.clone();
        c.fractions.open = 0.9;
        c.fractions.filtered = 0.2;
        assert!(c.validate().is_err());
        let mut c = base.clone();
        c.loss.syn = 1.5;
        assert!(c.validate().is_err());
        let mut c = base.clone();
        c.latency = Latency::Uniform {
            min_ms: 5.0,
            max_ms: 1.0,
        };
        assert!(c.validate().is_err());
        assert!(ModelConfig::from_toml("hosts = \"198.18.0.0/24\"\nports = \"80\"\nbogus = 1\n[latency]\ndist = \"fixed\"\nms = 1\n").is_err());
        assert!(ModelConfig::load("no-such-profile").is_err());
    }

    #[test]
    fn lognormal_median_and_tail_match_the_internet_like_preset() {
        let lat = Preset::InternetLike.config().latency;
        let mut v: Vec<f64> = (0..20_000u64)
            .map(|i| {
                let h = crate::hash::mix(i);
                lat.sample_ms(
                    crate::hash::unit_open0(h),
                    crate::hash::unit(crate::hash::mix(h)),
                )
            })
            .collect();
        v.sort_by(f64::total_cmp);
        let p50 = v[v.len() / 2];
        let p99 = v[v.len() * 99 / 100];
        assert!((75.0..85.0).contains(&p50), "{p50}");
        assert!(p99 > 450.0 && p99 < 600.0, "{p99}");
    }
}
