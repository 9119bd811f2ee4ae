//! The I/O side of a service conversation: one port's [`Conversation`] driven by mio.
//!
//! The conversation (`service::conversation`) decides everything — which probe goes out
//! on which connection, how long each waits, when it is over. This file only carries its
//! actions out on sockets: it connects the extra lanes, writes probe payloads (keeping
//! what the kernel did not take for the next writable event), reads what comes back and
//! hands it in with the time, and closes lanes with `SO_LINGER` 0 (RST, no `TIME_WAIT`).
//!
//! [`Session`] is registered in a caller's `mio::Poll` under a token range of its own
//! ([`LANES`] tokens from its base), so the scan's event loop drives many sessions beside
//! its connects; [`run`] drives one session to its verdict in a poll of its own, the
//! blocking form.
//!
//! **Budgets.** A lane's connect is not made when the conversation asks for it: it waits
//! in the session until the driver admits it ([`Session::start_connects`]), so the scan's
//! event loop can count it in its in-flight cap and its `--rate`. A lane's connect has no
//! deadline in the conversation: the session gives it `connect_timeout` (the scan's own)
//! and reports a connect that outlasts it as closed.
//!
//! **TLS.** When the conversation ends with [`Verdict::Tls`] (the port answered a probe
//! like a TLS server), the session opens a new connection, wraps it in a
//! [`TlsClient`] (rustls, no socket of its own), and once the handshake is over runs a
//! second conversation inside the tunnel ([`Tunnel::Tls`]): the probes run again and a
//! match is named `ssl/<service>`. Every lane of the second conversation is a tunnel of its
//! own. A handshake that fails (a server older than TLS 1.2) or does not end within
//! [`handshake_wait`] leaves the port named by the plaintext match (`ssl`).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use crate::service::conversation::{Action, Conversation, Lane, Settings, Tunnel, Verdict};
use crate::service::matcher::ServiceMatch;
use crate::service::record::{ServiceRecord, TlsRecord};
use crate::service::tls::{self, TlsClient, TlsInfo};

/// Bytes read from a socket in one `read` call.
const READ_CHUNK: usize = 4096;

/// Tokens a session may use from its base: lane `n` is `base + n`. A conversation opens
/// at most one lane per probe of its file; lanes beyond this are reported closed.
pub const LANES: usize = 1 << 12;

/// The client configuration every tunnel shares (`None` if rustls refused it, which it
/// does not with these settings: then the port stays named `ssl`).
fn tls_config() -> Option<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| tls::client_config(&[b"http/1.1"]).ok())
        .clone()
}

/// How long a tunnel's handshake may take once its connection is up: ten RTTs, within
/// 1–5 s (a handshake is two round trips and some server CPU).
pub fn handshake_wait(rtt: Duration) -> Duration {
    (rtt * 10).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

struct LaneIo {
    stream: TcpStream,
    /// `Some(started)` while the connect is in progress.
    connecting: Option<Instant>,
    /// Bytes for the socket the kernel has not taken yet.
    pending: Vec<u8>,
    /// Inside a tunnel: the TLS client between the conversation and the socket.
    tls: Option<TlsClient>,
    /// `Some(deadline)` while the tunnel's handshake is going on.
    handshaking: Option<Instant>,
}

/// Where the session stands.
enum Stage {
    /// The plaintext conversation runs.
    Plain,
    /// It found TLS (`ssl`): lane 0 of the tunnel is being connected and handshaken.
    Handshake(ServiceMatch),
    /// The conversation inside the tunnel runs; the plaintext match was this.
    Tunnel(ServiceMatch),
    /// Over: [`Session::verdict`] is set.
    Done,
}

/// One port's conversation and the sockets of its lanes.
pub struct Session {
    target: SocketAddr,
    conv: Conversation,
    stage: Stage,
    lanes: Vec<Option<LaneIo>>,
    /// Lanes whose connect waits to be admitted by the driver.
    waiting: VecDeque<Lane>,
    /// Token of lane 0; lane `n` is `base + n`.
    base: usize,
    connect_timeout: Duration,
    plain: Vec<u8>,
    verdict: Option<Verdict>,
    tls_info: Option<TlsInfo>,
}

impl Session {
    /// Starts a session on `first`, the port scan's own connected socket (lane 0),
    /// registering it under `Token(base)`. Lanes the conversation opens get
    /// `Token(base + lane)`; the caller keeps `base..base + LANES` for this session.
    pub fn new(
        poll: &Poll,
        base: usize,
        target: SocketAddr,
        first: std::net::TcpStream,
        conv: Conversation,
        connect_timeout: Duration,
        now: Instant,
    ) -> io::Result<Session> {
        first.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(first);
        poll.registry()
            .register(&mut stream, Token(base), Interest::READABLE)?;
        let mut s = Session {
            target,
            conv,
            stage: Stage::Plain,
            lanes: vec![Some(LaneIo {
                stream,
                connecting: None,
                pending: Vec::new(),
                tls: None,
                handshaking: None,
            })],
            waiting: VecDeque::new(),
            base,
            connect_timeout,
            plain: Vec::new(),
            verdict: None,
            tls_info: None,
        };
        s.act(poll, now);
        Ok(s)
    }

    /// The verdict, once the session is over (inside a tunnel: the tunnel's, named
    /// `ssl/…`).
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    /// What the outputs write of the verdict (with the TLS handshake's facts), once over.
    pub fn record(&self) -> Option<ServiceRecord> {
        let verdict = self.verdict.as_ref()?;
        let mut record = ServiceRecord::from_verdict(verdict);
        record.tls = self.tls_info.as_ref().map(TlsRecord::from_info);
        Some(record)
    }

    /// Whether `token` belongs to one of this session's lanes.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base && token.0 < self.base + LANES
    }

    /// Sockets the session holds now (lanes open or connecting).
    pub fn sockets(&self) -> usize {
        self.lanes.iter().flatten().count()
    }

    /// Whether a lane's connect waits to be admitted ([`Session::start_connects`]).
    pub fn wants_connect(&self) -> bool {
        self.verdict.is_none() && !self.waiting.is_empty()
    }

    /// Makes the waiting connects that `admit` allows, in order. `admit(grows)` is asked
    /// once per connect; `grows` says whether it adds to the sockets the session holds
    /// (a session holding none takes its next connection in the place it had).
    pub fn start_connects(
        &mut self,
        poll: &Poll,
        now: Instant,
        mut admit: impl FnMut(bool) -> bool,
    ) {
        while self.verdict.is_none() {
            let Some(&lane) = self.waiting.front() else {
                break;
            };
            if !admit(self.sockets() > 0) {
                break;
            }
            self.waiting.pop_front();
            if self.connect(poll, lane, now).is_err() {
                self.lane_closed(poll, lane, now);
            }
        }
        self.act(poll, now);
    }

    /// When [`Session::handle_timeout`] is next due: the conversation's next wait, the
    /// end of a lane's connect or of a handshake, whichever is first (`None` once over,
    /// and while it only waits for connects to be admitted).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.verdict.is_some() {
            return None;
        }
        let lanes = self.lanes.iter().flatten().filter_map(|l| {
            l.connecting
                .map(|t| t + self.connect_timeout)
                .or(l.handshaking)
        });
        let conv = match self.stage {
            Stage::Plain | Stage::Tunnel(_) => self.conv.next_deadline(),
            _ => None,
        };
        conv.into_iter().chain(lanes).min()
    }

    /// A readiness event for `token` (one of this session's).
    pub fn handle_event(&mut self, poll: &Poll, token: Token, now: Instant) {
        let lane = token.0.wrapping_sub(self.base);
        self.service(poll, lane, now);
        self.act(poll, now);
    }

    /// Time passed: waits, connects and handshakes that are over end.
    pub fn handle_timeout(&mut self, poll: &Poll, now: Instant) {
        let timeout = self.connect_timeout;
        for lane in 0..self.lanes.len() {
            let late = self.lanes[lane].as_ref().is_some_and(|l| {
                l.connecting.is_some_and(|t| now >= t + timeout)
                    || l.handshaking.is_some_and(|d| now >= d)
            });
            if late {
                self.drop_lane(poll, lane);
                self.lane_closed(poll, lane, now);
            }
        }
        if matches!(self.stage, Stage::Plain | Stage::Tunnel(_)) {
            self.conv.handle_timeout(now);
        }
        self.act(poll, now);
    }

    /// Closes every lane still open (the verdict is in, or the scan stops).
    pub fn close_all(&mut self, poll: &Poll) {
        for lane in 0..self.lanes.len() {
            self.drop_lane(poll, lane);
        }
        self.waiting.clear();
    }

    /// `lane` is gone (closed by the peer, reset, failed to connect or handshake).
    fn lane_closed(&mut self, poll: &Poll, lane: Lane, now: Instant) {
        self.drop_lane(poll, lane);
        match &self.stage {
            Stage::Handshake(ssl) => {
                // The tunnel could not be set up: the plaintext match stands.
                let ssl = ssl.clone();
                self.end(poll, Verdict::Matched(ssl));
            }
            Stage::Plain | Stage::Tunnel(_) => self.conv.handle_closed(lane, now),
            Stage::Done => {}
        }
    }

    /// Reads, writes or confirms a connect on `lane`, as far as the socket allows.
    fn service(&mut self, poll: &Poll, lane: Lane, now: Instant) {
        let Some(Some(io)) = self.lanes.get_mut(lane) else {
            return;
        };
        if io.connecting.is_some() {
            let connected = match io.stream.take_error() {
                Ok(None) => match io.stream.peer_addr() {
                    Ok(_) => Some(true),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
                    Err(_) => Some(false),
                },
                Ok(Some(_)) | Err(_) => Some(false),
            };
            match connected {
                None => return,
                Some(false) => return self.lane_closed(poll, lane, now),
                Some(true) => {
                    io.connecting = None;
                    if matches!(self.stage, Stage::Plain) {
                        self.conv.handle_connected(lane, now);
                        return;
                    }
                    // Inside TLS: the lane is usable once its handshake is over.
                    let Some(config) = tls_config() else {
                        return self.lane_closed(poll, lane, now);
                    };
                    let name = ServerName::IpAddress(self.target.ip().into());
                    match TlsClient::new(config, name) {
                        Ok(mut client) => {
                            let wait = handshake_wait(self.conv.settings().rtt);
                            io.handshaking = Some(now + wait);
                            let ok = client.write_tls(&mut io.pending).is_ok();
                            io.tls = Some(client);
                            if !ok || !self.flush(poll, lane) {
                                return self.lane_closed(poll, lane, now);
                            }
                        }
                        Err(_) => return self.lane_closed(poll, lane, now),
                    }
                    return;
                }
            }
        }
        if !self.flush(poll, lane) {
            return self.lane_closed(poll, lane, now);
        }
        // On the stack: a session holds no read buffer between events.
        let mut buf = [0u8; READ_CHUNK];
        loop {
            let Some(Some(io)) = self.lanes.get_mut(lane) else {
                return;
            };
            match io.stream.read(&mut buf) {
                Ok(0) => return self.lane_closed(poll, lane, now),
                Ok(n) => {
                    if io.tls.is_none() {
                        self.conv.handle_data(lane, &buf[..n], now);
                    } else if !self.tls_in(poll, lane, &buf[..n], now) {
                        return;
                    }
                    if self.conv.verdict().is_some() || self.verdict.is_some() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.lane_closed(poll, lane, now),
            }
        }
    }

    /// `data` came on the tunnel `lane`: through rustls, then the plaintext to the
    /// conversation. False when the lane is gone.
    fn tls_in(&mut self, poll: &Poll, lane: Lane, data: &[u8], now: Instant) -> bool {
        let Some(Some(io)) = self.lanes.get_mut(lane) else {
            return false;
        };
        let Some(client) = io.tls.as_mut() else {
            return false;
        };
        self.plain.clear();
        let fed = client.read_tls(data).is_ok();
        let out = fed && client.write_tls(&mut io.pending).is_ok();
        if !out {
            self.lane_closed(poll, lane, now);
            return false;
        }
        let handshake_over = io.handshaking.is_some() && !client.is_handshaking();
        let closed = client.receive(&mut self.plain).unwrap_or(true);
        if handshake_over {
            io.handshaking = None;
            let info = client.info();
            if matches!(self.stage, Stage::Handshake(_)) && lane == 0 {
                self.tls_info = Some(info);
                self.start_tunnel(now);
            } else {
                self.conv.handle_connected(lane, now);
            }
        }
        if !self.flush(poll, lane) {
            self.lane_closed(poll, lane, now);
            return false;
        }
        if !self.plain.is_empty() {
            let plain = std::mem::take(&mut self.plain);
            self.conv.handle_data(lane, &plain, now);
            self.plain = plain;
        }
        if closed {
            self.lane_closed(poll, lane, now);
            return false;
        }
        true
    }

    /// The tunnel's lane 0 is up: the conversation starts again inside it.
    fn start_tunnel(&mut self, now: Instant) {
        let Stage::Handshake(ssl) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return;
        };
        let settings = Settings {
            tunnel: Tunnel::Tls,
            ..self.conv.settings().clone()
        };
        let matcher = Arc::clone(self.conv.matcher());
        self.conv = Conversation::new(matcher, self.target.port(), settings, now);
        self.stage = Stage::Tunnel(ssl);
    }

    /// Carries out what the conversation asks for until it asks nothing more, and
    /// moves the session on when the conversation is over.
    fn act(&mut self, poll: &Poll, now: Instant) {
        if matches!(self.stage, Stage::Done) {
            return;
        }
        while let Some(action) = self.conv.poll_action() {
            match action {
                Action::Connect(lane) if lane < LANES => self.waiting.push_back(lane),
                Action::Connect(lane) => self.conv.handle_closed(lane, now),
                Action::Send { lane, probe } => {
                    let payload = self.conv.payload(probe);
                    let ok = match self.lanes.get_mut(lane) {
                        Some(Some(io)) => match io.tls.as_mut() {
                            None => {
                                io.pending.extend_from_slice(payload);
                                true
                            }
                            Some(client) => {
                                client.send(payload).is_ok()
                                    && client.write_tls(&mut io.pending).is_ok()
                            }
                        },
                        _ => false,
                    };
                    if !ok || !self.flush(poll, lane) {
                        self.drop_lane(poll, lane);
                        self.conv.handle_closed(lane, now);
                    }
                }
                Action::Close(lane) => self.drop_lane(poll, lane),
            }
        }
        let Some(verdict) = self.conv.verdict().cloned() else {
            return;
        };
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Plain => match verdict {
                Verdict::Tls(ssl) if tls_config().is_some() => {
                    self.close_all(poll);
                    self.stage = Stage::Handshake(ssl);
                    self.waiting.push_back(0);
                }
                Verdict::Tls(ssl) => self.end(poll, Verdict::Matched(ssl)),
                other => self.end(poll, other),
            },
            Stage::Tunnel(ssl) => {
                let verdict = match verdict {
                    Verdict::Matched(m) => Verdict::Matched(tls::tunnelled(m)),
                    Verdict::Soft(m) => Verdict::Soft(tls::tunnelled(m)),
                    // Nothing named inside the tunnel: it is TLS, and that is all.
                    _ => Verdict::Matched(ssl),
                };
                self.end(poll, verdict);
            }
            stage => self.stage = stage,
        }
    }

    fn end(&mut self, poll: &Poll, verdict: Verdict) {
        self.close_all(poll);
        self.stage = Stage::Done;
        self.verdict = Some(verdict);
    }

    fn connect(&mut self, poll: &Poll, lane: Lane, now: Instant) -> io::Result<()> {
        let mut stream = TcpStream::connect(self.target)?;
        poll.registry().register(
            &mut stream,
            Token(self.base + lane),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        if self.lanes.len() <= lane {
            self.lanes.resize_with(lane + 1, || None);
        }
        // A lane index of the plaintext conversation reused by the tunnel's: the old
        // socket was closed with the plaintext conversation.
        self.drop_lane(poll, lane);
        self.lanes[lane] = Some(LaneIo {
            stream,
            connecting: Some(now),
            pending: Vec::new(),
            tls: None,
            handshaking: None,
        });
        Ok(())
    }

    /// Writes what the kernel takes of `lane`'s pending bytes, asking for a writable
    /// event when some are left; false if the socket failed.
    fn flush(&mut self, poll: &Poll, lane: Lane) -> bool {
        let Some(Some(io)) = self.lanes.get_mut(lane) else {
            return false;
        };
        let had = !io.pending.is_empty();
        if !flush(io) {
            return false;
        }
        if had && !io.pending.is_empty() {
            let token = Token(self.base + lane);
            let _ = poll.registry().reregister(
                &mut io.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            );
        }
        true
    }

    fn drop_lane(&mut self, poll: &Poll, lane: Lane) {
        if let Some(slot) = self.lanes.get_mut(lane)
            && let Some(mut io) = slot.take()
        {
            let _ = poll.registry().deregister(&mut io.stream);
            // RST rather than FIN: no TIME_WAIT left behind (as the port scan closes).
            let _ = socket2::SockRef::from(&io.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

/// Writes what the kernel takes of `io.pending`; false if the socket failed.
fn flush(io: &mut LaneIo) -> bool {
    while !io.pending.is_empty() {
        match io.stream.write(&io.pending) {
            Ok(0) => return false,
            Ok(n) => {
                io.pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Drives one conversation on `first` (the port scan's connected socket to `target`) to
/// its verdict, in a poll of its own (its extra connects are made at once). Returns the
/// verdict and what the outputs write of it. `Silent` if the session ever stops asking for
/// anything without deciding (it does not, by its tests).
pub fn run(
    target: SocketAddr,
    first: std::net::TcpStream,
    conv: Conversation,
    connect_timeout: Duration,
) -> io::Result<(Verdict, ServiceRecord)> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(16);
    let mut session = Session::new(
        &poll,
        0,
        target,
        first,
        conv,
        connect_timeout,
        Instant::now(),
    )?;
    loop {
        session.start_connects(&poll, Instant::now(), |_| true);
        if let (Some(v), Some(record)) = (session.verdict(), session.record()) {
            return Ok((v.clone(), record));
        }
        let Some(deadline) = session.next_deadline() else {
            session.close_all(&poll);
            let v = Verdict::Silent;
            let record = ServiceRecord::from_verdict(&v);
            return Ok((v, record));
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        for event in &events {
            if session.owns(event.token()) {
                session.handle_event(&poll, event.token(), now);
            }
        }
        session.handle_timeout(&poll, Instant::now());
    }
}
