//! FastPort's port states and reason names, defined once. The scanner
//! (`fastport::classify` re-exports them), the lab (its truth and scores)
//! and netsim (its ground truth) all spell a state or a reason through
//! these types, so `"conn-refused"` cannot drift between them.
//!
//! No dependencies; the `serde` feature makes both types (de)serialize as
//! their names.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

/// A port's state, as nmap names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// The handshake completed.
    Open,
    /// A reset came back, or the socket connected to itself.
    Closed,
    /// Nothing came back, or an ICMP error or local route verdict did.
    Filtered,
}

impl State {
    /// Every state, in the order summaries list them.
    pub const ALL: [State; 3] = [State::Open, State::Closed, State::Filtered];

    /// The lowercase name every output format uses.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Closed => "closed",
            State::Filtered => "filtered",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no state or no reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// `"port state"` or `"reason"`.
    pub what: &'static str,
    /// The name as given.
    pub name: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.what, self.name)
    }
}

impl std::error::Error for UnknownName {}

impl FromStr for State {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<State, UnknownName> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "port state",
                name: s.to_string(),
            })
    }
}

/// Why a port got its state: nmap's reason names for a connect scan.
///
/// The reason determines the state ([`Reason::state`]), so a result can
/// carry only the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reason {
    /// The connection was established: the port answered SYN with SYN-ACK.
    SynAck,
    /// `ECONNREFUSED`: the port answered with RST.
    ConnRefused,
    /// A reset answering the SYN, as some firewalls send (`reset` in nmap's
    /// names). Linux reports it to `connect` as `ECONNREFUSED`, so FastPort
    /// cannot tell it from a closed port and never produces it; it is kept
    /// for results read back from other tools.
    Reset,
    /// The connection's local address equals its peer address: on loopback
    /// the kernel picked the target port as our source port and the SYN met
    /// itself (TCP simultaneous open). Nothing listens there.
    SelfConnect,
    /// No answer before the deadline on any try (or the kernel's own
    /// `ETIMEDOUT`).
    NoResponse,
    /// `EHOSTUNREACH` / `EHOSTDOWN`: an ICMP host-unreachable (Linux
    /// reports ICMP code 13, administratively prohibited, the same way) or
    /// an `unreachable` route.
    HostUnreach,
    /// `ENETUNREACH` / `ENETDOWN`.
    NetUnreach,
    /// `EACCES` / `EPERM`: a `prohibit` route or a local firewall reject;
    /// for a scanner reading ICMP itself, code 13.
    AdminProhibited,
    /// Any other error from the connect: kept apart rather than guessed at.
    Error,
}

impl Reason {
    /// Every reason, in the order summaries list them.
    pub const ALL: [Reason; 9] = [
        Reason::SynAck,
        Reason::ConnRefused,
        Reason::Reset,
        Reason::SelfConnect,
        Reason::NoResponse,
        Reason::HostUnreach,
        Reason::NetUnreach,
        Reason::AdminProhibited,
        Reason::Error,
    ];
    /// How many reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// The state this reason means.
    pub fn state(self) -> State {
        match self {
            Reason::SynAck => State::Open,
            Reason::ConnRefused | Reason::Reset | Reason::SelfConnect => State::Closed,
            Reason::NoResponse
            | Reason::HostUnreach
            | Reason::NetUnreach
            | Reason::AdminProhibited
            | Reason::Error => State::Filtered,
        }
    }

    /// nmap's spelling of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SynAck => "syn-ack",
            Reason::ConnRefused => "conn-refused",
            Reason::Reset => "reset",
            Reason::SelfConnect => "self-connect",
            Reason::NoResponse => "no-response",
            Reason::HostUnreach => "host-unreach",
            Reason::NetUnreach => "net-unreach",
            Reason::AdminProhibited => "admin-prohibited",
            Reason::Error => "error",
        }
    }

    /// Dense index, for per-reason tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the target answered (so a latency was measured).
    pub fn answered(self) -> bool {
        self != Reason::NoResponse
    }

    /// The reason spelled `s`, if it is one.
    pub fn from_str_name(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Reason, UnknownName> {
        Reason::from_str_name(s).ok_or_else(|| UnknownName {
            what: "reason",
            name: s.to_string(),
        })
    }
}

#[cfg(feature = "serde")]
mod serde_names {
    use super::{Reason, State};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    impl Serialize for State {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.as_str())
        }
    }

    impl<'de> Deserialize<'de> for State {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<State, D::Error> {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.parse().map_err(D::Error::custom)
        }
    }

    impl Serialize for Reason {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.as_str())
        }
    }

    impl<'de> Deserialize<'de> for Reason {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.parse().map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_value() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
        }
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>(), Ok(r));
            assert_eq!(Reason::ALL[r.index()], r);
        }
        assert_eq!(
            "refused".parse::<Reason>().unwrap_err().to_string(),
            "unknown reason \"refused\""
        );
        assert!("Open".parse::<State>().is_err());
    }

    #[test]
    fn each_reason_means_one_state() {
        assert_eq!(Reason::SynAck.state(), State::Open);
        assert_eq!(Reason::SelfConnect.state(), State::Closed);
        assert_eq!(Reason::AdminProhibited.state(), State::Filtered);
        assert!(!Reason::NoResponse.answered());
    }
}
