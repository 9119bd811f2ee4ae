//! The I/O side of a service conversation: one port's [`Conversation`] driven by mio.
//!
//! The conversation (`service::conversation`) decides everything — which probe goes out
//! on which connection, how long each waits, when it is over. This file only carries its
//! actions out on sockets: it connects the extra lanes, writes probe payloads (keeping
//! what the kernel did not take for the next writable event), reads what comes back and
//! hands it in with the time, and closes lanes with `SO_LINGER` 0 (RST, no `TIME_WAIT`).
//!
//! [`Session`] is registered in a caller's `mio::Poll` under a token range of its own, so
//! the scan's event loop can drive many sessions beside its connects;
//! [`run`] drives one session to its verdict in a poll of its own, the blocking form.
//!
//! A lane's connect has no deadline in the conversation: the session gives it
//! `connect_timeout` (the scan's own) and reports a connect that outlasts it as closed.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::service::conversation::{Action, Conversation, Lane, Verdict};

/// Bytes read from a socket in one `read` call.
const READ_CHUNK: usize = 4096;

struct LaneIo {
    stream: TcpStream,
    /// `Some(started)` while the connect is in progress.
    connecting: Option<Instant>,
    /// Payload bytes the kernel has not taken yet.
    pending: Vec<u8>,
}

/// One port's conversation and the sockets of its lanes.
pub struct Session {
    target: SocketAddr,
    conv: Conversation,
    lanes: Vec<Option<LaneIo>>,
    /// Token of lane 0; lane `n` is `base + n`.
    base: usize,
    connect_timeout: Duration,
    buf: Vec<u8>,
}

impl Session {
    /// Starts a session on `first`, the port scan's own connected socket (lane 0),
    /// registering it under `Token(base)`. Lanes the conversation opens get
    /// `Token(base + lane)`; the caller keeps `base..base + lanes` for this session
    /// (a conversation opens at most one lane per probe in its file).
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
            lanes: vec![Some(LaneIo {
                stream,
                connecting: None,
                pending: Vec::new(),
            })],
            base,
            connect_timeout,
            buf: vec![0; READ_CHUNK],
        };
        s.act(poll, now);
        Ok(s)
    }

    /// The verdict, once the conversation is over.
    pub fn verdict(&self) -> Option<&Verdict> {
        self.conv.verdict()
    }

    /// Whether `token` belongs to one of this session's lanes.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base && token.0 < self.base + self.lanes.len()
    }

    /// When [`Session::handle_timeout`] is next due: the conversation's next wait or
    /// the end of a lane's connect, whichever is first (`None` once over).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.conv.verdict().is_some() {
            return None;
        }
        let connects = self
            .lanes
            .iter()
            .flatten()
            .filter_map(|l| l.connecting.map(|t| t + self.connect_timeout));
        self.conv.next_deadline().into_iter().chain(connects).min()
    }

    /// A readiness event for `token` (one of this session's).
    pub fn handle_event(&mut self, poll: &Poll, token: Token, now: Instant) {
        let lane = token.0 - self.base;
        self.service(lane, now);
        self.act(poll, now);
    }

    /// Time passed: waits and connects that are over end.
    pub fn handle_timeout(&mut self, poll: &Poll, now: Instant) {
        let timeout = self.connect_timeout;
        for lane in 0..self.lanes.len() {
            let late = self.lanes[lane]
                .as_ref()
                .and_then(|l| l.connecting)
                .is_some_and(|t| now >= t + timeout);
            if late {
                self.drop_lane(poll, lane);
                self.conv.handle_closed(lane, now);
            }
        }
        self.conv.handle_timeout(now);
        self.act(poll, now);
    }

    /// Closes every lane still open (the verdict is in, or the scan stops).
    pub fn close_all(&mut self, poll: &Poll) {
        for lane in 0..self.lanes.len() {
            self.drop_lane(poll, lane);
        }
    }

    /// Reads, writes or confirms a connect on `lane`, as far as the socket allows.
    fn service(&mut self, lane: Lane, now: Instant) {
        let Some(Some(io)) = self.lanes.get_mut(lane) else {
            return;
        };
        if io.connecting.is_some() {
            match io.stream.take_error() {
                Ok(None) => {}
                Ok(Some(_)) | Err(_) => {
                    self.lanes[lane] = None;
                    self.conv.handle_closed(lane, now);
                    return;
                }
            }
            match io.stream.peer_addr() {
                Ok(_) => {
                    io.connecting = None;
                    self.conv.handle_connected(lane, now);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => {
                    self.lanes[lane] = None;
                    self.conv.handle_closed(lane, now);
                    return;
                }
            }
            return;
        }
        if !flush(io) {
            self.lanes[lane] = None;
            self.conv.handle_closed(lane, now);
            return;
        }
        loop {
            let Some(Some(io)) = self.lanes.get_mut(lane) else {
                return;
            };
            match io.stream.read(&mut self.buf) {
                Ok(0) => {
                    self.lanes[lane] = None;
                    self.conv.handle_closed(lane, now);
                    return;
                }
                Ok(n) => {
                    self.conv.handle_data(lane, &self.buf[..n], now);
                    if self.conv.verdict().is_some() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.lanes[lane] = None;
                    self.conv.handle_closed(lane, now);
                    return;
                }
            }
        }
    }

    /// Carries out what the conversation asks for until it asks nothing more.
    fn act(&mut self, poll: &Poll, now: Instant) {
        while let Some(action) = self.conv.poll_action() {
            match action {
                Action::Connect(lane) => match self.connect(poll, lane, now) {
                    Ok(()) => {}
                    Err(_) => self.conv.handle_closed(lane, now),
                },
                Action::Send { lane, probe } => {
                    let payload = self.conv.payload(probe).to_vec();
                    let ok = match self.lanes.get_mut(lane) {
                        Some(Some(io)) => {
                            io.pending.extend_from_slice(&payload);
                            let ok = flush(io);
                            if ok && !io.pending.is_empty() {
                                let token = Token(self.base + lane);
                                let _ = poll.registry().reregister(
                                    &mut io.stream,
                                    token,
                                    Interest::READABLE | Interest::WRITABLE,
                                );
                            }
                            ok
                        }
                        _ => false,
                    };
                    if !ok {
                        self.drop_lane(poll, lane);
                        self.conv.handle_closed(lane, now);
                    }
                }
                Action::Close(lane) => self.drop_lane(poll, lane),
            }
        }
        if self.conv.verdict().is_some() {
            self.close_all(poll);
        }
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
        self.lanes[lane] = Some(LaneIo {
            stream,
            connecting: Some(now),
            pending: Vec::new(),
        });
        Ok(())
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
/// its verdict, in a poll of its own. Returns `Silent` if the conversation ever stops
/// asking for anything without deciding (it does not, by its tests).
pub fn run(
    target: SocketAddr,
    first: std::net::TcpStream,
    conv: Conversation,
    connect_timeout: Duration,
) -> io::Result<Verdict> {
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
        if let Some(v) = session.verdict() {
            return Ok(v.clone());
        }
        let Some(deadline) = session.next_deadline() else {
            session.close_all(&poll);
            return Ok(Verdict::Silent);
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
