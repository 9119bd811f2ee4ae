//! A world: a scenario made concrete by a seed. Pure: it decides which
//! (address, port)s are open, dropped or rejected, what every probe must find,
//! and which nftables rules, routes and listeners make that true. `netns.rs`
//! then makes it so inside a private network namespace.
//!
//! The mechanisms and what a connect scan sees through each (measured; see
//! [`crate::truth::classify_connect`]):
//!
//! | mechanism                                   | errno           | truth                     |
//! |---------------------------------------------|-----------------|---------------------------|
//! | listener on the (address, port)             | 0               | open/syn-ack              |
//! | nothing listening, or nft `reject with tcp reset` | ECONNREFUSED | closed/conn-refused     |
//! | nft `drop` in the output hook               | (none: timeout) | filtered/no-response      |
//! | nft `reject with icmp type host-unreachable`| EHOSTUNREACH    | filtered/host-unreach     |
//! | nft `reject with icmp type admin-prohibited`| EHOSTUNREACH    | filtered/host-unreach     |
//! | nft `reject with icmp type net-unreachable` | ENETUNREACH     | filtered/net-unreach      |
//! | `unreachable` route                         | EHOSTUNREACH    | filtered/host-unreach     |
//! | `prohibit` route                            | EACCES          | filtered/admin-prohibited |
//! | route out of a veth end with ARP off        | (none: timeout) | filtered/no-response      |
//! | no route (198.18.0.0/15 outside every `[[route]]`), 127.255.255.255 | ENETUNREACH | filtered/net-unreach |
//!
//! ICMP errors are only that prompt because the lab lifts the namespace's
//! ICMP rate limits (`netns.rs`); a blocking connect still sees an nft reject
//! only after the 1 s SYN retransmit, or through `SO_ERROR` (see
//! [`crate::truth::classify_connect`]).
//!
//! (A `blackhole` route gives EINVAL, which no scanner can classify, and the
//! `dummy` link type is not available in every kernel; the lab uses neither.)
//!
//! A scenario with a `[netsim]` table builds a different kind of world: no
//! listeners, rules or routes, but a [`fastport_netsim::Model`] that decides
//! every (address, port) and that `netns.rs` serves from a TUN device with
//! its latency and loss. Its truth is the model's, as a connect scan can see
//! it: ICMP code 13 (admin-prohibited) reaches `connect()` as `EHOSTUNREACH`,
//! so it is filtered/host-unreach ([`fastport_netsim::SeenByConnect::as_seen_by_connect`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;

use fastport_netsim::{Model, ModelConfig, NetConfig};

use crate::LabError;
use crate::rng::SplitMix64;
use crate::scenario::{FilterAction, NetsimSpec, OpenSpec, RouteKind, Scenario, merge};
use crate::targets::{AddrRange, PortSet, parse_hosts};
use crate::truth::{Expect, HostClass, Reason, Truth};

/// The kernel's default ephemeral port range (`net.ipv4.ip_local_port_range`).
pub const EPHEMERAL: RangeInclusive<u16> = 32768..=60999;
/// The nftables table the lab owns.
pub const NFT_TABLE: &str = "fastport_lab";
/// The veth end that silent routes point at (ARP off, so nothing ever answers).
pub const SILENT_DEVICE: &str = "fpl-silent";
/// Its peer, up but without addresses.
pub const SILENT_PEER: &str = "fpl-peer";

/// Largest number of local (host, port) candidates a seeded pick will enumerate.
const MAX_CANDIDATES: usize = 1 << 24;
/// Largest number of hosts a world may scan ("up to a /16", with room for extras).
const MAX_HOSTS: u64 = 1 << 17;

/// One nftables rule of a world.
#[derive(Debug, Clone, PartialEq)]
pub struct NftRule {
    /// The destination addresses it matches.
    pub hosts: Vec<AddrRange>,
    /// The destination ports it matches.
    pub ports: PortSet,
    /// Its verdict.
    pub action: FilterAction,
}

/// One route of a world.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The network address.
    pub net: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
    /// What it does.
    pub kind: RouteKind,
}

/// A scenario made concrete by a seed.
#[derive(Debug, Clone)]
pub struct World {
    /// The scenario, at its scale.
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    /// What every probe must find.
    pub truth: Truth,
    /// The (address, port)s that get a listener, sorted.
    pub listeners: Vec<SocketAddrV4>,
    /// nftables rules, in evaluation order.
    pub rules: Vec<NftRule>,
    /// Routes.
    pub routes: Vec<Route>,
    /// The simulated network serving a `[netsim]` world (no listeners,
    /// rules or routes then).
    pub netsim: Option<Model>,
}

fn scenario_error(s: &Scenario, message: impl Into<String>) -> LabError {
    LabError::Scenario {
        origin: s.name.clone(),
        message: message.into(),
    }
}

fn in_range(net: &str, r: &AddrRange) -> bool {
    net.parse::<AddrRange>().is_ok_and(|n| n.covers(r))
}

/// The truth of a filter verdict.
pub fn filter_expect(action: FilterAction) -> Expect {
    match action {
        FilterAction::Drop => Expect::filtered(Reason::NoResponse),
        FilterAction::HostUnreach | FilterAction::AdminProhibited => {
            Expect::filtered(Reason::HostUnreach)
        }
        FilterAction::NetUnreach => Expect::filtered(Reason::NetUnreach),
        FilterAction::Reset => Expect::CLOSED,
    }
}

/// The truth of every port behind a route.
pub fn route_expect(kind: RouteKind) -> Expect {
    match kind {
        RouteKind::Unreachable => Expect::filtered(Reason::HostUnreach),
        RouteKind::Prohibit => Expect::filtered(Reason::AdminProhibited),
        RouteKind::Silent => Expect::filtered(Reason::NoResponse),
        RouteKind::Local => Expect::CLOSED,
    }
}

/// The truth of a netsim (address, port), as a connect scan sees it.
pub fn netsim_expect(t: fastport_netsim::Truth) -> Expect {
    use fastport_netsim::SeenByConnect;
    let reason = Reason::from(t.reason.as_seen_by_connect());
    match t.state {
        fastport_netsim::PortState::Open => Expect::OPEN,
        fastport_netsim::PortState::Closed => Expect::CLOSED,
        fastport_netsim::PortState::Filtered => Expect::filtered(reason),
    }
}

/// Sorts and merges overlapping or adjacent ranges.
fn merge_ranges(mut v: Vec<AddrRange>) -> Vec<AddrRange> {
    v.sort();
    let mut out: Vec<AddrRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last)
                if u64::from(u32::from(r.first())) <= u64::from(u32::from(last.last())) + 1 =>
            {
                if r.last() > last.last() {
                    *last = AddrRange::new(last.first(), r.last()).expect("ordered");
                }
            }
            _ => out.push(r),
        }
    }
    out
}

fn intersect(a: &AddrRange, b: &AddrRange) -> Option<AddrRange> {
    AddrRange::new(a.first().max(b.first()), a.last().min(b.last()))
}

impl World {
    /// Builds the world of `scenario` for `seed`. Same inputs, same world.
    pub fn build(scenario: &Scenario, seed: u64) -> Result<World, LabError> {
        let s = scenario;
        if let Some(spec) = &s.netsim {
            return World::build_netsim(s, spec, seed);
        }
        let err = |m: String| scenario_error(s, m);
        let hosts = parse_hosts(&s.hosts).map_err(|e| err(format!("hosts: {e}")))?;
        if hosts.is_empty() {
            return Err(err("hosts: empty".into()));
        }
        // Safety net on top of the namespace: worlds only ever hold loopback
        // and benchmarking-range addresses.
        for h in &hosts {
            if !in_range("127.0.0.0/8", h) && !in_range("198.18.0.0/15", h) {
                return Err(err(format!(
                    "host {h} is outside 127.0.0.0/8 and 198.18.0.0/15"
                )));
            }
        }
        let host_count: u64 = hosts.iter().map(AddrRange::len).sum();
        if host_count > MAX_HOSTS {
            return Err(err(format!(
                "{host_count} hosts; a world holds at most {MAX_HOSTS}"
            )));
        }
        let ports: PortSet = s.ports.parse().map_err(|e| err(format!("ports: {e}")))?;

        let mut routes = Vec::new();
        for r in &s.routes {
            let range: AddrRange = r
                .prefix
                .parse()
                .map_err(|e| err(format!("route prefix: {e}")))?;
            let blocks = range.cidrs();
            if blocks.len() != 1 || !in_range("198.18.0.0/15", &range) {
                return Err(err(format!(
                    "route prefix {} must be one CIDR block inside 198.18.0.0/15",
                    r.prefix
                )));
            }
            routes.push(Route {
                net: blocks[0].0,
                prefix: blocks[0].1,
                kind: r.kind,
            });
        }

        // Host classes, later ones winning: unrouted benchmarking addresses,
        // then each route, then the loopback broadcast address.
        let bench = "198.18.0.0/15".parse::<AddrRange>().expect("literal");
        let mut classes = vec![HostClass {
            range: bench,
            default: Expect::filtered(Reason::NetUnreach),
        }];
        for r in &routes {
            classes.push(HostClass {
                range: AddrRange::cidr(r.net, r.prefix).expect("valid prefix"),
                default: route_expect(r.kind),
            });
        }
        classes.push(HostClass {
            range: AddrRange::single(Ipv4Addr::new(127, 255, 255, 255)),
            default: Expect::filtered(Reason::NetUnreach),
        });
        let mut truth = Truth {
            hosts: hosts.clone(),
            ports: ports.clone(),
            classes,
            exceptions: HashMap::new(),
        };

        // The local part of the scan: where listeners and nft rules make sense.
        let mut local_ranges = Vec::new();
        let loopback = "127.0.0.0/8".parse::<AddrRange>().expect("literal");
        for h in &hosts {
            if let Some(i) = intersect(h, &loopback) {
                local_ranges.push(i);
            }
            for r in routes.iter().filter(|r| r.kind == RouteKind::Local) {
                let block = AddrRange::cidr(r.net, r.prefix).expect("valid prefix");
                if let Some(i) = intersect(h, &block) {
                    local_ranges.push(i);
                }
            }
        }
        let local_ranges = merge_ranges(local_ranges);
        let class_list = truth.classes.clone();
        let is_local = move |a: Ipv4Addr| {
            class_list
                .iter()
                .rev()
                .find(|c| c.range.contains(a))
                .is_none_or(|c| c.default == Expect::CLOSED)
        };

        let mut rng = SplitMix64::new(seed);

        // Filters first, on disjoint seeded port sets, so listeners never hide behind one.
        let mut rules = Vec::new();
        let mut used_ports: Vec<u16> = Vec::new();
        for (i, f) in s.filters.iter().enumerate() {
            let rule_hosts = match &f.hosts {
                Some(h) => {
                    let h = parse_hosts(h).map_err(|e| err(format!("filter {i} hosts: {e}")))?;
                    for r in &h {
                        if !r.iter().all(&is_local) {
                            return Err(err(format!(
                                "filter {i}: host {r} is not local (loopback or a `local` route)"
                            )));
                        }
                    }
                    merge_ranges(h)
                }
                None => local_ranges.clone(),
            };
            let rule_ports = match (&f.ports, f.count) {
                (Some(p), None) => p
                    .parse::<PortSet>()
                    .map_err(|e| err(format!("filter {i} ports: {e}")))?,
                (None, Some(count)) => {
                    let mut pool: Vec<u16> = ports
                        .iter()
                        .filter(|p| used_ports.binary_search(p).is_err())
                        .collect();
                    if count > pool.len() {
                        return Err(err(format!(
                            "filter {i}: {count} ports wanted, {} left",
                            pool.len()
                        )));
                    }
                    PortSet::from_ports(rng.choose(&mut pool, count).iter().copied())
                }
                _ => {
                    return Err(err(format!(
                        "filter {i}: give exactly one of `count` and `ports`"
                    )));
                }
            };
            used_ports.extend(rule_ports.iter());
            used_ports.sort_unstable();
            used_ports.dedup();
            let expect = filter_expect(f.action);
            for h in &rule_hosts {
                for sub in hosts.iter().filter_map(|sh| intersect(sh, h)) {
                    for addr in sub.iter() {
                        for port in rule_ports.iter().filter(|p| ports.contains(*p)) {
                            // nft evaluates rules in order: the first match decides.
                            truth
                                .exceptions
                                .entry(SocketAddrV4::new(addr, port))
                                .or_insert_with(|| expect.clone());
                        }
                    }
                }
            }
            rules.push(NftRule {
                hosts: rule_hosts,
                ports: rule_ports,
                action: f.action,
            });
        }

        // Then listeners, among the local (host, port)s no rule touches.
        let open_hosts = match &s.open.hosts {
            Some(h) => {
                let h = parse_hosts(h).map_err(|e| err(format!("open hosts: {e}")))?;
                merge_ranges(
                    local_ranges
                        .iter()
                        .flat_map(|l| h.iter().filter_map(|r| intersect(l, r)))
                        .collect(),
                )
            }
            None => local_ranges.clone(),
        };
        let local_count: u64 =
            open_hosts.iter().map(AddrRange::len).sum::<u64>() * ports.len() as u64;
        let listeners: Vec<SocketAddrV4> = if let Some(p) = &s.open.ports {
            let open_ports: PortSet = p.parse().map_err(|e| err(format!("open ports: {e}")))?;
            let mut v = Vec::new();
            for h in &open_hosts {
                for addr in h.iter().filter(|a| is_local(*a)) {
                    for port in open_ports.iter().filter(|p| ports.contains(*p)) {
                        let sa = SocketAddrV4::new(addr, port);
                        if truth.exceptions.contains_key(&sa) {
                            return Err(err(format!("open port {sa} is also filtered")));
                        }
                        v.push(sa);
                    }
                }
            }
            v
        } else {
            if local_count > MAX_CANDIDATES as u64 {
                return Err(err(format!(
                    "{local_count} local (host, port)s; seeded picks enumerate at most {MAX_CANDIDATES}"
                )));
            }
            let mut ephemeral = Vec::new();
            let mut other = Vec::new();
            for h in &open_hosts {
                for addr in h.iter().filter(|a| is_local(*a)) {
                    for port in ports.iter() {
                        let sa = SocketAddrV4::new(addr, port);
                        if truth.exceptions.contains_key(&sa) {
                            continue;
                        }
                        if EPHEMERAL.contains(&port) {
                            ephemeral.push(sa);
                        } else {
                            other.push(sa);
                        }
                    }
                }
            }
            let candidates = (ephemeral.len() + other.len()) as u64;
            let count = match (s.open.count, s.open.fraction) {
                (Some(c), None) => c,
                (None, Some(f)) if (0.0..=1.0).contains(&f) => {
                    (f * candidates as f64).round() as u64
                }
                (None, None) => 0,
                _ => {
                    return Err(err(
                        "open: give at most one of `count` and `fraction` (in 0..=1)".to_string(),
                    ));
                }
            };
            let want_ephemeral = s.open.ephemeral;
            if want_ephemeral > count {
                return Err(err(format!(
                    "open: ephemeral = {want_ephemeral} exceeds count = {count}"
                )));
            }
            let mut v = Vec::new();
            if s.open.count.is_some() || s.open.ephemeral > 0 {
                // An exact split: `ephemeral` inside the range, the rest outside it
                // (or anywhere, when nothing outside it is scanned).
                if want_ephemeral as usize > ephemeral.len() {
                    return Err(err(format!(
                        "open: {want_ephemeral} ephemeral listeners wanted, {} candidates",
                        ephemeral.len()
                    )));
                }
                v.extend_from_slice(rng.choose(&mut ephemeral, want_ephemeral as usize));
                let rest = (count - want_ephemeral) as usize;
                let pool = if other.is_empty() {
                    &mut ephemeral[want_ephemeral as usize..]
                } else {
                    &mut other[..]
                };
                if rest > pool.len() {
                    return Err(err(format!(
                        "open: {rest} more listeners wanted, {} candidates",
                        pool.len()
                    )));
                }
                v.extend_from_slice(rng.choose(pool, rest));
            } else {
                let mut all = ephemeral;
                all.extend(other);
                v.extend_from_slice(rng.choose(&mut all, count as usize));
            }
            v
        };
        let mut listeners = listeners;
        listeners.sort_unstable();
        listeners.dedup();
        for sa in &listeners {
            truth.exceptions.insert(*sa, Expect::OPEN);
        }
        // Exceptions equal to the host default carry no information (e.g. reset rules).
        let defaults: Vec<SocketAddrV4> = truth
            .exceptions
            .iter()
            .filter(|(sa, e)| truth.host_default(*sa.ip()) == *e)
            .map(|(sa, _)| *sa)
            .collect();
        for sa in defaults {
            truth.exceptions.remove(&sa);
        }

        Ok(World {
            scenario: s.clone(),
            seed,
            truth,
            listeners,
            rules,
            routes,
            netsim: None,
        })
    }

    /// A world netsim serves: the scenario's hosts (one CIDR block) and
    /// ports over the `[netsim]` profile; the truth is the model's.
    fn build_netsim(s: &Scenario, spec: &NetsimSpec, seed: u64) -> Result<World, LabError> {
        let err = |m: String| scenario_error(s, m);
        if s.open != OpenSpec::default() || !s.filters.is_empty() || !s.routes.is_empty() {
            return Err(err(
                "a [netsim] world has no [open], [[filter]] or [[route]]: its profile decides every port".into(),
            ));
        }
        let [hosts] = s.hosts.as_slice() else {
            return Err(err(format!(
                "a [netsim] world's hosts are one CIDR block, not {:?}",
                s.hosts
            )));
        };
        let base = ModelConfig::load(&spec.profile).map_err(|e| err(format!("netsim: {e}")))?;
        let mut table: toml::Table = toml::from_str(&base.to_toml())
            .map_err(|e| err(format!("netsim profile {}: {e}", spec.profile)))?;
        merge(&mut table, spec.set.clone());
        table.insert("hosts".into(), hosts.clone().into());
        table.insert("ports".into(), s.ports.clone().into());
        let config: ModelConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| err(format!("netsim: {}", e.message())))?;
        let model = Model::new(config, seed).map_err(|e| err(format!("netsim: {e}")))?;
        let cidr = model.config().hosts;
        let source = NetConfig::default().source;
        if cidr.contains(source) {
            return Err(err(format!(
                "netsim hosts {cidr} hold the scanner's source address {source}; use a block inside 198.18.0.0/16"
            )));
        }
        let range = AddrRange::cidr(cidr.base(), cidr.prefix()).expect("a valid CIDR block");
        let ports = PortSet::from_ports(model.config().ports.as_slice().iter().copied());
        let exceptions = model
            .truth()
            .map(|t| (SocketAddrV4::new(t.addr, t.port), netsim_expect(t)))
            .filter(|(_, e)| *e != Expect::CLOSED)
            .collect();
        let truth = Truth {
            hosts: vec![range],
            ports,
            classes: vec![HostClass {
                range,
                default: Expect::CLOSED,
            }],
            exceptions,
        };
        Ok(World {
            scenario: s.clone(),
            seed,
            truth,
            listeners: Vec::new(),
            rules: Vec::new(),
            routes: Vec::new(),
            netsim: Some(model),
        })
    }

    /// The scan targets, spelled as CIDR blocks and addresses.
    pub fn targets(&self) -> Vec<String> {
        self.truth
            .hosts
            .iter()
            .flat_map(AddrRange::to_cidr_strings)
            .collect()
    }

    /// The nftables ruleset (for `nft -f -`), or `None` when the world has no rule.
    pub fn nft_ruleset(&self) -> Option<String> {
        if self.rules.is_empty() {
            return None;
        }
        let mut out = format!(
            "table inet {NFT_TABLE} {{\n    chain output {{\n        type filter hook output priority 0; policy accept;\n"
        );
        for r in &self.rules {
            let hosts: Vec<String> = r
                .hosts
                .iter()
                .map(|h| {
                    if h.len() == 1 {
                        h.first().to_string()
                    } else {
                        format!("{}-{}", h.first(), h.last())
                    }
                })
                .collect();
            let ports: Vec<String> = r
                .ports
                .ranges()
                .iter()
                .map(|p| {
                    if p.start() == p.end() {
                        p.start().to_string()
                    } else {
                        format!("{}-{}", p.start(), p.end())
                    }
                })
                .collect();
            let verdict = match r.action {
                FilterAction::Drop => "drop",
                FilterAction::HostUnreach => "reject with icmp type host-unreachable",
                FilterAction::AdminProhibited => "reject with icmp type admin-prohibited",
                FilterAction::NetUnreach => "reject with icmp type net-unreachable",
                FilterAction::Reset => "reject with tcp reset",
            };
            let _ = writeln!(
                out,
                "        ip daddr {{ {} }} tcp dport {{ {} }} {verdict}",
                hosts.join(", "),
                ports.join(", ")
            );
        }
        out.push_str("    }\n}\n");
        Some(out)
    }

    /// Commands for `ip -batch -` that make the world's routes and devices.
    pub fn ip_batch(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.routes.iter().any(|r| r.kind == RouteKind::Silent) {
            out.push(format!(
                "link add {SILENT_DEVICE} type veth peer name {SILENT_PEER}"
            ));
            out.push(format!("link set {SILENT_DEVICE} arp off up"));
            out.push(format!("link set {SILENT_PEER} up"));
        }
        for r in &self.routes {
            let p = format!("{}/{}", r.net, r.prefix);
            out.push(match r.kind {
                RouteKind::Unreachable => format!("route add unreachable {p}"),
                RouteKind::Prohibit => format!("route add prohibit {p}"),
                RouteKind::Silent => format!("route add {p} dev {SILENT_DEVICE}"),
                RouteKind::Local => format!("route add table local local {p} dev lo"),
            });
        }
        out
    }

    /// The system tools building this world needs.
    pub fn tools(&self) -> Vec<&'static str> {
        let mut t = vec!["ip"];
        if !self.rules.is_empty() {
            t.push("nft");
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::FULL;
    use crate::truth::State;

    fn world(text: &str, seed: u64) -> World {
        World::build(&Scenario::parse(text, FULL, "t").unwrap(), seed).unwrap()
    }

    #[test]
    fn filters_and_listeners_are_disjoint_and_counted() {
        let w = world(
            r#"name = "t"
               hosts = ["127.0.0.1"]
               ports = "1-1000"
               open = { count = 7 }
               filter = [{ action = "drop", count = 100 }, { action = "host-unreach", count = 50 }]"#,
            3,
        );
        let tally: HashMap<Expect, u64> = w.truth.tally().into_iter().collect();
        assert_eq!(tally[&Expect::OPEN], 7);
        assert_eq!(tally[&Expect::filtered(Reason::NoResponse)], 100);
        assert_eq!(tally[&Expect::filtered(Reason::HostUnreach)], 50);
        assert_eq!(tally[&Expect::CLOSED], 1000 - 157);
        assert_eq!(w.listeners.len(), 7);
        assert!(
            w.rules[0]
                .ports
                .iter()
                .all(|p| !w.rules[1].ports.contains(p))
        );
        let rules = w.nft_ruleset().unwrap();
        assert!(
            rules.contains("ip daddr { 127.0.0.1 } tcp dport {"),
            "{rules}"
        );
        assert!(rules.contains("reject with icmp type host-unreachable"));
    }

    #[test]
    fn ephemeral_split_is_exact() {
        let w = world(
            r#"name = "t"
               hosts = ["127.0.0.1"]
               ports = "1-65535"
               open = { count = 25, ephemeral = 5 }"#,
            9,
        );
        let eph = w
            .listeners
            .iter()
            .filter(|sa| EPHEMERAL.contains(&sa.port()))
            .count();
        assert_eq!((w.listeners.len(), eph), (25, 5));
    }

    #[test]
    fn routes_give_each_host_its_class() {
        let w = world(
            r#"name = "t"
               hosts = ["127.0.0.1", "127.255.255.255", "198.18.1.1", "198.18.2.1", "198.18.3.1", "198.18.4.1", "198.18.9.1"]
               ports = "80"
               route = [
                 { prefix = "198.18.1.0/24", kind = "unreachable" },
                 { prefix = "198.18.2.0/24", kind = "prohibit" },
                 { prefix = "198.18.3.0/24", kind = "silent" },
                 { prefix = "198.18.9.0/24", kind = "local" },
               ]"#,
            0,
        );
        let t = &w.truth;
        let e = |a: &str| t.expect(a.parse().unwrap(), 80).clone();
        assert_eq!(e("127.0.0.1"), Expect::CLOSED);
        assert_eq!(e("127.255.255.255"), Expect::filtered(Reason::NetUnreach));
        assert_eq!(e("198.18.1.1"), Expect::filtered(Reason::HostUnreach));
        assert_eq!(e("198.18.2.1"), Expect::filtered(Reason::AdminProhibited));
        assert_eq!(e("198.18.3.1"), Expect::filtered(Reason::NoResponse));
        assert_eq!(e("198.18.4.1"), Expect::filtered(Reason::NetUnreach));
        assert_eq!(e("198.18.9.1"), Expect::CLOSED);
        assert!(t.has_silent_probes());
        let batch = w.ip_batch();
        assert!(batch.contains(&"route add prohibit 198.18.2.0/24".to_string()));
        assert!(batch.contains(&"route add table local local 198.18.9.0/24 dev lo".to_string()));
        assert!(batch.iter().any(|c| c.contains("arp off")));
    }

    #[test]
    fn hosts_outside_the_lab_ranges_are_refused() {
        let s = Scenario::parse(
            r#"name = "t"
               hosts = ["240.9.9.9"]
               ports = "80""#,
            FULL,
            "t",
        )
        .unwrap();
        let e = World::build(&s, 0).unwrap_err().to_string();
        assert!(e.contains("outside 127.0.0.0/8"), "{e}");
    }

    #[test]
    fn a_netsim_world_takes_the_models_truth_as_a_connect_scan_sees_it() {
        let w = world(
            r#"name = "t"
               hosts = ["198.18.0.0/28"]
               ports = "top100"
               [netsim]
               profile = "internet-like"
               loss = { syn = 0.0, reply = 0.0 }
               fractions = { open = 0.1, filtered = 0.1, host_unreach = 0.05, admin_prohibited = 0.05 }"#,
            5,
        );
        let model = w.netsim.as_ref().unwrap();
        assert_eq!(model.config().loss.syn, 0.0);
        assert_eq!(model.config().hosts.to_string(), "198.18.0.0/28");
        assert_eq!((w.truth.host_count(), w.truth.ports.len()), (16, 100));
        let mut admin = 0;
        for t in model.truth() {
            let e = w.truth.expect(t.addr, t.port);
            if t.reason == fastport_netsim::Reason::AdminProhibited {
                admin += 1;
                assert_eq!(*e, Expect::filtered(Reason::HostUnreach));
            } else {
                assert_eq!(
                    (e.state.as_str(), e.reason.as_str()),
                    (t.state.as_str(), t.reason.as_str())
                );
            }
        }
        assert!(admin > 0);
        assert!(w.listeners.is_empty() && w.rules.is_empty() && w.routes.is_empty());
    }

    #[test]
    fn netsim_worlds_refuse_what_the_profile_decides_and_foreign_hosts() {
        let bad = |text: &str| {
            let s = Scenario::parse(text, FULL, "t").unwrap();
            World::build(&s, 0).unwrap_err().to_string()
        };
        let e = bad(r#"name = "t"
               hosts = ["198.18.0.0/28", "198.18.1.0/28"]
               ports = "80"
               netsim = { profile = "far" }"#);
        assert!(e.contains("one CIDR block"), "{e}");
        let e = bad(r#"name = "t"
               hosts = ["198.18.0.0/28"]
               ports = "80"
               open = { count = 1 }
               netsim = { profile = "far" }"#);
        assert!(e.contains("no [open]"), "{e}");
        let e = bad(r#"name = "t"
               hosts = ["198.19.255.0/24"]
               ports = "80"
               netsim = { profile = "far" }"#);
        assert!(e.contains("source address"), "{e}");
        let e = bad(r#"name = "t"
               hosts = ["240.0.0.0/24"]
               ports = "80"
               netsim = { profile = "far" }"#);
        assert!(e.contains("netsim"), "{e}");
        let e = bad(r#"name = "t"
               hosts = ["198.18.0.0/28"]
               ports = "80"
               netsim = { profile = "far", loss = { sin = 0.1 } }"#);
        assert!(e.contains("sin"), "{e}");
    }

    #[test]
    fn every_builtin_netsim_world_builds_at_small_scale() {
        for (name, _) in crate::scenario::BUILTIN
            .iter()
            .filter(|(n, _)| n.starts_with("netsim-"))
        {
            let w = World::build(&Scenario::load(name, "small").unwrap(), 1).unwrap();
            assert!(w.netsim.is_some(), "{name}");
            assert_eq!(w.truth.probes(), 6400, "{name}");
        }
    }

    #[test]
    fn reset_rules_leave_the_port_closed_and_open_never_hides_behind_a_rule() {
        let w = world(
            r#"name = "t"
               hosts = ["127.0.0.1"]
               ports = "1-10"
               open = { count = 5 }
               filter = [{ action = "reset", count = 5 }]"#,
            1,
        );
        assert!(w.truth.exceptions.values().all(|e| e.state == State::Open));
        for sa in &w.listeners {
            assert!(!w.rules[0].ports.contains(sa.port()));
        }
    }
}
