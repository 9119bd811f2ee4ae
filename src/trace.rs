//! `--trace FILE`: every probe's life, and the engine's decisions, with
//! microsecond timestamps from the scan's one monotonic clock.
//!
//! An engine owns one [`Tracer`] per worker and calls
//! [`Tracer::record`]`(event, now)` where a [`TraceEvent`] happens: the
//! launch, what `connect()` returned, the eager look, readiness, `SO_ERROR`,
//! the `getpeername`/`getsockname` verdicts, a deadline, a retry, the close;
//! and the engine's in-flight cap, window and back-off changes. Recording
//! encodes 32 bytes in place into the worker's own block (no allocation, no
//! lock, no system call); a full block is handed to the sink's writer
//! thread, which writes it to the file and hands the emptied block back for
//! reuse, so the workers never wait on the file or on each other. Probe
//! events are sampled by a seeded hash of the probe
//! index (`--trace-sample 0.01`): the same probes are kept by every worker,
//! every retry of a kept probe is kept, and the same seed keeps the same
//! probes. Engine events are always kept.
//!
//! # File format (version 2)
//!
//! A 24-byte header, then blocks, each one worker's records in the order it
//! made them (the workers' blocks interleave; [`read`] sorts by time):
//!
//! ```text
//! header:  magic "FPTRACE2" (8) | sample, parts per million u32 LE | 0u32 | seed u64 LE
//! block:   worker u8 | 0 0 0 | length of the records in bytes u32 LE | records
//! record:  kind u8 | Δt | [Δprobe] | fields of the kind
//! ```
//!
//! Numbers are LEB128 varints (7 bits a byte, low first). `Δt` is the
//! record's time in microseconds since the scan started minus the previous
//! record's of the block (0 before the first), zigzag-encoded (a worker may
//! stamp an event with the earlier time of the poll it came from); `Δprobe`
//! likewise for the probe's index in the scan's index space, present for
//! probe events only (kinds 1–12). On loopback a probe's four records take
//! about 25 bytes. Fields per kind:
//!
//! | kind | event          | fields |
//! |------|----------------|--------|
//! | 1    | launch, IPv4   | port, attempt, address (4 bytes, network order) |
//! | 2    | launch, IPv6   | port, attempt, address (16 bytes, network order) |
//! | 3    | connect        | errno (0: connected at once) |
//! | 4    | eager look     | its verdict: `SO_ERROR`, `EINPROGRESS` (no peer yet) or 0 (connected; a getsockname record follows) |
//! | 5    | ready          | |
//! | 6    | SO_ERROR       | errno (0: none) |
//! | 7    | getpeername    | errno (0: has a peer) |
//! | 8    | getsockname    | 1 byte, 1: self-connect |
//! | 9    | deadline       | attempt |
//! | 10   | retry          | attempt, delay before it in µs |
//! | 11   | local error    | errno |
//! | 12   | close          | reason index ([`Reason::ALL`]) |
//! | 20   | in-flight cap  | cap |
//! | 21   | window         | window |
//! | 22   | back-off       | delay, µs |
//!
//! The `SO_ERROR` and `getpeername` records follow readiness and deadlines;
//! after an eager look the look's own record carries the verdict, so they
//! are not repeated. Errnos are Linux's numbers. A reader meeting a kind it
//! does not know stops with [`TraceError::UnknownKind`] rather than guess.
//!
//! Version 1 (`FPTRACE1`: fixed 32-byte records `t_us u64 | probe u64 |
//! kind u8 | worker u8 | x u16 | a u32 | b u64`, five times the bytes) is
//! still read.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::classify::Reason;

/// The file's first eight bytes.
pub const MAGIC: &[u8; 8] = b"FPTRACE2";
/// Version 1's first eight bytes (still read).
pub const MAGIC_V1: &[u8; 8] = b"FPTRACE1";
/// Header size in bytes.
pub const HEADER_LEN: usize = 24;
/// A block's header: worker, three zero bytes, the records' length.
const BLOCK_HEADER: usize = 8;
/// The longest record: kind, two 10-byte varints, port and attempt
/// varints, an IPv6 address.
const MAX_RECORD: usize = 1 + 10 + 10 + 3 + 5 + 16;
/// Each worker's block: 64 KiB, written out in one piece.
const BLOCK_BYTES: usize = 64 * 1024;
/// Version 1's record size in bytes.
const RECORD_LEN_V1: usize = 32;
/// Blocks on their way to the writer before a worker waits for it: with the
/// one being filled, at most this many + 1 blocks per worker exist.
const BLOCKS_QUEUED: usize = 8;

/// Something that happened to a probe or to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceEvent {
    /// A connect attempt starts (attempt 0 is the first try).
    Launch {
        probe: u64,
        attempt: u32,
        target: SocketAddr,
    },
    /// What `connect()` returned: 0 (connected at once), `EINPROGRESS`, an
    /// immediate `ECONNREFUSED` (loopback), or a local error.
    Connect { probe: u64, errno: i32 },
    /// The look right after connect, before any readiness event, with its
    /// verdict: the `SO_ERROR` it read, `EINPROGRESS` when there was no
    /// peer yet, 0 when connected (a [`TraceEvent::SockName`] follows).
    EagerLook { probe: u64, errno: i32 },
    /// The poll reported the socket writable (or the thread woke).
    Ready { probe: u64 },
    /// `SO_ERROR` as read on readiness.
    SoError { probe: u64, errno: i32 },
    /// `getpeername`: 0 when there is a peer, else its errno (`ENOTCONN`).
    PeerName { probe: u64, errno: i32 },
    /// `getsockname` compared with the peer: a self-connect or not.
    SockName { probe: u64, self_connect: bool },
    /// The attempt's deadline passed with no answer.
    Deadline { probe: u64, attempt: u32 },
    /// The probe is sent again after `delay`.
    Retry {
        probe: u64,
        attempt: u32,
        delay: Duration,
    },
    /// A failure of this machine (`EMFILE`, `EADDRNOTAVAIL`, ...): reissued.
    LocalError { probe: u64, errno: i32 },
    /// The socket is closed with the probe's final reason.
    Close { probe: u64, reason: Reason },
    /// The engine's cap on probes in flight changed.
    InFlightCap { cap: u64 },
    /// The congestion window changed.
    Window { window: u64 },
    /// The engine backs off (local errors, a drop signal) for `delay`.
    BackOff { delay: Duration },
}

impl TraceEvent {
    /// The probe this event belongs to, or `None` for an engine event.
    pub fn probe(&self) -> Option<u64> {
        use TraceEvent::*;
        match *self {
            Launch { probe, .. }
            | Connect { probe, .. }
            | EagerLook { probe, .. }
            | Ready { probe }
            | SoError { probe, .. }
            | PeerName { probe, .. }
            | SockName { probe, .. }
            | Deadline { probe, .. }
            | Retry { probe, .. }
            | LocalError { probe, .. }
            | Close { probe, .. } => Some(probe),
            InFlightCap { .. } | Window { .. } | BackOff { .. } => None,
        }
    }

    /// A short name, as the report labels it.
    pub fn name(&self) -> &'static str {
        use TraceEvent::*;
        match self {
            Launch { .. } => "launch",
            Connect { .. } => "connect",
            EagerLook { .. } => "eager-look",
            Ready { .. } => "ready",
            SoError { .. } => "so-error",
            PeerName { .. } => "getpeername",
            SockName { .. } => "getsockname",
            Deadline { .. } => "deadline",
            Retry { .. } => "retry",
            LocalError { .. } => "local-error",
            Close { .. } => "close",
            InFlightCap { .. } => "in-flight-cap",
            Window { .. } => "window",
            BackOff { .. } => "back-off",
        }
    }
}

/// One event as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRecord {
    /// Time since the scan started.
    pub t: Duration,
    pub worker: u8,
    pub event: TraceEvent,
}

/// Which probes are traced: a seeded hash of the probe index under a
/// threshold, so a probe is kept or dropped as a whole, in every worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    /// Kept when `hash(probe) < threshold`; `None`: every probe is kept.
    threshold: Option<u64>,
    seed: u64,
    ppm: u32,
}

impl Sampler {
    /// Keeps a `rate` fraction of probes (clamped to 0..=1, rounded to parts
    /// per million).
    pub fn new(rate: f64, seed: u64) -> Sampler {
        let ppm = (rate.clamp(0.0, 1.0) * 1e6).round() as u32;
        Sampler::from_ppm(ppm, seed)
    }

    /// Keeps `ppm` probes in a million (1 000 000 or more: all).
    pub fn from_ppm(ppm: u32, seed: u64) -> Sampler {
        let threshold = if ppm >= 1_000_000 {
            None
        } else {
            Some(((u128::from(ppm) << 64) / 1_000_000) as u64)
        };
        Sampler {
            threshold,
            seed,
            ppm: ppm.min(1_000_000),
        }
    }

    /// Whether the probe's events are recorded.
    #[inline]
    pub fn keeps(&self, probe: u64) -> bool {
        match self.threshold {
            None => true,
            Some(t) => crate::order::splitmix(&mut (probe ^ self.seed)) < t,
        }
    }

    /// The kept fraction.
    pub fn rate(&self) -> f64 {
        f64::from(self.ppm) / 1e6
    }
}

/// What a worker hands the writer thread.
enum ToWriter {
    /// A full block of records, to write and return through `spare`.
    Block(Vec<u8>),
    /// Everything sent before is written: flush the file, answer.
    Flush(SyncSender<io::Result<()>>),
}

/// The trace file shared by the workers: a header, then their blocks, written
/// by one thread of its own.
pub struct TraceSink {
    to_writer: SyncSender<ToWriter>,
    /// Emptied blocks the writer hands back, reused by the workers.
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
    sampler: Sampler,
}

impl std::fmt::Debug for TraceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSink")
            .field("sampler", &self.sampler)
            .finish_non_exhaustive()
    }
}

impl TraceSink {
    /// Writes the header to `out`, starts the writer thread and returns the
    /// sink workers share.
    pub fn new(mut out: Box<dyn Write + Send>, sampler: Sampler) -> io::Result<Arc<TraceSink>> {
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&sampler.ppm.to_le_bytes());
        header[16..24].copy_from_slice(&sampler.seed.to_le_bytes());
        out.write_all(&header)?;
        let (to_writer, from_workers) = mpsc::sync_channel(BLOCKS_QUEUED);
        let spare = Arc::new(Mutex::new(Vec::new()));
        // The writer ends by itself once the sink and every tracer (each
        // holds a sender) are gone; [`TraceSink::flush`] is what waits.
        {
            let spare = Arc::clone(&spare);
            std::thread::Builder::new()
                .name("fastport-trace".into())
                .spawn(move || write_blocks(out, &from_workers, &spare))?;
        }
        Ok(Arc::new(TraceSink {
            to_writer,
            spare,
            sampler,
        }))
    }

    /// Creates `path` and writes the header.
    pub fn create(path: &std::path::Path, sampler: Sampler) -> io::Result<Arc<TraceSink>> {
        let file = std::fs::File::create(path)?;
        TraceSink::new(Box::new(file), sampler)
    }

    /// A tracer for one worker.
    pub fn tracer(self: &Arc<Self>, worker: u8) -> Tracer {
        Tracer::new(self, worker)
    }

    /// Waits until every block the tracers handed over (call after they
    /// dropped or [`Tracer::finish`]ed) is written, and flushes the file.
    /// Returns the writer's first error: a trace that could not be written
    /// whole is reported, once, here.
    pub fn flush(&self) -> io::Result<()> {
        let (reply, answer) = mpsc::sync_channel(1);
        let gone = || io::Error::other("the trace writer stopped");
        self.to_writer
            .send(ToWriter::Flush(reply))
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

/// The writer thread: blocks to the file in the order they come; after the
/// first error the rest are dropped and every flush reports that error.
fn write_blocks(
    mut out: Box<dyn Write + Send>,
    from_workers: &Receiver<ToWriter>,
    spare: &Mutex<Vec<Vec<u8>>>,
) {
    let mut failed: Option<io::Error> = None;
    for message in from_workers {
        match message {
            ToWriter::Block(mut block) => {
                if failed.is_none() {
                    if let Err(e) = out.write_all(&block) {
                        failed = Some(e);
                    }
                }
                block.clear();
                spare
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(block);
            }
            ToWriter::Flush(reply) => {
                let result = match &failed {
                    Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
                    None => out.flush(),
                };
                let _ = reply.send(result);
            }
        }
    }
    let _ = out.flush();
}

fn take_spare(spare: &Mutex<Vec<Vec<u8>>>) -> Vec<u8> {
    spare
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(BLOCK_BYTES))
}

/// One worker's recorder: events encoded into a private block, full blocks
/// handed to the sink's writer.
pub struct Tracer {
    /// The block being filled: its header, then records (capacity
    /// `BLOCK_BYTES`, never grown).
    buf: Vec<u8>,
    /// The previous record's time and probe in this block (deltas).
    last_t: u64,
    last_probe: u64,
    to_writer: SyncSender<ToWriter>,
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
    worker: u8,
    sampler: Sampler,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("worker", &self.worker)
            .field("buffered_bytes", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Tracer {
    fn new(sink: &TraceSink, worker: u8) -> Tracer {
        let mut t = Tracer {
            buf: take_spare(&sink.spare),
            last_t: 0,
            last_probe: 0,
            to_writer: sink.to_writer.clone(),
            spare: Arc::clone(&sink.spare),
            worker,
            sampler: sink.sampler,
        };
        t.start_block();
        t
    }

    /// Whether `probe`'s events are kept: an engine can skip gathering what
    /// an event would carry.
    #[inline]
    pub fn keeps(&self, probe: u64) -> bool {
        self.sampler.keeps(probe)
    }

    /// Records `event` at `now` (time since the scan started), unless its
    /// probe is not sampled.
    #[inline]
    pub fn record(&mut self, event: TraceEvent, now: Duration) {
        if let Some(p) = event.probe() {
            if !self.sampler.keeps(p) {
                return;
            }
        }
        if self.buf.len() + MAX_RECORD > self.buf.capacity() {
            self.hand_over();
        }
        let t = micros(now);
        let dt = t.wrapping_sub(self.last_t) as i64;
        self.last_t = t;
        let probe = event.probe().map(|p| {
            let d = p.wrapping_sub(self.last_probe) as i64;
            self.last_probe = p;
            d
        });
        encode(&mut self.buf, event, dt, probe);
    }

    /// The block's header, its length filled in when it is handed over.
    fn start_block(&mut self) {
        self.buf.clear();
        self.buf
            .extend_from_slice(&[self.worker, 0, 0, 0, 0, 0, 0, 0]);
        self.last_t = 0;
        self.last_probe = 0;
    }

    /// Sends the block to the writer and starts an empty one.
    #[cold]
    fn hand_over(&mut self) {
        if self.buf.len() <= BLOCK_HEADER {
            return;
        }
        let len = (self.buf.len() - BLOCK_HEADER) as u32;
        self.buf[4..8].copy_from_slice(&len.to_le_bytes());
        let next = take_spare(&self.spare);
        let full = std::mem::replace(&mut self.buf, next);
        self.start_block();
        // The writer only stops when the sink is gone, which this tracer's
        // sender prevents; a failed send loses this block, and the sink's
        // flush reports why.
        let _ = self.to_writer.send(ToWriter::Block(full));
    }

    /// Hands the buffered events to the writer (the sink's
    /// [`TraceSink::flush`] waits for them to be written and reports a
    /// write error).
    pub fn finish(mut self) -> io::Result<()> {
        self.hand_over();
        Ok(())
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.hand_over();
    }
}

/// A LEB128 varint.
#[inline]
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A signed difference as a varint (zigzag: small either way is short).
#[inline]
fn put_delta(buf: &mut Vec<u8>, d: i64) {
    put_varint(buf, ((d << 1) ^ (d >> 63)) as u64);
}

/// Appends `event`'s record: kind, Δt, Δprobe (probe events), fields.
#[inline]
fn encode(buf: &mut Vec<u8>, event: TraceEvent, dt: i64, probe: Option<i64>) {
    use TraceEvent::*;
    let kind = match event {
        Launch { target, .. } if target.is_ipv4() => 1,
        Launch { .. } => 2,
        Connect { .. } => 3,
        EagerLook { .. } => 4,
        Ready { .. } => 5,
        SoError { .. } => 6,
        PeerName { .. } => 7,
        SockName { .. } => 8,
        Deadline { .. } => 9,
        Retry { .. } => 10,
        LocalError { .. } => 11,
        Close { .. } => 12,
        InFlightCap { .. } => 20,
        Window { .. } => 21,
        BackOff { .. } => 22,
    };
    buf.push(kind);
    put_delta(buf, dt);
    if let Some(d) = probe {
        put_delta(buf, d);
    }
    let errno = |e: i32| u64::from(e as u32);
    match event {
        Launch {
            attempt, target, ..
        } => {
            put_varint(buf, u64::from(target.port()));
            put_varint(buf, u64::from(attempt));
            match target.ip() {
                IpAddr::V4(ip) => buf.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) => buf.extend_from_slice(&ip.octets()),
            }
        }
        Connect { errno: e, .. }
        | EagerLook { errno: e, .. }
        | SoError { errno: e, .. }
        | PeerName { errno: e, .. }
        | LocalError { errno: e, .. } => put_varint(buf, errno(e)),
        Ready { .. } => {}
        SockName { self_connect, .. } => buf.push(u8::from(self_connect)),
        Deadline { attempt, .. } => put_varint(buf, u64::from(attempt)),
        Retry { attempt, delay, .. } => {
            put_varint(buf, u64::from(attempt));
            put_varint(buf, micros(delay));
        }
        Close { reason, .. } => put_varint(buf, reason.index() as u64),
        InFlightCap { cap: v } | Window { window: v } => put_varint(buf, v),
        BackOff { delay } => put_varint(buf, micros(delay)),
    }
}

/// Whole microseconds of `d` (saturating: 584 000 years).
#[inline]
fn micros(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()))
}

/// Why a trace file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read the trace: {0}")]
    Io(#[from] io::Error),
    #[error("not a FastPort trace (no FPTRACE1 header)")]
    BadMagic,
    #[error("the trace ends inside a record at byte {offset}")]
    Truncated { offset: u64 },
    #[error("unknown event kind {kind} at byte {offset}")]
    UnknownKind { kind: u8, offset: u64 },
}

/// A whole trace, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The fraction of probes that was kept.
    pub sample: f64,
    pub seed: u64,
    /// Every record, by time (stable: one worker's order is kept).
    pub records: Vec<TraceRecord>,
}

/// Reads a trace file written by [`TraceSink`].
pub fn read(mut input: impl Read) -> Result<Trace, TraceError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact_or(&mut input, &mut header, || TraceError::BadMagic)?;
    let v1 = match &header[..8] {
        m if m == MAGIC => false,
        m if m == MAGIC_V1 => true,
        _ => return Err(TraceError::BadMagic),
    };
    let ppm = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let seed = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    let mut data = Vec::new();
    input.read_to_end(&mut data)?;
    let mut records = if v1 {
        read_v1(&data)?
    } else {
        read_blocks(&data)?
    };
    records.sort_by_key(|r| r.t);
    Ok(Trace {
        sample: f64::from(ppm) / 1e6,
        seed,
        records,
    })
}

/// Version 2's blocks (after the header).
fn read_blocks(data: &[u8]) -> Result<Vec<TraceRecord>, TraceError> {
    let mut records = Vec::with_capacity(data.len() / 6);
    let mut at = 0;
    while at < data.len() {
        let offset = (HEADER_LEN + at) as u64;
        let Some(head) = data.get(at..at + BLOCK_HEADER) else {
            return Err(TraceError::Truncated { offset });
        };
        let worker = head[0];
        let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        let start = at + BLOCK_HEADER;
        let Some(block) = data.get(start..start + len) else {
            return Err(TraceError::Truncated { offset });
        };
        let mut r = Cursor {
            data: block,
            at: 0,
            base: (HEADER_LEN + start) as u64,
        };
        let (mut t, mut probe) = (0u64, 0u64);
        while r.at < block.len() {
            let record_at = r.base + r.at as u64;
            let kind = r.byte()?;
            t = t.wrapping_add(r.delta()? as u64);
            if (1..=12).contains(&kind) {
                probe = probe.wrapping_add(r.delta()? as u64);
            }
            let event = decode(kind, probe, &mut r).map_err(|e| match e {
                TraceError::UnknownKind { kind, .. } => TraceError::UnknownKind {
                    kind,
                    offset: record_at,
                },
                e => e,
            })?;
            records.push(TraceRecord {
                t: Duration::from_micros(t),
                worker,
                event,
            });
        }
        at = start + len;
    }
    Ok(records)
}

/// Reads the fields of one record.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
    /// The file offset of `data[0]`, for errors.
    base: u64,
}

impl Cursor<'_> {
    fn short(&self) -> TraceError {
        TraceError::Truncated {
            offset: self.base + self.at as u64,
        }
    }

    fn byte(&mut self) -> Result<u8, TraceError> {
        let b = *self.data.get(self.at).ok_or_else(|| self.short())?;
        self.at += 1;
        Ok(b)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], TraceError> {
        let b = self
            .data
            .get(self.at..self.at + N)
            .ok_or_else(|| self.short())?;
        self.at += N;
        Ok(b.try_into().expect("N bytes"))
    }

    fn varint(&mut self) -> Result<u64, TraceError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.short())
    }

    fn delta(&mut self) -> Result<i64, TraceError> {
        let z = self.varint()?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    fn u32(&mut self) -> Result<u32, TraceError> {
        Ok(self.varint()? as u32)
    }

    /// An errno, written as its bits in a `u32` (see `encode`).
    fn errno(&mut self) -> Result<i32, TraceError> {
        Ok(self.u32()? as i32)
    }
}

/// One version-2 record's fields, after its kind, time and probe.
fn decode(kind: u8, probe: u64, r: &mut Cursor<'_>) -> Result<TraceEvent, TraceError> {
    use TraceEvent::*;
    let unknown = TraceError::UnknownKind { kind, offset: 0 };
    Ok(match kind {
        1 | 2 => {
            let port = r.u32()? as u16;
            let attempt = r.u32()?;
            let ip: IpAddr = if kind == 1 {
                Ipv4Addr::from(r.bytes::<4>()?).into()
            } else {
                Ipv6Addr::from(r.bytes::<16>()?).into()
            };
            Launch {
                probe,
                attempt,
                target: SocketAddr::new(ip, port),
            }
        }
        3 => Connect {
            probe,
            errno: r.errno()?,
        },
        4 => EagerLook {
            probe,
            errno: r.errno()?,
        },
        5 => Ready { probe },
        6 => SoError {
            probe,
            errno: r.errno()?,
        },
        7 => PeerName {
            probe,
            errno: r.errno()?,
        },
        8 => SockName {
            probe,
            self_connect: r.byte()? != 0,
        },
        9 => Deadline {
            probe,
            attempt: r.u32()?,
        },
        10 => Retry {
            probe,
            attempt: r.u32()?,
            delay: Duration::from_micros(r.varint()?),
        },
        11 => LocalError {
            probe,
            errno: r.errno()?,
        },
        12 => match Reason::ALL.get(r.varint()? as usize) {
            Some(&reason) => Close { probe, reason },
            None => return Err(unknown),
        },
        20 => InFlightCap { cap: r.varint()? },
        21 => Window {
            window: r.varint()?,
        },
        22 => BackOff {
            delay: Duration::from_micros(r.varint()?),
        },
        _ => return Err(unknown),
    })
}

/// Version 1's fixed records (after the header).
fn read_v1(data: &[u8]) -> Result<Vec<TraceRecord>, TraceError> {
    const RECORD_LEN: usize = RECORD_LEN_V1;
    let mut records = Vec::with_capacity(data.len() / RECORD_LEN);
    let mut chunks = data.chunks(RECORD_LEN).enumerate();
    while let Some((i, r)) = chunks.next() {
        let offset = (HEADER_LEN + i * RECORD_LEN) as u64;
        if r.len() < RECORD_LEN {
            return Err(TraceError::Truncated { offset });
        }
        let u64_at = |o: usize| u64::from_le_bytes(r[o..o + 8].try_into().expect("8 bytes"));
        let t = u64_at(0);
        let probe = u64_at(8);
        let kind = r[16];
        let worker = r[17];
        let x = u16::from_le_bytes([r[18], r[19]]);
        let a = u32::from_le_bytes(r[20..24].try_into().expect("4 bytes"));
        let b = u64_at(24);
        let errno = a as i32;
        use TraceEvent::*;
        let event = match kind {
            1 => Launch {
                probe,
                attempt: a,
                target: SocketAddr::new(Ipv4Addr::from(b as u32).into(), x),
            },
            2 => {
                let low = match chunks.next() {
                    Some((_, tail)) if tail.len() == RECORD_LEN && tail[16] == 255 => {
                        u64::from_le_bytes(tail[24..32].try_into().expect("8 bytes"))
                    }
                    Some((_, tail)) if tail.len() < RECORD_LEN => {
                        return Err(TraceError::Truncated {
                            offset: offset + RECORD_LEN as u64,
                        });
                    }
                    Some((_, tail)) => {
                        return Err(TraceError::UnknownKind {
                            kind: tail[16],
                            offset: offset + RECORD_LEN as u64,
                        });
                    }
                    None => {
                        return Err(TraceError::Truncated {
                            offset: offset + RECORD_LEN as u64,
                        });
                    }
                };
                let ip = Ipv6Addr::from((u128::from(b) << 64) | u128::from(low));
                Launch {
                    probe,
                    attempt: a,
                    target: SocketAddr::new(ip.into(), x),
                }
            }
            3 => Connect { probe, errno },
            4 => EagerLook { probe, errno },
            5 => Ready { probe },
            6 => SoError { probe, errno },
            7 => PeerName { probe, errno },
            8 => SockName {
                probe,
                self_connect: a != 0,
            },
            9 => Deadline { probe, attempt: a },
            10 => Retry {
                probe,
                attempt: a,
                delay: Duration::from_micros(b),
            },
            11 => LocalError { probe, errno },
            12 => match Reason::ALL.get(a as usize) {
                Some(&reason) => Close { probe, reason },
                None => return Err(TraceError::UnknownKind { kind, offset }),
            },
            20 => InFlightCap { cap: b },
            21 => Window { window: b },
            22 => BackOff {
                delay: Duration::from_micros(b),
            },
            _ => return Err(TraceError::UnknownKind { kind, offset }),
        };
        records.push(TraceRecord {
            t: Duration::from_micros(t),
            worker,
            event,
        });
    }
    Ok(records)
}

fn read_exact_or(
    input: &mut impl Read,
    buf: &mut [u8],
    short: impl FnOnce() -> TraceError,
) -> Result<(), TraceError> {
    match input.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(short()),
        Err(e) => Err(e.into()),
    }
}

/// Whether `bytes` start like a trace file, of either version (for telling
/// inputs apart).
pub fn is_trace(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC) || bytes.starts_with(MAGIC_V1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::SharedBuf;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn every_event() -> Vec<TraceEvent> {
        use TraceEvent::*;
        vec![
            Launch {
                probe: 7,
                attempt: 0,
                target: "127.0.0.1:80".parse().unwrap(),
            },
            Connect {
                probe: 7,
                errno: libc::EINPROGRESS,
            },
            EagerLook {
                probe: 7,
                errno: libc::EINPROGRESS,
            },
            Ready { probe: 7 },
            SoError {
                probe: 7,
                errno: libc::ECONNREFUSED,
            },
            PeerName {
                probe: 7,
                errno: libc::ENOTCONN,
            },
            SockName {
                probe: 7,
                self_connect: true,
            },
            Deadline {
                probe: 7,
                attempt: 1,
            },
            Retry {
                probe: 7,
                attempt: 2,
                delay: us(1500),
            },
            LocalError {
                probe: 7,
                errno: libc::EADDRNOTAVAIL,
            },
            Launch {
                probe: u64::MAX - 1,
                attempt: 3,
                target: "[2001:2::dead:beef]:65535".parse().unwrap(),
            },
            Close {
                probe: 7,
                reason: Reason::SelfConnect,
            },
            InFlightCap { cap: 4096 },
            Window { window: 17 },
            BackOff { delay: us(250_000) },
        ]
    }

    #[test]
    fn every_event_round_trips_with_its_time_and_worker() {
        let out = SharedBuf::default();
        let sink = TraceSink::new(Box::new(out.clone()), Sampler::new(1.0, 9)).unwrap();
        let mut tracer = sink.tracer(3);
        let events = every_event();
        for (i, e) in events.iter().enumerate() {
            tracer.record(*e, us(10 * i as u64));
        }
        tracer.finish().unwrap();
        sink.flush().unwrap();
        let bytes = out.bytes();
        // A header, one block: far less than version 1's 32 bytes a record.
        assert!(bytes.len() < HEADER_LEN + BLOCK_HEADER + 12 * events.len());
        assert!(is_trace(&bytes));
        let trace = read(bytes.as_slice()).unwrap();
        assert_eq!((trace.sample, trace.seed), (1.0, 9));
        let back: Vec<_> = trace.records.iter().map(|r| r.event).collect();
        assert_eq!(back, events);
        for (i, r) in trace.records.iter().enumerate() {
            assert_eq!((r.t, r.worker), (us(10 * i as u64), 3));
        }
    }

    #[test]
    fn workers_blocks_interleave_and_the_reader_sorts_them_by_time() {
        let out = SharedBuf::default();
        let sink = TraceSink::new(Box::new(out.clone()), Sampler::new(1.0, 0)).unwrap();
        let mut a = sink.tracer(0);
        let mut b = sink.tracer(1);
        // More than two blocks' worth each, so blocks are handed over, and
        // emptied blocks reused, mid-run.
        for i in 0..10_000u64 {
            a.record(TraceEvent::Ready { probe: 2 * i }, us(2 * i));
            b.record(TraceEvent::Ready { probe: 2 * i + 1 }, us(2 * i + 1));
        }
        drop(a);
        b.finish().unwrap();
        sink.flush().unwrap();
        let bytes = out.bytes();
        let trace = read(bytes.as_slice()).unwrap();
        assert_eq!(trace.records.len(), 20_000);
        for (i, r) in trace.records.iter().enumerate() {
            assert_eq!(r.t, us(i as u64));
            assert_eq!(r.event, TraceEvent::Ready { probe: i as u64 });
            assert_eq!(r.worker, (i % 2) as u8);
        }
    }

    #[test]
    fn sampling_keeps_whole_probes_near_the_rate_and_all_engine_events() {
        let out = SharedBuf::default();
        let sampler = Sampler::new(0.01, 42);
        let sink = TraceSink::new(Box::new(out.clone()), sampler).unwrap();
        let mut t = sink.tracer(0);
        for p in 0..100_000u64 {
            t.record(TraceEvent::Ready { probe: p }, us(p));
            t.record(
                TraceEvent::Close {
                    probe: p,
                    reason: Reason::ConnRefused,
                },
                us(p),
            );
        }
        for w in 0..10 {
            t.record(TraceEvent::Window { window: w }, us(0));
        }
        t.finish().unwrap();
        sink.flush().unwrap();
        let trace = read(out.bytes().as_slice()).unwrap();
        assert_eq!(trace.sample, 0.01);
        let kept: Vec<u64> = trace
            .records
            .iter()
            .filter_map(|r| match r.event {
                TraceEvent::Ready { probe } => Some(probe),
                _ => None,
            })
            .collect();
        // 1 % of 100 000 is 1000; a fair hash lands within 15 %.
        assert!((850..=1150).contains(&kept.len()), "{}", kept.len());
        for p in &kept {
            assert!(sampler.keeps(*p));
        }
        let closes = trace
            .records
            .iter()
            .filter(|r| matches!(r.event, TraceEvent::Close { .. }))
            .count();
        assert_eq!(closes, kept.len());
        let windows = trace
            .records
            .iter()
            .filter(|r| r.event.probe().is_none())
            .count();
        assert_eq!(windows, 10);
        // Another seed keeps other probes.
        let other = Sampler::new(0.01, 43);
        assert!(kept.iter().filter(|&&p| other.keeps(p)).count() < kept.len() / 4);
    }

    /// A `Write` that takes `left` bytes, then fails.
    struct Full {
        left: usize,
    }

    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            let n = b.len().min(self.left);
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_of_the_writer_thread_is_reported_by_flush() {
        let sink = TraceSink::new(
            Box::new(Full {
                left: HEADER_LEN + 100,
            }),
            Sampler::new(1.0, 0),
        )
        .unwrap();
        let mut t = sink.tracer(0);
        for p in 0..(3 * BLOCK_BYTES as u64) {
            t.record(TraceEvent::Ready { probe: p }, us(p));
        }
        t.finish().unwrap();
        let e = sink.flush().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        // And again: the error stays.
        assert!(sink.flush().is_err());
    }

    #[test]
    fn sample_rate_extremes() {
        assert!((0..1000).all(|p| Sampler::new(1.0, 1).keeps(p)));
        assert!((0..1000).all(|p| !Sampler::new(0.0, 1).keeps(p)));
    }

    #[test]
    fn bad_files_are_named_errors() {
        assert!(matches!(read(&b"FPTRACE"[..]), Err(TraceError::BadMagic)));
        assert!(matches!(
            read(&b"NOTATRACE-0123456789012345"[..]),
            Err(TraceError::BadMagic)
        ));
        let out = SharedBuf::default();
        let sink = TraceSink::new(Box::new(out.clone()), Sampler::new(1.0, 0)).unwrap();
        let mut t = sink.tracer(0);
        t.record(TraceEvent::Ready { probe: 1 }, us(1));
        t.finish().unwrap();
        sink.flush().unwrap();
        let mut bytes = out.bytes();
        let whole = bytes.clone();
        bytes.pop();
        assert!(matches!(
            read(bytes.as_slice()),
            Err(TraceError::Truncated { offset: 24 })
        ));
        let mut unknown = whole;
        unknown[HEADER_LEN + BLOCK_HEADER] = 99;
        assert!(matches!(
            read(unknown.as_slice()),
            Err(TraceError::UnknownKind {
                kind: 99,
                offset: 32
            })
        ));
    }

    #[test]
    fn a_loopback_probe_takes_under_thirty_bytes() {
        let out = SharedBuf::default();
        let sink = TraceSink::new(Box::new(out.clone()), Sampler::new(1.0, 0)).unwrap();
        let mut t = sink.tracer(0);
        let n = 10_000u64;
        for p in 0..n {
            let t0 = 4 * p;
            let target = SocketAddr::from(([127, 0, 0, 1], 1 + p as u16));
            use TraceEvent::*;
            t.record(
                Launch {
                    probe: 2 * p,
                    attempt: 0,
                    target,
                },
                us(t0),
            );
            let errno = libc::EINPROGRESS;
            t.record(
                Connect {
                    probe: 2 * p,
                    errno,
                },
                us(t0 + 3),
            );
            let errno = libc::ECONNREFUSED;
            t.record(
                EagerLook {
                    probe: 2 * p,
                    errno,
                },
                us(t0 + 3),
            );
            let reason = Reason::ConnRefused;
            t.record(
                Close {
                    probe: 2 * p,
                    reason,
                },
                us(t0 + 4),
            );
        }
        t.finish().unwrap();
        sink.flush().unwrap();
        let bytes = out.bytes();
        assert!(
            bytes.len() < HEADER_LEN + 30 * n as usize,
            "{}",
            bytes.len()
        );
        let trace = read(bytes.as_slice()).unwrap();
        assert_eq!(trace.records.len(), 4 * n as usize);
        let last = trace.records.last().unwrap();
        assert_eq!(last.t, us(4 * (n - 1) + 4));
        assert_eq!(
            last.event,
            TraceEvent::Close {
                probe: 2 * (n - 1),
                reason: Reason::ConnRefused
            }
        );
    }

    #[test]
    fn version_one_files_are_still_read() {
        let mut file = Vec::new();
        file.extend_from_slice(MAGIC_V1);
        file.extend_from_slice(&500_000u32.to_le_bytes());
        file.extend_from_slice(&0u32.to_le_bytes());
        file.extend_from_slice(&7u64.to_le_bytes());
        // t 5 µs, probe 3, launch IPv4, worker 1, port 80, attempt 0, 127.0.0.1
        file.extend_from_slice(&5u64.to_le_bytes());
        file.extend_from_slice(&3u64.to_le_bytes());
        file.extend_from_slice(&[1, 1]);
        file.extend_from_slice(&80u16.to_le_bytes());
        file.extend_from_slice(&0u32.to_le_bytes());
        file.extend_from_slice(&u64::from(u32::from(Ipv4Addr::LOCALHOST)).to_le_bytes());
        assert!(is_trace(&file));
        let trace = read(file.as_slice()).unwrap();
        assert_eq!((trace.sample, trace.seed), (0.5, 7));
        assert_eq!(
            trace.records,
            [TraceRecord {
                t: us(5),
                worker: 1,
                event: TraceEvent::Launch {
                    probe: 3,
                    attempt: 0,
                    target: "127.0.0.1:80".parse().unwrap()
                }
            }]
        );
    }
}
