//! Scenario files: the small declarative TOML descriptions worlds are built from.
//!
//! ```toml
//! name = "filtered-mix"
//! description = "One host: dropped, host-unreachable, closed and a few open ports."
//! hosts = ["127.0.0.1"]            # addresses, CIDR blocks, A-B ranges
//! ports = "1-8005"                 # port spec
//!
//! [open]                           # seeded listeners among the local (host, port)s
//! count = 5                        # or: fraction = 0.002
//! ephemeral = 0                    # how many of them in 32768-60999
//! # hosts = ["127.0.0.1"]          # restrict to these hosts
//! # ports = "22,80"                # or exactly these ports on every allowed host
//!
//! [[filter]]                       # an nftables rule on a seeded (or given) port set
//! action = "drop"                  # drop | host-unreach | admin-prohibited | net-unreach | reset
//! count = 5000                     # or: ports = "5000-5999"
//! # hosts = ["127.0.0.1"]          # default: every local host of the scan
//!
//! [[route]]                        # how a remote-looking prefix behaves
//! prefix = "198.18.1.0/24"
//! kind = "unreachable"             # unreachable | prohibit | silent | local
//!
//! [args]                           # extra arguments per scanner (name or family)
//! floor = ["--threads", "512"]
//!
//! [scale.small]                    # merged over the file by `--scale small`
//! ports = "1-600"
//! filter = [{ action = "drop", count = 20 }]
//! ```
//!
//! A world simulated by netsim has a `[netsim]` table instead of
//! `[open]`, `[[filter]]` and `[[route]]`: the profile decides every port,
//! and netsim serves the hosts with their latency and loss (see `world.rs`).
//!
//! ```toml
//! name = "netsim-far"
//! hosts = ["198.18.0.0/22"]        # one CIDR block inside 198.18.0.0/16
//! ports = "top100"                 # netsim's port spec: topN, -, or a list
//!
//! [netsim]
//! profile = "far"                  # internet-like | far | lossy | a profile .toml
//! loss = { syn = 0.0, reply = 0.0 } # any key of netsim's profile format, merged over it
//! ```
//!
//! A scale table is deep-merged over the top level: tables merge key by key,
//! anything else (arrays included) is replaced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::LabError;

/// A parsed scenario, with its scale already applied.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// One line for humans.
    #[serde(default)]
    pub description: String,
    /// The scanned hosts.
    pub hosts: Vec<String>,
    /// The scanned ports.
    pub ports: String,
    /// Which (host, port)s get a listener.
    #[serde(default)]
    pub open: OpenSpec,
    /// nftables rules, applied in order to disjoint port sets.
    #[serde(default, rename = "filter")]
    pub filters: Vec<FilterSpec>,
    /// Routes for prefixes outside 127.0.0.0/8.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteSpec>,
    /// Extra arguments per scanner, keyed by scanner name (`fastport-threads`)
    /// or family (`fastport`).
    #[serde(default)]
    pub args: BTreeMap<String, Vec<String>>,
    /// The world is simulated by netsim with this profile.
    #[serde(default)]
    pub netsim: Option<NetsimSpec>,
    /// The scale this scenario was loaded at (`full` when none).
    #[serde(skip)]
    pub scale: String,
}

/// The `[open]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSpec {
    /// How many listeners.
    pub count: Option<u64>,
    /// Or: this share of the candidate (host, port)s, rounded.
    pub fraction: Option<f64>,
    /// How many of them must be in the ephemeral range 32768-60999.
    #[serde(default)]
    pub ephemeral: u64,
    /// Only these hosts get listeners.
    pub hosts: Option<Vec<String>>,
    /// Exactly these ports are open on every allowed host (no seeded pick).
    pub ports: Option<String>,
}

/// What a `[[filter]]` rule does to the packets it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterAction {
    /// Silently dropped: filtered/no-response.
    Drop,
    /// `reject with icmp type host-unreachable`: filtered/host-unreach.
    HostUnreach,
    /// `reject with icmp type admin-prohibited`: Linux turns it into
    /// `EHOSTUNREACH`, so filtered/host-unreach as well.
    AdminProhibited,
    /// `reject with icmp type net-unreachable`: filtered/net-unreach.
    NetUnreach,
    /// `reject with tcp reset`: indistinguishable from closed.
    Reset,
}

/// A `[[filter]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// What the rule does.
    pub action: FilterAction,
    /// How many seeded ports of the scan it covers...
    pub count: Option<usize>,
    /// ...or exactly these.
    pub ports: Option<String>,
    /// The hosts it applies to (default: every local host of the scan).
    pub hosts: Option<Vec<String>>,
}

/// How a `[[route]]` prefix behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteKind {
    /// `ip route add unreachable`: filtered/host-unreach, at once.
    Unreachable,
    /// `ip route add prohibit`: filtered/admin-prohibited, at once.
    Prohibit,
    /// Routed out of a veth end with ARP off: filtered/no-response.
    Silent,
    /// The whole prefix is local on `lo` (like 127.0.0.0/8): listeners work,
    /// everything else is closed.
    Local,
}

/// A `[[route]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The prefix, inside 198.18.0.0/15.
    pub prefix: String,
    /// What it does.
    pub kind: RouteKind,
}

/// The `[netsim]` table: a netsim profile and the keys that override it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NetsimSpec {
    /// A netsim preset (`internet-like`, `far`, `lossy`) or a profile file.
    pub profile: String,
    /// Keys of netsim's profile format (`latency`, `jitter_ms`, `loss`,
    /// `fractions`), merged over the profile; netsim rejects unknown ones.
    /// `hosts` and `ports` come from the scenario.
    #[serde(flatten)]
    pub set: toml::Table,
}

/// The scenarios shipped in `lab/scenarios/`, compiled in so the binary works
/// from any directory.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "loopback-65k",
        include_str!("../scenarios/loopback-65k.toml"),
    ),
    ("wide-16", include_str!("../scenarios/wide-16.toml")),
    (
        "filtered-mix",
        include_str!("../scenarios/filtered-mix.toml"),
    ),
    (
        "ephemeral-trap",
        include_str!("../scenarios/ephemeral-trap.toml"),
    ),
    ("routes-mix", include_str!("../scenarios/routes-mix.toml")),
    (
        "netsim-internet-like",
        include_str!("../scenarios/netsim-internet-like.toml"),
    ),
    ("netsim-far", include_str!("../scenarios/netsim-far.toml")),
    (
        "netsim-lossy",
        include_str!("../scenarios/netsim-lossy.toml"),
    ),
];

/// The scale that applies no overrides.
pub const FULL: &str = "full";

impl Scenario {
    /// Parses scenario text at `scale` (`full` or the name of a `[scale.NAME]` table).
    pub fn parse(text: &str, scale: &str, origin: &str) -> Result<Scenario, LabError> {
        let bad = |msg: String| LabError::Scenario {
            origin: origin.to_string(),
            message: msg,
        };
        let mut root: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let scales = match root.remove("scale") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(bad("`scale` must be a table of tables".into())),
        };
        if scale != FULL {
            match scales.get(scale) {
                Some(toml::Value::Table(overrides)) => merge(&mut root, overrides.clone()),
                Some(_) => return Err(bad(format!("`scale.{scale}` must be a table"))),
                None => {
                    let known: Vec<&str> = scales.keys().map(String::as_str).collect();
                    return Err(bad(format!(
                        "no scale {scale:?} (known: full{}{})",
                        if known.is_empty() { "" } else { ", " },
                        known.join(", ")
                    )));
                }
            }
        }
        let mut scenario: Scenario = toml::Value::Table(root)
            .try_into()
            .map_err(|e: toml::de::Error| bad(e.to_string()))?;
        scenario.scale = scale.to_string();
        Ok(scenario)
    }

    /// Loads a built-in scenario by name, or a file by path (anything with a
    /// `/` or ending in `.toml`).
    pub fn load(name_or_path: &str, scale: &str) -> Result<Scenario, LabError> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(text, scale, name);
        }
        let path = PathBuf::from(name_or_path);
        if name_or_path.contains('/') || name_or_path.ends_with(".toml") || path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| LabError::Scenario {
                origin: name_or_path.to_string(),
                message: format!("cannot read: {e}"),
            })?;
            return Scenario::parse(&text, scale, &display(&path));
        }
        let known: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        Err(LabError::Scenario {
            origin: name_or_path.to_string(),
            message: format!(
                "no such scenario (built-in: {}; or give a path to a .toml file)",
                known.join(", ")
            ),
        })
    }

    /// The extra arguments this scenario gives a scanner called `name` of `family`.
    pub fn args_for(&self, name: &str, family: &str) -> Vec<String> {
        self.args
            .get(name)
            .or_else(|| self.args.get(family))
            .cloned()
            .unwrap_or_default()
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Deep-merges `over` into `base`: tables key by key, other values replaced.
pub(crate) fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
        name = "t"
        hosts = ["127.0.0.1"]
        ports = "1-100"
        [open]
        count = 5
        ephemeral = 0
        [[filter]]
        action = "drop"
        count = 10
        [args]
        floor = ["--threads", "8"]
        [scale.small]
        ports = "1-10"
        open = { count = 2 }
        filter = []
    "#;

    #[test]
    fn scale_tables_merge_deeply_and_replace_arrays() {
        let full = Scenario::parse(TEXT, FULL, "t").unwrap();
        assert_eq!(full.ports, "1-100");
        assert_eq!(full.filters.len(), 1);
        assert_eq!(full.filters[0].action, FilterAction::Drop);
        let small = Scenario::parse(TEXT, "small", "t").unwrap();
        assert_eq!(small.ports, "1-10");
        assert_eq!(small.open.count, Some(2));
        assert_eq!(small.open.ephemeral, 0);
        assert!(small.filters.is_empty());
        assert_eq!(small.scale, "small");
        assert_eq!(small.args_for("floor", "floor"), ["--threads", "8"]);
        assert!(small.args_for("nmap", "nmap").is_empty());
    }

    #[test]
    fn errors_name_the_origin_and_the_problem() {
        let e = Scenario::parse(TEXT, "huge", "t").unwrap_err().to_string();
        assert!(
            e.contains("no scale \"huge\"") && e.contains("small"),
            "{e}"
        );
        let e = Scenario::parse("name = 1", FULL, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml"), "{e}");
        let e = Scenario::parse(&TEXT.replace("ephemeral", "ephemera"), FULL, "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ephemera"), "{e}");
        assert!(Scenario::load("no-such-world", FULL).is_err());
    }

    #[test]
    fn every_builtin_parses_at_every_scale() {
        for (name, text) in BUILTIN {
            let full = Scenario::parse(text, FULL, name).unwrap();
            assert_eq!(full.name, *name);
            Scenario::parse(text, "small", name).unwrap();
        }
    }
}
