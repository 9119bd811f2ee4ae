//! Linux connection tracking (`nf_conntrack`) in the scan's namespace: an
//! unanswered SYN holds a table entry for 120 s (`nf_conntrack_tcp_timeout_
//! syn_sent`), 262 144 entries by default, so about 2 200 unanswered
//! connects a second fill the table, and from then on the kernel drops
//! new connections' packets (ours and everyone else's on the machine).
//! FastPort detects tracking at the start ([`Conntrack::detect`]) and keeps
//! unanswered connects per second under what the table can hold
//! ([`Conntrack::unanswered_per_s`]; `--ignore-conntrack` lifts it).

use std::path::Path;
use std::time::Duration;

/// How long an unanswered SYN's entry lives (`nf_conntrack_tcp_timeout_syn_sent`'s
/// default).
pub const SYN_SENT_TIMEOUT: Duration = Duration::from_secs(120);
/// The share of the table's free entries the scan may fill: the rest is
/// left to the machine's other connections and to answered probes' short
/// entries (10 s in `CLOSE`).
const SHARE: f64 = 0.9;
/// Where the kernel shows the table (per network namespace).
pub const PROC_DIR: &str = "/proc/sys/net/netfilter";

/// The connection-tracking table as the scan found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conntrack {
    /// `nf_conntrack_max`: entries the table holds.
    pub max: u64,
    /// `nf_conntrack_count`: entries in use when the scan started.
    pub count: u64,
}

impl Conntrack {
    /// Unanswered connects per second the table can hold: its free entries,
    /// of which the scan takes 90 %, each held [`SYN_SENT_TIMEOUT`].
    /// 262 144 entries, none in use: 1 966 a second. At least one.
    pub fn unanswered_per_s(&self) -> f64 {
        let free = self.max.saturating_sub(self.count) as f64;
        (free * SHARE / SYN_SENT_TIMEOUT.as_secs_f64()).max(1.0)
    }

    /// The table under `dir` (`nf_conntrack_max`, `nf_conntrack_count`),
    /// `None` when either is missing (the module is not loaded).
    pub fn read(dir: &Path) -> Option<Conntrack> {
        let number = |name: &str| -> Option<u64> {
            std::fs::read_to_string(dir.join(name))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        Some(Conntrack {
            max: number("nf_conntrack_max")?,
            count: number("nf_conntrack_count")?,
        })
    }

    /// Whether connections of this namespace are tracked, and the table:
    /// the module is loaded (the files exist in every namespace then), and
    /// the table holds entries, or gains one for a loopback connection made
    /// to find out (a namespace whose rules need no tracking registers no
    /// hooks, and its count stays 0).
    pub fn detect() -> Option<Conntrack> {
        let dir = Path::new(PROC_DIR);
        let table = Conntrack::read(dir)?;
        if table.count > 0 {
            return Some(table);
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        let addr = listener.local_addr().ok()?;
        let _client =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
        Conntrack::read(dir).filter(|t| t.count > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_holds_about_two_thousand_unanswered_connects_a_second() {
        let t = Conntrack {
            max: 262_144,
            count: 0,
        };
        assert!((t.unanswered_per_s() - 1966.08).abs() < 0.01);
        // Entries in use leave less room; a full table still lets one a
        // second through.
        let busy = Conntrack {
            max: 262_144,
            count: 131_072,
        };
        assert!((busy.unanswered_per_s() - 983.04).abs() < 0.01);
        let full = Conntrack {
            max: 1000,
            count: 5000,
        };
        assert_eq!(full.unanswered_per_s(), 1.0);
    }

    #[test]
    fn the_table_is_read_from_its_two_files() {
        let dir = std::env::temp_dir().join(format!("fastport-conntrack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Conntrack::read(&dir), None, "no module: no table");
        std::fs::write(dir.join("nf_conntrack_max"), "65536\n").unwrap();
        assert_eq!(Conntrack::read(&dir), None);
        std::fs::write(dir.join("nf_conntrack_count"), "12\n").unwrap();
        assert_eq!(
            Conntrack::read(&dir),
            Some(Conntrack {
                max: 65_536,
                count: 12
            })
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
