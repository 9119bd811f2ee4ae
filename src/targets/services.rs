//! Service names and the `--top-ports` ranking.
//!
//! Names come from IANA's port registry (CC0; the generated [`iana`]
//! module, `scripts/gen-services.py` rebuilds it). The ranking is read at
//! run time from an `nmap-services` file the user has installed (with its
//! port frequencies), looked for where nmap looks: `$NMAPDIR`,
//! `/usr/local/share/nmap`, `/usr/share/nmap`. Without one, FastPort uses
//! its own list ([`ranking`]). FastPort ships no nmap data: nmap's tables
//! are under the Nmap Public Source License.

mod iana;
mod ranking;

use std::fmt;
use std::path::{Path, PathBuf};

pub use iana::SERVICES;

/// The service IANA registers for TCP `port` (`"ssh"` for 22), or `None`
/// when the port has no registered name.
pub fn service_name(port: u16) -> Option<&'static str> {
    let i = SERVICES.binary_search_by_key(&port, |&(p, _)| p).ok()?;
    Some(SERVICES[i].1)
}

/// Where a `--top-ports` ranking came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RankingSource {
    /// An `nmap-services` file on this machine, by open frequency.
    NmapServices(PathBuf),
    /// FastPort's own list, then IANA-named ports (see the `ranking` module).
    BuiltIn,
}

impl fmt::Display for RankingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RankingSource::NmapServices(path) => {
                write!(f, "open frequencies of {}", path.display())
            }
            RankingSource::BuiltIn => {
                f.write_str("FastPort's built-in list (no nmap-services file found)")
            }
        }
    }
}

/// TCP ports, most likely open first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranking {
    /// Where the ranking came from.
    pub source: RankingSource,
    /// The ports, most likely open first.
    pub ports: Vec<u16>,
}

impl Ranking {
    /// FastPort's own ranking: the hand-written list, then named
    /// well-known ports, then every other named port.
    pub fn built_in() -> Ranking {
        let mut ports: Vec<u16> = ranking::BUILT_IN.to_vec();
        let mut seen = vec![false; 65536];
        for &p in &ports {
            seen[usize::from(p)] = true;
        }
        for well_known in [true, false] {
            for &(p, _) in SERVICES {
                if (p < 1024) == well_known && !seen[usize::from(p)] {
                    seen[usize::from(p)] = true;
                    ports.push(p);
                }
            }
        }
        Ranking {
            source: RankingSource::BuiltIn,
            ports,
        }
    }

    /// Ranks the TCP lines of an `nmap-services` file (`name port/proto
    /// frequency`) by frequency, then port. `None` when the text holds no
    /// TCP line with a frequency above zero (not such a file).
    pub fn from_nmap_services(text: &str, path: &Path) -> Option<Ranking> {
        let mut ranked: Vec<(f64, u16)> = Vec::new();
        let mut seen = vec![false; 65536];
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let (Some(_name), Some(port_proto), Some(freq)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Some((port, "tcp")) = port_proto.split_once('/') else {
                continue;
            };
            let (Ok(port), Ok(freq)) = (port.parse::<u16>(), freq.parse::<f64>()) else {
                continue;
            };
            if port == 0 || !freq.is_finite() || freq <= 0.0 || seen[usize::from(port)] {
                continue;
            }
            seen[usize::from(port)] = true;
            ranked.push((freq, port));
        }
        if ranked.is_empty() {
            return None;
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Some(Ranking {
            source: RankingSource::NmapServices(path.to_path_buf()),
            ports: ranked.into_iter().map(|(_, p)| p).collect(),
        })
    }

    /// The ranking to use on this machine: the first readable
    /// `nmap-services` among `$NMAPDIR`, `/usr/local/share/nmap` and
    /// `/usr/share/nmap` (nmap's own search order), else the built-in one.
    pub fn find(nmapdir: Option<&Path>) -> Ranking {
        let dirs = nmapdir
            .into_iter()
            .map(Path::to_path_buf)
            .chain(["/usr/local/share/nmap", "/usr/share/nmap"].map(PathBuf::from));
        for dir in dirs {
            let path = dir.join("nmap-services");
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Some(r) = Ranking::from_nmap_services(&text, &path) {
                    return r;
                }
            }
        }
        Ranking::built_in()
    }

    /// The `n` highest-ranked ports not `excluded`, ascending.
    pub fn top(&self, n: usize, excluded: impl Fn(u16) -> bool) -> Vec<u16> {
        let mut top: Vec<u16> = self
            .ports
            .iter()
            .copied()
            .filter(|&p| !excluded(p))
            .take(n)
            .collect();
        top.sort_unstable();
        top
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_table_is_sorted_by_port_and_unique() {
        assert!(SERVICES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(SERVICES.iter().all(|&(p, name)| {
            p > 0
                && !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }));
    }

    #[test]
    fn well_known_names_are_ianas() {
        assert_eq!(service_name(22), Some("ssh"));
        assert_eq!(service_name(80), Some("http"));
        assert_eq!(service_name(443), Some("https"));
        assert_eq!(service_name(3389), Some("ms-wbt-server"));
        assert_eq!(service_name(6010), Some("x11"), "ranges name every port");
        assert_eq!(service_name(4), None, "IANA leaves port 4 unassigned");
        assert_eq!(service_name(0), None);
    }

    #[test]
    fn built_in_ranking_has_no_duplicates_and_starts_with_its_list() {
        let r = Ranking::built_in();
        assert_eq!(r.source, RankingSource::BuiltIn);
        assert_eq!(&r.ports[..5], [80, 443, 22, 21, 25]);
        assert_eq!(&r.ports[..ranking::BUILT_IN.len()], ranking::BUILT_IN);
        assert!(ranking::BUILT_IN.len() >= 100, "-F needs 100 ranked ports");
        let mut sorted = r.ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), r.ports.len());
        // Past the list: named well-known ports, ascending, first.
        let next = r.ports[ranking::BUILT_IN.len()];
        assert!(next < 1024 && service_name(next).is_some());
    }

    #[test]
    fn nmap_services_ranks_tcp_by_frequency_then_port() {
        let text = "# comment\n\
                    http\t80/tcp\t0.48\t# World Wide Web\n\
                    domain\t53/udp\t0.9\n\
                    telnet\t23/tcp\t0.22\n\
                    ssh\t22/tcp\t0.22\n\
                    rare\t4/tcp\t0.000000\n\
                    broken line\n";
        let r = Ranking::from_nmap_services(text, Path::new("/x/nmap-services")).unwrap();
        assert_eq!(r.ports, [80, 22, 23]);
        assert_eq!(r.source.to_string(), "open frequencies of /x/nmap-services");
        assert_eq!(r.top(2, |p| p == 80), [22, 23]);
        assert_eq!(
            Ranking::from_nmap_services("nothing here\n", Path::new("x")),
            None
        );
    }

    #[test]
    fn find_prefers_nmapdir_and_falls_back_to_built_in() {
        let dir = crate::test_util::TempDir::new("nmapdir", "find");
        std::fs::write(dir.join("nmap-services"), "x 1234/tcp 0.5\n").unwrap();
        let r = Ranking::find(Some(&dir));
        assert_eq!(r.ports, [1234]);
        assert_eq!(
            r.source,
            RankingSource::NmapServices(dir.join("nmap-services"))
        );
    }
}
