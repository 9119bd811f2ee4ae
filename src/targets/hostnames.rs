//! The names targets were given by, kept for the outputs: a scan of
//! `example.org` reports `example.org` beside each of its addresses (nmap's
//! `<hostname type="user">`). A sorted table, looked up by address with a
//! binary search: no allocation per result.

use std::net::IpAddr;

/// Address → the name the user gave for it (the first, when several names
/// share an address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNames {
    by_addr: Vec<(IpAddr, String)>,
}

impl HostNames {
    /// From each name and the addresses it stands for, in the order given.
    pub fn new(given: &[(String, Vec<IpAddr>)]) -> HostNames {
        let mut by_addr: Vec<(IpAddr, String)> = Vec::new();
        for (name, ips) in given {
            for &ip in ips {
                by_addr.push((ip, name.clone()));
            }
        }
        // Stable: the first name given for an address stays first.
        by_addr.sort_by_key(|(ip, _)| *ip);
        by_addr.dedup_by_key(|(ip, _)| *ip);
        HostNames { by_addr }
    }

    /// The name `ip` was given by, if any.
    pub fn get(&self, ip: IpAddr) -> Option<&str> {
        let i = self.by_addr.binary_search_by_key(&ip, |(a, _)| *a).ok()?;
        Some(&self.by_addr[i].1)
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// How many addresses have a name.
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_name_given_wins_and_lookups_are_by_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let names = HostNames::new(&[
            ("b.test".into(), vec![ip("127.0.0.2"), ip("127.0.0.1")]),
            ("a.test".into(), vec![ip("127.0.0.1")]),
            ("v6.test".into(), vec![ip("::1")]),
        ]);
        assert_eq!(names.len(), 3);
        assert_eq!(names.get(ip("127.0.0.1")), Some("b.test"));
        assert_eq!(names.get(ip("127.0.0.2")), Some("b.test"));
        assert_eq!(names.get(ip("::1")), Some("v6.test"));
        assert_eq!(names.get(ip("127.0.0.3")), None);
        assert!(HostNames::default().is_empty());
    }
}
