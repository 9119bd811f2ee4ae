//! The open ports of a world: one listener per open (address, port), all
//! served by one thread that accepts and closes continuously through a mio
//! poll. Without it backlogs fill up during a fast scan and later probes of
//! an open port see no answer (a false "filtered").

use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::sys;

/// The backlog of each listener (the kernel caps it at `net.core.somaxconn`).
pub const BACKLOG: i32 = 4096;

const WAKE: Token = Token(usize::MAX);

/// Running listeners; dropping this stops the thread and closes them.
pub struct Listeners {
    waker: Arc<Waker>,
    thread: Option<JoinHandle<io::Result<()>>>,
    accepted: Arc<AtomicU64>,
    count: usize,
}

impl Listeners {
    /// Binds every address and starts the accept-and-close thread.
    pub fn start(addrs: &[SocketAddrV4]) -> io::Result<Listeners> {
        let poll = Poll::new()?;
        let mut listeners = Vec::with_capacity(addrs.len());
        for (i, addr) in addrs.iter().enumerate() {
            let std_listener = sys::listen_tcp(*addr, BACKLOG)
                .map_err(|e| io::Error::new(e.kind(), format!("listen on {addr}: {e}")))?;
            let mut l = TcpListener::from_std(std_listener);
            poll.registry()
                .register(&mut l, Token(i), Interest::READABLE)?;
            listeners.push(l);
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let accepted = Arc::new(AtomicU64::new(0));
        let count = listeners.len();
        let thread = {
            let accepted = Arc::clone(&accepted);
            std::thread::Builder::new()
                .name("lab-listeners".into())
                .spawn(move || serve(poll, listeners, &accepted))?
        };
        Ok(Listeners {
            waker,
            thread: Some(thread),
            accepted,
            count,
        })
    }

    /// How many listeners.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops the thread and closes the listeners; reports the thread's error, if any.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.waker.wake()?;
        thread
            .join()
            .map_err(|_| io::Error::other("listener thread panicked"))?
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn serve(mut poll: Poll, listeners: Vec<TcpListener>, accepted: &AtomicU64) -> io::Result<()> {
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == WAKE {
                return Ok(());
            }
            let l = &listeners[event.token().0];
            // Edge-triggered: drain the queue. Dropping the stream closes it
            // with a FIN, so the prober's handshake has fully completed.
            loop {
                match l.accept() {
                    Ok((stream, _)) => {
                        drop(stream);
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // ECONNABORTED and friends: the prober went away first.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EMFILE)
                            || e.raw_os_error() == Some(libc::ENFILE) =>
                    {
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}
