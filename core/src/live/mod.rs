//! The live view behind `upstream_cause_status`: which peers fail, how,
//! since when, and whether it is over.
//!
//! What the shared zone keeps for it, as plain fixed-size records (the
//! caller places them in the zone and holds its lock):
//! - a [`Window`] beside each counter series (same index as the
//!   `metrics` table's slot): its failures over the last 1, 5 and 15
//!   minutes;
//! - a [`PeerRecord`] per failing peer: first and last failure, failures
//!   in a row now and since when, last success;
//! - a ring of the zone's most recent failures ([`Recent`]).
//!
//! [`doc`] turns them, with nginx's own peer states, into the document;
//! [`page`] renders it as the HTML page.

pub mod doc;
pub mod page;

use crate::cause::Cause;
use crate::metrics::{label, mix, LABEL_MAX};
use crate::render::Sink;

/// The windows the document gives, in seconds, with their names.
pub const WINDOWS: [(&str, u64); 3] = [("1m", 60), ("5m", 300), ("15m", 900)];

/// Bytes kept of a failure's detail (nginx's text): longer is cut at a
/// character boundary.
pub const DETAIL_MAX: usize = 160;
/// Bytes kept of a recent failure's request line or stream session.
pub const REQUEST_MAX: usize = 200;

/// Which module's failure: HTTP's or stream's (TCP/UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Kind {
    Http = 1,
    Stream = 2,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Http),
            2 => Some(Kind::Stream),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Stream => "stream",
        }
    }
}

/// Counts in `N` buckets of `STEP` seconds, the newest last written.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Buckets<const N: usize, const STEP: u64> {
    /// The number (seconds / STEP) of the newest bucket written.
    newest: u64,
    counts: [u32; N],
}

impl<const N: usize, const STEP: u64> Buckets<N, STEP> {
    const EMPTY: Self = Buckets {
        newest: 0,
        counts: [0; N],
    };

    fn add(&mut self, now_s: u64, n: u32) {
        // a clock that stepped back adds to the newest bucket
        let b = (now_s / STEP).max(self.newest);
        if b > self.newest {
            let gap = b - self.newest;
            if gap >= N as u64 {
                self.counts = [0; N];
            } else {
                for k in 1..=gap {
                    self.counts[((self.newest + k) % N as u64) as usize] = 0;
                }
            }
            self.newest = b;
        }
        let i = (b % N as u64) as usize;
        self.counts[i] = self.counts[i].saturating_add(n);
    }

    /// The current bucket and the `back` before it.
    fn sum(&self, now_s: u64, back: u64) -> u64 {
        let b = now_s / STEP;
        let lo = b.saturating_sub(back).max(self.newest.saturating_sub(N as u64 - 1));
        let hi = b.min(self.newest);
        (lo..=hi).map(|k| u64::from(self.counts[(k % N as u64) as usize])).sum()
    }
}

/// Failures over the last 1, 5 and 15 minutes: the last minute in
/// 10-second steps (the current 10 seconds and the 6 before them), the
/// others in minutes (the current minute and the 5 or 15 before it). A
/// failure so stays in the 1-minute count for 60 to 70 seconds, in the
/// 5-minute count for 5 to 6 minutes, in the 15-minute count for 15 to 16.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Window {
    tens: Buckets<7, 10>,
    minutes: Buckets<16, 60>,
}

impl Window {
    pub const EMPTY: Window = Window {
        tens: Buckets::EMPTY,
        minutes: Buckets::EMPTY,
    };

    /// Adds `n` failures at `now_s` (seconds since the epoch).
    pub fn add(&mut self, now_s: u64, n: u32) {
        self.tens.add(now_s, n);
        self.minutes.add(now_s, n);
    }

    /// Failures in the window of `secs` seconds ending at `now_s`: 60
    /// (1 minute, in 10-second steps), or 300 or 900 (in minutes).
    pub fn sum(&self, now_s: u64, secs: u64) -> u64 {
        if secs <= 60 {
            self.tens.sum(now_s, secs / 10)
        } else {
            self.minutes.sum(now_s, secs / 60)
        }
    }
}

/// A failure as a [`PeerRecord`] keeps its first and its last.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Event {
    /// Milliseconds since the epoch; 0: none.
    pub ms: u64,
    cause: u8,
    detail_len: u8,
    pub status: u16,
    _pad: u32,
    detail: [u8; DETAIL_MAX],
}

impl Event {
    pub const EMPTY: Event = Event {
        ms: 0,
        cause: 0,
        detail_len: 0,
        status: 0,
        _pad: 0,
        detail: [0; DETAIL_MAX],
    };

    fn of(f: &Failure<'_>) -> Event {
        let mut e = Event {
            ms: f.ms,
            cause: f.cause.to_u8(),
            status: f.status,
            ..Event::EMPTY
        };
        e.detail_len = keep(&mut e.detail, f.detail) as u8;
        e
    }
    pub fn cause(&self) -> Option<Cause> {
        Cause::from_u8(self.cause)
    }
    pub fn detail(&self) -> &[u8] {
        &self.detail[..usize::from(self.detail_len)]
    }
}

/// Copies what fits of `v` into `buf`, never half a UTF-8 character;
/// gives the length kept.
fn keep(buf: &mut [u8], v: &[u8]) -> usize {
    let mut n = v.len().min(buf.len());
    if n < v.len() {
        while n > 0 && v[n] & 0xc0 == 0x80 {
            n -= 1;
        }
    }
    buf[..n].copy_from_slice(&v[..n]);
    n
}

/// One failing peer of one upstream group: a slot of the zone's table of
/// peers (open addressing; a slot, once taken, stays that peer's).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct PeerRecord {
    /// 0: a free slot, else a [`Kind`].
    kind: u8,
    upstream_len: u8,
    peer_len: u8,
    _pad: u8,
    /// Failed attempts since the last success.
    pub in_a_row: u32,
    /// Failed attempts since the zone started.
    pub failures: u64,
    /// The last successful attempt (milliseconds since the epoch; 0:
    /// none since the peer's first failure). To the second: see
    /// [`SuccessFilter`].
    pub last_success_ms: u64,
    /// When the current row of failures began (0: none now).
    pub row_since_ms: u64,
    pub first: Event,
    pub last: Event,
    upstream: [u8; LABEL_MAX],
    peer: [u8; LABEL_MAX],
}

impl PeerRecord {
    pub const EMPTY: PeerRecord = PeerRecord {
        kind: 0,
        upstream_len: 0,
        peer_len: 0,
        _pad: 0,
        in_a_row: 0,
        failures: 0,
        last_success_ms: 0,
        row_since_ms: 0,
        first: Event::EMPTY,
        last: Event::EMPTY,
        upstream: [0; LABEL_MAX],
        peer: [0; LABEL_MAX],
    };

    pub fn kind(&self) -> Option<Kind> {
        Kind::from_u8(self.kind)
    }
    pub fn upstream(&self) -> &[u8] {
        &self.upstream[..usize::from(self.upstream_len)]
    }
    pub fn peer(&self) -> &[u8] {
        &self.peer[..usize::from(self.peer_len)]
    }
    fn is(&self, kind: Kind, upstream: &[u8], peer: &[u8]) -> bool {
        self.kind == kind as u8 && self.upstream() == upstream && self.peer() == peer
    }

    /// A peer's record, with no failure yet (its labels shortened as the
    /// counters shorten them).
    pub fn new(kind: Kind, upstream: &[u8], peer: &[u8]) -> PeerRecord {
        let (upstream, peer) = (label(upstream), label(peer));
        let mut p = PeerRecord::EMPTY;
        p.name(kind, upstream.as_bytes(), peer.as_bytes());
        p
    }

    fn name(&mut self, kind: Kind, upstream: &[u8], peer: &[u8]) {
        self.kind = kind as u8;
        self.upstream[..upstream.len()].copy_from_slice(upstream);
        self.upstream_len = upstream.len() as u8;
        self.peer[..peer.len()].copy_from_slice(peer);
        self.peer_len = peer.len() as u8;
    }

    /// Records a failed attempt of the peer.
    ///
    /// Attempts are recorded when their request ends (its log phase), each
    /// worker on its own: a failure can be recorded after a success that
    /// came later. Such a failure counts, but does not make the peer fail
    /// now: the times decide, not the order of recording.
    pub fn fail(&mut self, f: &Failure<'_>) {
        self.failures = self.failures.saturating_add(1);
        if self.failures == 1 || f.ms < self.first.ms {
            self.first = Event::of(f);
        }
        if f.ms >= self.last.ms {
            self.last = Event::of(f);
        }
        if f.ms < self.last_success_ms {
            return;
        }
        if self.in_a_row == 0 {
            self.row_since_ms = f.ms;
        }
        self.in_a_row = self.in_a_row.saturating_add(1);
    }

    /// Records a successful attempt: the row of failures ends, unless a
    /// failure came after it (recorded first by another worker).
    pub fn succeed(&mut self, ms: u64) {
        self.last_success_ms = self.last_success_ms.max(ms);
        if ms >= self.last.ms {
            self.in_a_row = 0;
            self.row_since_ms = 0;
        }
    }
}

/// A stream session as the recent failures show it in place of a request
/// line: `TCP from 127.0.0.1 to port 5432` (`UDP` for a datagram one),
/// without ` to port N` when the port (its digits) is not known.
pub fn session_text(out: &mut impl Sink, udp: bool, client: &[u8], port: Option<&[u8]>) {
    out.put(if udp { b"UDP from " } else { b"TCP from " });
    out.put(client);
    if let Some(port) = port {
        out.put(b" to port ");
        out.put(port);
    }
}

/// Where a peer's slot search starts (stable across processes: the table
/// is shared).
pub fn peer_hash(kind: Kind, upstream: &[u8], peer: &[u8]) -> u64 {
    let h = mix(mix(u64::from(kind as u8) | 0x6c69_7665 << 8, upstream), peer);
    (h ^ (h >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
}

/// The slot of a peer (labels already shortened), taken when `insert` and
/// a slot is free; `None` when the table is full (or it is not there).
fn slot(peers: &mut [PeerRecord], kind: Kind, upstream: &[u8], peer: &[u8], insert: bool) -> Option<usize> {
    let cap = peers.len();
    if cap == 0 {
        return None;
    }
    let start = (peer_hash(kind, upstream, peer) % cap as u64) as usize;
    for i in 0..cap {
        let at = (start + i) % cap;
        let p = &mut peers[at];
        if p.kind == 0 {
            if !insert {
                return None;
            }
            *p = PeerRecord::EMPTY;
            p.name(kind, upstream, peer);
            return Some(at);
        }
        if p.is(kind, upstream, peer) {
            return Some(at);
        }
    }
    None
}

/// A recent failure, as the zone's ring keeps it.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Recent {
    pub ms: u64,
    kind: u8,
    cause: u8,
    pub status: u16,
    /// Which attempt of its request or session (1 = the first).
    pub attempt: u16,
    upstream_len: u8,
    peer_len: u8,
    detail_len: u8,
    request_len: u8,
    _pad: [u8; 6],
    upstream: [u8; LABEL_MAX],
    peer: [u8; LABEL_MAX],
    detail: [u8; DETAIL_MAX],
    request: [u8; REQUEST_MAX],
}

impl Recent {
    pub const EMPTY: Recent = Recent {
        ms: 0,
        kind: 0,
        cause: 0,
        status: 0,
        attempt: 0,
        upstream_len: 0,
        peer_len: 0,
        detail_len: 0,
        request_len: 0,
        _pad: [0; 6],
        upstream: [0; LABEL_MAX],
        peer: [0; LABEL_MAX],
        detail: [0; DETAIL_MAX],
        request: [0; REQUEST_MAX],
    };

    pub fn kind(&self) -> Option<Kind> {
        Kind::from_u8(self.kind)
    }
    pub fn cause(&self) -> Option<Cause> {
        Cause::from_u8(self.cause)
    }
    pub fn upstream(&self) -> &[u8] {
        &self.upstream[..usize::from(self.upstream_len)]
    }
    pub fn peer(&self) -> &[u8] {
        &self.peer[..usize::from(self.peer_len)]
    }
    pub fn detail(&self) -> &[u8] {
        &self.detail[..usize::from(self.detail_len)]
    }
    pub fn request(&self) -> &[u8] {
        &self.request[..usize::from(self.request_len)]
    }

    /// A failed attempt as the ring keeps it (labels shortened as the
    /// counters shorten them, the texts cut at their sizes).
    pub fn of(f: &Failure<'_>) -> Recent {
        let (up, peer) = (label(f.upstream), label(f.peer));
        let mut r = Recent {
            ms: f.ms,
            kind: f.kind as u8,
            cause: f.cause.to_u8(),
            status: f.status,
            attempt: f.attempt,
            ..Recent::EMPTY
        };
        r.upstream_len = keep(&mut r.upstream, up.as_bytes()) as u8;
        r.peer_len = keep(&mut r.peer, peer.as_bytes()) as u8;
        r.detail_len = keep(&mut r.detail, f.detail) as u8;
        r.request_len = keep(&mut r.request, f.request) as u8;
        r
    }
}

/// The live view's bookkeeping in the zone.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct LiveHeader {
    /// When the zone's counts began (milliseconds since the epoch).
    pub started_ms: u64,
    /// Failures recorded in the ring since the zone started (the next
    /// one goes to `pushed % capacity`).
    pub pushed: u64,
    /// Peers taken in the table.
    pub peers_used: u32,
    /// Failures of peers the full table had no slot for (their counters
    /// and the ring still have them).
    pub peers_dropped: u32,
}

/// One failed attempt, as the live view records it.
#[derive(Clone, Copy, Debug)]
pub struct Failure<'a> {
    pub kind: Kind,
    pub upstream: &'a [u8],
    pub peer: &'a [u8],
    pub cause: Cause,
    /// nginx's text of the attempt (`$upstream_cause_detail`'s).
    pub detail: &'a [u8],
    /// The status the request or session ended with (0: not known yet).
    pub status: u16,
    /// Which attempt (1 = the first).
    pub attempt: u16,
    /// The request line, or the stream session (`TCP 1.2.3.4:5 -> :80`).
    pub request: &'a [u8],
    pub ms: u64,
}

/// The zone's live-view records, borrowed under its lock.
pub struct Live<'a> {
    pub header: &'a mut LiveHeader,
    pub peers: &'a mut [PeerRecord],
    pub ring: &'a mut [Recent],
}

impl Live<'_> {
    /// Records a failed attempt: its peer's record and the ring. (Its
    /// series' [`Window`] is the caller's: it has the slot.)
    pub fn failure(&mut self, f: &Failure<'_>) {
        let (up, peer) = (label(f.upstream), label(f.peer));
        let was = self.header.peers_used;
        match slot(self.peers, f.kind, up.as_bytes(), peer.as_bytes(), true) {
            Some(at) => {
                let p = &mut self.peers[at];
                if p.failures == 0 {
                    self.header.peers_used = was + 1;
                }
                p.fail(f);
            }
            None => self.header.peers_dropped = self.header.peers_dropped.saturating_add(1),
        }
        if !self.ring.is_empty() {
            let at = (self.header.pushed % self.ring.len() as u64) as usize;
            self.ring[at] = Recent::of(f);
            self.header.pushed += 1;
        }
    }

    /// Records a successful attempt of a peer: ends its row of failures.
    /// Peers that never failed have no record and need none.
    pub fn success(&mut self, kind: Kind, upstream: &[u8], peer: &[u8], ms: u64) {
        let (up, peer) = (label(upstream), label(peer));
        if let Some(at) = slot(self.peers, kind, up.as_bytes(), peer.as_bytes(), false) {
            self.peers[at].succeed(ms);
        }
    }

    /// The ring's failures, newest first.
    pub fn recent(&self) -> impl Iterator<Item = &Recent> + '_ {
        let cap = self.ring.len() as u64;
        let n = self.header.pushed.min(cap);
        (0..n).map(move |k| &self.ring[((self.header.pushed - 1 - k) % cap) as usize])
    }
}

/// A worker's memory of the successes it recorded, so that the success
/// path takes the zone's lock at most once a second per peer, and only
/// when a failure was recorded since: a direct-mapped table of (what tells
/// the peer apart, second, the zone's failure count then).
pub struct SuccessFilter {
    seen: [(u64, u64, u64); 64],
}

impl Default for SuccessFilter {
    fn default() -> Self {
        SuccessFilter { seen: [(0, 0, 0); 64] }
    }
}

impl SuccessFilter {
    /// An id's slot (ids may be addresses: their low bits are alignment).
    fn slot(id: u64) -> usize {
        ((id ^ id >> 7 ^ id >> 29) % 64) as usize
    }

    /// Whether a success of the peer `id` tells apart at second `now_s`
    /// must be recorded, the zone having recorded `failures` failures so
    /// far (read without its lock); if so, remembers that it is.
    pub fn must_record(&mut self, id: u64, now_s: u64, failures: u64) -> bool {
        if failures == 0 {
            // no failure yet: no peer has a record to update
            return false;
        }
        let e = &mut self.seen[Self::slot(id)];
        if *e == (id, now_s, failures) {
            return false;
        }
        *e = (id, now_s, failures);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_the_last_minute_in_ten_second_steps_and_the_rest_in_minutes() {
        let mut w = Window::EMPTY;
        let t0 = 1_765_000_020; // a multiple of 60
        w.add(t0, 1);
        w.add(t0 + 5, 2);
        assert_eq!(w.sum(t0 + 9, 60), 3);
        // 60 to 70 s later it still counts in the 1-minute window
        assert_eq!(w.sum(t0 + 60, 60), 3);
        assert_eq!(w.sum(t0 + 69, 60), 3);
        assert_eq!(w.sum(t0 + 70, 60), 0);
        // 5 to 6 minutes in the 5-minute one, 15 to 16 in the 15-minute one
        assert_eq!(w.sum(t0 + 359, 300), 3);
        assert_eq!(w.sum(t0 + 360, 300), 0);
        assert_eq!(w.sum(t0 + 959, 900), 3);
        assert_eq!(w.sum(t0 + 960, 900), 0);
        // a write after a gap clears the buckets it skipped
        w.add(t0 + 300, 4);
        assert_eq!(
            (w.sum(t0 + 300, 60), w.sum(t0 + 300, 300), w.sum(t0 + 300, 900)),
            (4, 7, 7)
        );
        w.add(t0 + 5000, 1);
        assert_eq!((w.sum(t0 + 5000, 60), w.sum(t0 + 5000, 900)), (1, 1));
        // the clock stepped back: counted in the newest bucket
        w.add(t0 + 4000, 1);
        assert_eq!(w.sum(t0 + 5000, 60), 2);
        // asking about the past beyond what it holds
        assert_eq!(w.sum(t0, 900), 0);
    }

    #[test]
    fn a_window_wraps_exactly() {
        let mut w = Window::EMPTY;
        let t0 = 1_765_000_020;
        for k in 0..200u64 {
            w.add(t0 + k * 10, 1);
            let now = t0 + k * 10;
            assert_eq!(w.sum(now, 60), (k + 1).min(7), "{k}");
            // whole minutes: the current one (so far) and the 15 before
            let minutes = (k / 6).min(15);
            let expect = (k + 1).min(minutes * 6 + k % 6 + 1);
            assert_eq!(w.sum(now, 900), expect, "{k}");
        }
    }

    fn failure<'a>(peer: &'a [u8], cause: Cause, ms: u64) -> Failure<'a> {
        Failure {
            kind: Kind::Http,
            upstream: b"backend",
            peer,
            cause,
            detail: b"connect() failed (111: Connection refused) while connecting to upstream",
            status: 502,
            attempt: 1,
            request: b"GET / HTTP/1.1",
            ms,
        }
    }

    struct Zone {
        header: LiveHeader,
        peers: Vec<PeerRecord>,
        ring: Vec<Recent>,
    }

    impl Zone {
        fn new(peers: usize, ring: usize) -> Zone {
            Zone {
                header: LiveHeader::default(),
                peers: vec![PeerRecord::EMPTY; peers],
                ring: vec![Recent::EMPTY; ring],
            }
        }
        fn live(&mut self) -> Live<'_> {
            Live {
                header: &mut self.header,
                peers: &mut self.peers,
                ring: &mut self.ring,
            }
        }
    }

    #[test]
    fn a_peer_record_keeps_first_last_row_and_success() {
        let mut z = Zone::new(8, 4);
        let mut l = z.live();
        l.failure(&failure(b"10.0.0.1:80", Cause::ConnectRefused, 1000));
        l.failure(&failure(b"10.0.0.1:80", Cause::ConnectTimeout, 2000));
        l.success(Kind::Http, b"backend", b"10.0.0.1:80", 3000);
        l.failure(&failure(b"10.0.0.1:80", Cause::UpstreamReset, 4000));
        // another group's peer of the same address is another record
        l.success(Kind::Http, b"other", b"10.0.0.1:80", 5000);
        l.success(Kind::Stream, b"backend", b"10.0.0.1:80", 5000);
        let p = z.peers.iter().find(|p| p.kind().is_some()).unwrap();
        assert_eq!(
            (p.failures, p.in_a_row, p.row_since_ms, p.last_success_ms),
            (3, 1, 4000, 3000)
        );
        assert_eq!((p.first.ms, p.first.cause()), (1000, Some(Cause::ConnectRefused)));
        assert_eq!(
            (p.last.ms, p.last.cause(), p.last.status),
            (4000, Some(Cause::UpstreamReset), 502)
        );
        assert_eq!(z.header.peers_used, 1);
        assert_eq!(z.peers.iter().filter(|p| p.kind().is_some()).count(), 1);
    }

    #[test]
    fn a_session_reads_as_its_protocol_client_and_port() {
        let text = |udp, port| {
            let mut out = Vec::new();
            session_text(&mut out, udp, b"127.0.0.1", port);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(false, Some(&b"5432"[..])), "TCP from 127.0.0.1 to port 5432");
        assert_eq!(text(true, Some(&b"53"[..])), "UDP from 127.0.0.1 to port 53");
        assert_eq!(text(false, None), "TCP from 127.0.0.1");
    }

    #[test]
    fn the_times_decide_not_the_order_of_recording() {
        let mut p = PeerRecord::new(Kind::Http, b"backend", b"10.0.0.1:80");
        p.fail(&failure(b"10.0.0.1:80", Cause::UpstreamReset, 2000));
        // a success at 3000, then a failure at 2500 that another worker
        // recorded late: the peer does not fail now
        p.succeed(3000);
        p.fail(&failure(b"10.0.0.1:80", Cause::ReadTimeout, 2500));
        assert_eq!((p.failures, p.in_a_row, p.last_success_ms), (2, 0, 3000));
        assert_eq!((p.last.ms, p.last.cause()), (2500, Some(Cause::ReadTimeout)));
        // a failure at 4000, then a success at 3500 recorded late: the
        // peer still fails
        p.fail(&failure(b"10.0.0.1:80", Cause::ReadTimeout, 4000));
        p.succeed(3500);
        assert_eq!((p.in_a_row, p.row_since_ms, p.last_success_ms), (1, 4000, 3500));
        // a failure older than the first one recorded: it becomes the first
        p.fail(&failure(b"10.0.0.1:80", Cause::ConnectRefused, 1000));
        assert_eq!(
            (p.first.ms, p.first.cause(), p.failures),
            (1000, Some(Cause::ConnectRefused), 4)
        );
    }

    #[test]
    fn the_ring_gives_the_newest_first_and_keeps_its_size() {
        let mut z = Zone::new(8, 3);
        let mut l = z.live();
        for ms in 1..=5 {
            l.failure(&failure(b"10.0.0.1:80", Cause::ConnectRefused, ms));
        }
        let order: Vec<u64> = l.recent().map(|r| r.ms).collect();
        assert_eq!(order, [5, 4, 3]);
        let r = l.recent().next().unwrap();
        assert_eq!(
            (r.upstream(), r.peer(), r.request(), r.attempt),
            (&b"backend"[..], &b"10.0.0.1:80"[..], &b"GET / HTTP/1.1"[..], 1)
        );
        let mut z = Zone::new(8, 0);
        z.live().failure(&failure(b"10.0.0.1:80", Cause::ConnectRefused, 1));
        assert_eq!(z.live().recent().count(), 0);
    }

    #[test]
    fn a_full_peer_table_counts_what_it_could_not_keep() {
        let mut z = Zone::new(2, 4);
        let mut l = z.live();
        for (i, peer) in [&b"a:1"[..], b"b:1", b"c:1", b"c:1"].iter().enumerate() {
            l.failure(&failure(peer, Cause::ConnectRefused, i as u64));
        }
        assert_eq!(
            (z.header.peers_used, z.header.peers_dropped, z.header.pushed),
            (2, 2, 4)
        );
    }

    #[test]
    fn long_values_are_cut_whole_characters_and_labels_as_the_counters_cut_them() {
        let long = "é".repeat(200);
        let mut z = Zone::new(4, 2);
        let f = Failure {
            detail: long.as_bytes(),
            request: long.as_bytes(),
            upstream: long.as_bytes(),
            ..failure(b"p:1", Cause::ConnectRefused, 1)
        };
        z.live().failure(&f);
        let l = z.live();
        let r = l.recent().next().unwrap();
        assert!(core::str::from_utf8(r.detail()).is_ok() && r.detail().len() <= DETAIL_MAX);
        assert!(core::str::from_utf8(r.request()).is_ok() && r.request().len() <= REQUEST_MAX);
        assert_eq!(r.upstream(), label(long.as_bytes()).as_bytes());
        let p = l.peers.iter().find(|p| p.kind().is_some()).unwrap();
        assert_eq!(p.upstream(), label(long.as_bytes()).as_bytes());
    }

    #[test]
    fn the_success_filter_asks_once_a_second_and_after_each_new_failure() {
        let mut f = SuccessFilter::default();
        assert!(!f.must_record(7, 100, 0), "nothing failed yet");
        assert!(f.must_record(7, 100, 3));
        assert!(!f.must_record(7, 100, 3));
        assert!(f.must_record(7, 100, 4), "a failure since");
        assert!(f.must_record(7, 101, 4), "a new second");
        // (ids that share a slot evict each other)
        let other = (1..)
            .map(|k| 7 + k * 64)
            .find(|&id| SuccessFilter::slot(id) == SuccessFilter::slot(7))
            .unwrap();
        assert!(f.must_record(other, 101, 4), "another peer in the slot");
        assert!(f.must_record(7, 101, 4), "evicted by it");
    }

    #[test]
    fn record_sizes_are_what_the_zone_layout_assumes() {
        assert_eq!(core::mem::size_of::<Window>(), 112);
        assert_eq!(core::mem::size_of::<Event>(), 176);
        assert_eq!(core::mem::size_of::<PeerRecord>(), 640);
        assert_eq!(core::mem::size_of::<Recent>(), 640);
        assert_eq!(core::mem::size_of::<LiveHeader>(), 24);
    }
}
