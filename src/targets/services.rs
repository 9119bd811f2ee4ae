//! Service names and `--top-ports` ranking from nmap's `nmap-services`.
//!
//! The data lives in the generated [`table`] module (regenerate it with
//! `python3 scripts/gen-services.py > src/targets/services/table.rs`); this
//! file holds the lookups, so the generator emits data only.

mod table;

pub use table::{SERVICES, TOP_PORTS};

/// The service nmap registers for TCP `port` (`"ssh"` for 22), or `None`
/// when nmap knows none (including the ports it calls `unknown`).
pub fn service_name(port: u16) -> Option<&'static str> {
    let i = SERVICES.binary_search_by_key(&port, |&(p, _, _)| p).ok()?;
    Some(SERVICES[i].1).filter(|&name| name != "unknown")
}

/// nmap's open frequency for TCP `port`: the fraction of hosts in its survey
/// with the port open; 0 for ports it has no data for.
pub fn open_frequency(port: u16) -> f32 {
    SERVICES
        .binary_search_by_key(&port, |&(p, _, _)| p)
        .map_or(0.0, |i| SERVICES[i].2)
}

/// The `n` most frequently open TCP ports, in ascending port order. Asking
/// for more than nmap ranks returns every ranked port.
pub fn top_ports(n: usize) -> Vec<u16> {
    let mut ports = TOP_PORTS[..n.min(TOP_PORTS.len())].to_vec();
    ports.sort_unstable();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_by_port_and_unique() {
        assert!(SERVICES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            SERVICES
                .iter()
                .all(|&(p, name, f)| p > 0 && !name.is_empty() && f >= 0.0)
        );
    }

    #[test]
    fn well_known_names() {
        assert_eq!(service_name(22), Some("ssh"));
        assert_eq!(service_name(80), Some("http"));
        assert_eq!(service_name(443), Some("https"));
        assert_eq!(service_name(3389), Some("ms-wbt-server"));
        assert_eq!(service_name(4), None, "nmap calls port 4 unknown");
        assert_eq!(service_name(0), None);
    }

    #[test]
    fn top_ports_rank_by_frequency_then_port() {
        assert_eq!(&TOP_PORTS[..5], [80, 23, 443, 21, 22]);
        for w in TOP_PORTS.windows(2) {
            let (a, b) = (open_frequency(w[0]), open_frequency(w[1]));
            assert!(a > b || (a == b && w[0] < w[1]), "{w:?}");
        }
        assert!(TOP_PORTS.iter().all(|&p| open_frequency(p) > 0.0));
        let ranked = SERVICES.iter().filter(|s| s.2 > 0.0).count();
        assert_eq!(TOP_PORTS.len(), ranked);
    }

    #[test]
    fn top_ports_is_ascending_and_saturates() {
        assert_eq!(top_ports(0), Vec::<u16>::new());
        assert_eq!(top_ports(3), [23, 80, 443]);
        let all = top_ports(1_000_000);
        assert_eq!(all.len(), TOP_PORTS.len());
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }
}
