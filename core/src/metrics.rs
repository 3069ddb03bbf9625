//! The counters behind `upstream_cause_metrics`: a fixed-capacity table of
//! series (open addressing, no allocation), and its rendering in the
//! Prometheus text exposition format 0.0.4.
//!
//! The table lives wherever the caller puts it (nginx: a shared-memory
//! zone); the caller serialises access (nginx: the slab pool's mutex).

use core::cmp::Ordering;

use crate::cause::Cause;
use crate::render::Sink;

/// Bytes kept of a label value (an upstream name, a peer address): room
/// for every unix socket path (`unix:` and 107 bytes), every IPv6
/// `[address]:port`, and host names to 122 bytes with their port. A longer
/// value is kept as its first bytes, `~` and a hash of the whole (see
/// [`label`]): two long values that share their start stay two series.
pub const LABEL_MAX: usize = 128;

/// Hex digits of the hash that ends a shortened label.
const HASH_DIGITS: usize = 8;

/// Series kept back for overflow (`peer="other"`, then `upstream="other"`);
/// at most half of a small table.
pub const RESERVE: usize = 64;

pub const OTHER: &[u8] = b"other";

/// Which family a series belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Family {
    /// `nginx_upstream_cause_total{upstream,peer,cause}`: failed attempts.
    Attempts = 1,
    /// `nginx_upstream_cause_responses_total{upstream,cause,status}`.
    Responses = 2,
    /// `nginx_upstream_cause_stream_total{upstream,peer,cause}`: failed
    /// attempts of TCP and UDP sessions (nginx's `stream {}`).
    StreamAttempts = 3,
    /// `nginx_upstream_cause_stream_sessions_total{upstream,cause,status}`:
    /// sessions whose final outcome was a failure, by nginx's `$status`.
    StreamSessions = 4,
}

/// One series: its labels and its count. Plain data, fixed size, so that a
/// table of them can live in shared memory.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Series {
    /// 0 = free slot, else a [`Family`].
    family: u8,
    cause: u8,
    status: u16,
    upstream_len: u8,
    peer_len: u8,
    upstream: [u8; LABEL_MAX],
    peer: [u8; LABEL_MAX],
    pub count: u64,
}

impl Series {
    pub const EMPTY: Series = Series {
        family: 0,
        cause: 0,
        status: 0,
        upstream_len: 0,
        peer_len: 0,
        upstream: [0; LABEL_MAX],
        peer: [0; LABEL_MAX],
        count: 0,
    };

    pub fn family(&self) -> Option<Family> {
        match self.family {
            1 => Some(Family::Attempts),
            2 => Some(Family::Responses),
            3 => Some(Family::StreamAttempts),
            4 => Some(Family::StreamSessions),
            _ => None,
        }
    }
    pub fn cause(&self) -> Option<Cause> {
        Cause::from_u8(self.cause)
    }
    pub fn status(&self) -> u16 {
        self.status
    }
    pub fn upstream(&self) -> &[u8] {
        &self.upstream[..usize::from(self.upstream_len)]
    }
    pub fn peer(&self) -> &[u8] {
        &self.peer[..usize::from(self.peer_len)]
    }

    /// The series of `key` (its labels shortened as [`label`] does),
    /// counting `count`: for a table kept elsewhere than the zone (the
    /// offline classifier's live view).
    pub fn of(key: &Key<'_>, count: u64) -> Series {
        let (up, peer) = (label(key.upstream), label(key.peer));
        let mut s = Series::EMPTY;
        s.set(&Key {
            upstream: up.as_bytes(),
            peer: peer.as_bytes(),
            ..*key
        });
        s.count = count;
        s
    }

    /// Whether the series is `k`'s; `k`'s labels are already [`label`]s.
    fn matches(&self, k: &Key<'_>) -> bool {
        self.family == k.family as u8
            && self.cause == k.cause.to_u8()
            && self.status == k.status
            && self.upstream() == k.upstream
            && self.peer() == k.peer
    }

    /// Makes the slot `k`'s; `k`'s labels are already [`label`]s.
    fn set(&mut self, k: &Key<'_>) {
        let (u, p) = (k.upstream, k.peer);
        *self = Series::EMPTY;
        self.family = k.family as u8;
        self.cause = k.cause.to_u8();
        self.status = k.status;
        self.upstream[..u.len()].copy_from_slice(u);
        self.upstream_len = u.len() as u8;
        self.peer[..p.len()].copy_from_slice(p);
        self.peer_len = p.len() as u8;
    }
}

/// A label value as the table keeps it: as it is up to [`LABEL_MAX`]
/// bytes; longer, its first bytes (up to 119, never half a UTF-8
/// character), `~` and 8 hex digits of a hash of the whole value.
pub enum Label<'a> {
    Whole(&'a [u8]),
    /// The bytes and how many of them are the label.
    Shortened([u8; LABEL_MAX], usize),
}

impl Label<'_> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Label::Whole(v) => v,
            Label::Shortened(buf, len) => &buf[..*len],
        }
    }
}

pub fn label(v: &[u8]) -> Label<'_> {
    if v.len() <= LABEL_MAX {
        return Label::Whole(v);
    }
    let mut buf = [0; LABEL_MAX];
    // not in the middle of a UTF-8 character (the rest of `buf` is zero
    // bytes, then, and stays out of the label)
    let mut keep = LABEL_MAX - 1 - HASH_DIGITS;
    while keep > 0 && v[keep] & 0xc0 == 0x80 {
        keep -= 1;
    }
    buf[..keep].copy_from_slice(&v[..keep]);
    buf[keep] = b'~';
    let h = Fnv::new().eat(v).finish();
    for (i, d) in buf[keep + 1..keep + 1 + HASH_DIGITS].iter_mut().enumerate() {
        let nibble = (h >> (4 * (HASH_DIGITS - 1 - i))) & 0xf;
        *d = b"0123456789abcdef"[nibble as usize];
    }
    Label::Shortened(buf, keep + 1 + HASH_DIGITS)
}

/// FNV-1a, 64 bits, fed in slices: stable across processes (the table is
/// shared).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn eat(mut self, bytes: &[u8]) -> Fnv {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
    fn finish(self) -> u64 {
        self.0
    }
}

/// `h` with `bytes` mixed in, eight at a time, then their length.
pub(crate) fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0xff51_afd7_ed55_8ccd;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(31);
    }
    let mut w = [0u8; 8];
    let rest = chunks.remainder();
    w[..rest.len()].copy_from_slice(rest);
    h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(31);
    (h ^ bytes.len() as u64).wrapping_mul(K)
}

/// What a series is counted under.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    pub family: Family,
    pub upstream: &'a [u8],
    /// Empty for [`Family::Responses`] and [`Family::StreamSessions`].
    pub peer: &'a [u8],
    pub cause: Cause,
    /// 0 for [`Family::Attempts`] and [`Family::StreamAttempts`].
    pub status: u16,
}

impl<'a> Key<'a> {
    pub fn attempt(upstream: &'a [u8], peer: &'a [u8], cause: Cause) -> Key<'a> {
        Key {
            family: Family::Attempts,
            upstream,
            peer,
            cause,
            status: 0,
        }
    }

    pub fn response(upstream: &'a [u8], cause: Cause, status: u16) -> Key<'a> {
        Key {
            family: Family::Responses,
            upstream,
            peer: b"",
            cause,
            status,
        }
    }

    /// A TCP or UDP session's failed attempt (nginx's `stream {}`).
    pub fn stream_attempt(upstream: &'a [u8], peer: &'a [u8], cause: Cause) -> Key<'a> {
        Key {
            family: Family::StreamAttempts,
            ..Key::attempt(upstream, peer, cause)
        }
    }

    /// A TCP or UDP session whose final outcome was a failure, with the
    /// status nginx logged for it.
    pub fn session(upstream: &'a [u8], cause: Cause, status: u16) -> Key<'a> {
        Key {
            family: Family::StreamSessions,
            ..Key::response(upstream, cause, status)
        }
    }

    /// Where the series' slot search starts: eight bytes a step (the
    /// labels are hashed for every failed attempt; FNV's byte a step was a
    /// third of counting one). Stable across processes: the table is
    /// shared. Never shown.
    fn hash(&self) -> u64 {
        let head = u64::from(self.family as u8) | u64::from(self.cause.to_u8()) << 8 | u64::from(self.status) << 16;
        let h = mix(mix(head, self.upstream), self.peer);
        // the low bits pick the slot: fold the high ones in
        (h ^ (h >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
    }
}

/// The table's bookkeeping, stored next to the slots.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Header {
    /// Slots in use.
    pub used: u32,
    /// Whether the "table full" warning was given.
    pub warned: u32,
    /// Increments that found no slot at all (never expected: the reserve
    /// holds the overflow series).
    pub dropped: u64,
}

/// What counting did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// Under its own series.
    Exact,
    /// Under an overflow series; `first` is true the first time the table
    /// overflowed in its life (time to warn, once).
    Overflow { first: bool },
    /// Nowhere (see [`Header::dropped`]).
    Dropped,
}

/// Counts `n` under `key` in `slots`.
pub fn count(h: &mut Header, slots: &mut [Series], key: &Key<'_>, n: u64) -> Counted {
    count_slot(h, slots, key, n).0
}

/// Counts `n` under `key` in `slots`, and says in which slot (the live
/// view keeps each slot's recent counts beside it, at the same index).
pub fn count_slot(h: &mut Header, slots: &mut [Series], key: &Key<'_>, n: u64) -> (Counted, Option<usize>) {
    let cap = slots.len();
    if cap == 0 {
        h.dropped += n;
        return (Counted::Dropped, None);
    }
    let (up, peer) = (label(key.upstream), label(key.peer));
    let key = &Key {
        upstream: up.as_bytes(),
        peer: peer.as_bytes(),
        ..*key
    };
    let normal_limit = cap - RESERVE.min(cap / 2);
    if let Some(i) = add(h, slots, key, n, normal_limit) {
        return (Counted::Exact, Some(i));
    }
    let first = h.warned == 0;
    h.warned = 1;
    // Overflow: first keep the upstream and give up the peer, then give up
    // both; these series may use the reserve.
    let other_peer = Key {
        peer: if key.family == Family::Attempts { OTHER } else { b"" },
        upstream: if key.family == Family::Attempts {
            key.upstream
        } else {
            OTHER
        },
        ..*key
    };
    let other_all = Key {
        upstream: OTHER,
        peer: if key.family == Family::Attempts { OTHER } else { b"" },
        ..*key
    };
    if let Some(i) = add(h, slots, &other_peer, n, cap - 1).or_else(|| add(h, slots, &other_all, n, cap)) {
        return (Counted::Overflow { first }, Some(i));
    }
    h.dropped += n;
    (Counted::Dropped, None)
}

/// Adds to an existing series, or creates it while fewer than `limit`
/// slots are used; gives the series' slot. Linear probing.
fn add(h: &mut Header, slots: &mut [Series], key: &Key<'_>, n: u64, limit: usize) -> Option<usize> {
    let cap = slots.len();
    let start = (key.hash() % cap as u64) as usize;
    for i in 0..cap {
        let at = (start + i) % cap;
        let s = &mut slots[at];
        if s.family == 0 {
            if (h.used as usize) >= limit {
                return None;
            }
            s.set(key);
            s.count = n;
            h.used += 1;
            return Some(at);
        }
        if s.matches(key) {
            s.count = s.count.saturating_add(n);
            return Some(at);
        }
    }
    None
}

/// Writes a Prometheus label value: `\`, `"` and newline escaped; other
/// bytes as they are (label values are UTF-8 in the format; nginx names and
/// addresses are ASCII).
pub fn escape_label(out: &mut impl Sink, v: &[u8]) {
    let mut start = 0;
    for (i, &b) in v.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            b'\n' => b"\\n",
            _ => continue,
        };
        out.put(&v[start..i]);
        out.put(esc);
        start = i + 1;
    }
    out.put(&v[start..]);
}

fn order(a: &Series, b: &Series) -> Ordering {
    (a.family, a.upstream(), a.peer(), a.cause, a.status).cmp(&(b.family, b.upstream(), b.peer(), b.cause, b.status))
}

fn number(out: &mut impl Sink, n: u64) {
    out.put(crate::render::fmt_u64(&mut crate::render::NumBuf::new(), n));
}

/// The attempts family's HELP and TYPE lines (the module's scrape and the
/// offline classifier's `prometheus`).
pub const ATTEMPTS_HELP: &[u8] =
    b"# HELP nginx_upstream_cause_total Upstream attempts that failed, by upstream group, peer and cause.\n\
# TYPE nginx_upstream_cause_total counter\n";
/// The responses family's HELP and TYPE lines.
pub const RESPONSES_HELP: &[u8] = b"# HELP nginx_upstream_cause_responses_total Responses whose final status was produced by an upstream failure, by cause and status.\n\
# TYPE nginx_upstream_cause_responses_total counter\n";

/// The stream attempts family's HELP and TYPE lines.
pub const STREAM_ATTEMPTS_HELP: &[u8] = b"# HELP nginx_upstream_cause_stream_total Upstream attempts of TCP and UDP sessions that failed, by upstream group, peer and cause.\n\
# TYPE nginx_upstream_cause_stream_total counter\n";
/// The stream sessions family's HELP and TYPE lines.
pub const STREAM_SESSIONS_HELP: &[u8] = b"# HELP nginx_upstream_cause_stream_sessions_total TCP and UDP sessions whose final outcome was an upstream failure, by cause and the status nginx logged.\n\
# TYPE nginx_upstream_cause_stream_sessions_total counter\n";

/// Renders one family's series: `name{upstream,peer,cause}` for attempts,
/// `name{upstream,cause,status}` for responses and sessions.
fn render_family(out: &mut impl Sink, series: &[Series], family: Family, help: &[u8], name: &[u8]) {
    out.put(help);
    let per_peer = matches!(family, Family::Attempts | Family::StreamAttempts);
    for s in series.iter().filter(|s| s.family() == Some(family)) {
        let Some(c) = s.cause() else { continue };
        out.put(name);
        out.put(b"{upstream=\"");
        escape_label(out, s.upstream());
        if per_peer {
            out.put(b"\",peer=\"");
            escape_label(out, s.peer());
        }
        out.put(b"\",cause=\"");
        out.put(c.code().as_bytes());
        if !per_peer {
            out.put(b"\",status=\"");
            number(out, u64::from(s.status));
        }
        out.put(b"\"} ");
        number(out, s.count);
        out.put(b"\n");
    }
}

/// Renders the scrape: HTTP's two families (HELP and TYPE even when
/// empty), stream's two when `stream` (a stream zone exists), in a stable
/// order, then the zone gauges. `series` is a snapshot of the slots (it
/// is sorted in place); with more than one zone, the gauges are their
/// sums.
pub fn render_prometheus(out: &mut impl Sink, series: &mut [Series], h: &Header, capacity: usize, stream: bool) {
    series.sort_unstable_by(order);
    render_family(
        out,
        series,
        Family::Attempts,
        ATTEMPTS_HELP,
        b"nginx_upstream_cause_total",
    );
    render_family(
        out,
        series,
        Family::Responses,
        RESPONSES_HELP,
        b"nginx_upstream_cause_responses_total",
    );
    if stream {
        render_family(
            out,
            series,
            Family::StreamAttempts,
            STREAM_ATTEMPTS_HELP,
            b"nginx_upstream_cause_stream_total",
        );
        render_family(
            out,
            series,
            Family::StreamSessions,
            STREAM_SESSIONS_HELP,
            b"nginx_upstream_cause_stream_sessions_total",
        );
    }
    out.put(b"# HELP nginx_upstream_cause_zone_series Series in use in the upstream_cause_zone.\n");
    out.put(b"# TYPE nginx_upstream_cause_zone_series gauge\nnginx_upstream_cause_zone_series ");
    number(out, u64::from(h.used));
    out.put(b"\n# HELP nginx_upstream_cause_zone_series_max Series the upstream_cause_zone can hold.\n");
    out.put(b"# TYPE nginx_upstream_cause_zone_series_max gauge\nnginx_upstream_cause_zone_series_max ");
    number(out, capacity as u64);
    out.put(b"\n# HELP nginx_upstream_cause_zone_dropped_total Increments that found no room even under \"other\".\n");
    out.put(b"# TYPE nginx_upstream_cause_zone_dropped_total counter\nnginx_upstream_cause_zone_dropped_total ");
    number(out, h.dropped);
    out.put(b"\n");
}

/// The zones' start times: when each zone's counts began (its creation,
/// or its last size change), so that a reset of the counters shows.
pub fn render_start_times(out: &mut impl Sink, zones: &[(Vec<u8>, u64)]) {
    out.put(b"# HELP nginx_upstream_cause_zone_start_time_seconds When the upstream_cause_zone's counts began, in seconds since the epoch.\n");
    out.put(b"# TYPE nginx_upstream_cause_zone_start_time_seconds gauge\n");
    for (name, ms) in zones {
        out.put(b"nginx_upstream_cause_zone_start_time_seconds{zone=\"");
        escape_label(out, name);
        out.put(b"\"} ");
        number(out, ms / 1000);
        out.put(b".");
        let frac = ms % 1000;
        out.put(&[
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
        out.put(b"\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_in_seconds_with_milliseconds() {
        let mut out = Vec::new();
        render_start_times(&mut out, &[(b"a\"b".to_vec(), 1_765_000_000_042), (b"s".to_vec(), 5)]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# HELP nginx_upstream_cause_zone_start_time_seconds When the upstream_cause_zone's counts began, in seconds since the epoch.\n\
             # TYPE nginx_upstream_cause_zone_start_time_seconds gauge\n\
             nginx_upstream_cause_zone_start_time_seconds{zone=\"a\\\"b\"} 1765000000.042\n\
             nginx_upstream_cause_zone_start_time_seconds{zone=\"s\"} 0.005\n"
        );
    }

    struct Out(Vec<u8>);
    impl Sink for Out {
        fn put(&mut self, b: &[u8]) {
            self.0.extend_from_slice(b);
        }
    }

    fn scrape(slots: &[Series], h: &Header) -> String {
        let mut snap = slots.to_vec();
        let mut out = Out(Vec::new());
        render_prometheus(&mut out, &mut snap, h, slots.len(), false);
        String::from_utf8(out.0).unwrap()
    }

    #[test]
    fn counts_and_renders_in_a_stable_order() {
        let mut slots = vec![Series::EMPTY; 200];
        let mut h = Header::default();
        let b = b"backend";
        for _ in 0..3 {
            count(
                &mut h,
                &mut slots,
                &Key::attempt(b, b"127.0.0.1:8081", Cause::ConnectRefused),
                1,
            );
        }
        count(
            &mut h,
            &mut slots,
            &Key::attempt(b, b"127.0.0.1:8080", Cause::UpstreamPrematurelyClosed),
            1,
        );
        count(&mut h, &mut slots, &Key::response(b, Cause::ConnectRefused, 502), 2);
        assert_eq!(h.used, 3);
        let text = scrape(&slots, &h);
        let want = "# HELP nginx_upstream_cause_total Upstream attempts that failed, by upstream group, peer and cause.\n\
# TYPE nginx_upstream_cause_total counter\n\
nginx_upstream_cause_total{upstream=\"backend\",peer=\"127.0.0.1:8080\",cause=\"upstream_prematurely_closed\"} 1\n\
nginx_upstream_cause_total{upstream=\"backend\",peer=\"127.0.0.1:8081\",cause=\"connect_refused\"} 3\n\
# HELP nginx_upstream_cause_responses_total Responses whose final status was produced by an upstream failure, by cause and status.\n\
# TYPE nginx_upstream_cause_responses_total counter\n\
nginx_upstream_cause_responses_total{upstream=\"backend\",cause=\"connect_refused\",status=\"502\"} 2\n";
        assert!(text.starts_with(want), "{text}");
        assert!(text.contains("\nnginx_upstream_cause_zone_series 3\n"));
        assert!(text.contains("\nnginx_upstream_cause_zone_series_max 200\n"));
        assert_eq!(text, scrape(&slots, &h), "stable");
    }

    #[test]
    fn stream_families_are_rendered_beside_http_s_when_asked() {
        let mut slots = vec![Series::EMPTY; 200];
        let mut h = Header::default();
        count(
            &mut h,
            &mut slots,
            &Key::stream_attempt(b"pg", b"127.0.0.1:5432", Cause::ConnectRefused),
            2,
        );
        count(
            &mut h,
            &mut slots,
            &Key::session(b"pg", Cause::UpstreamClosedSilent, 200),
            1,
        );
        count(
            &mut h,
            &mut slots,
            &Key::attempt(b"pg", b"127.0.0.1:5432", Cause::ConnectRefused),
            1,
        );
        assert_eq!(h.used, 3, "a stream series is not HTTP's of the same labels");
        let mut snap = slots.clone();
        let mut out = Out(Vec::new());
        render_prometheus(&mut out, &mut snap, &h, slots.len(), true);
        let text = String::from_utf8(out.0).unwrap();
        let want = "# HELP nginx_upstream_cause_stream_total Upstream attempts of TCP and UDP sessions that failed, by upstream group, peer and cause.\n\
# TYPE nginx_upstream_cause_stream_total counter\n\
nginx_upstream_cause_stream_total{upstream=\"pg\",peer=\"127.0.0.1:5432\",cause=\"connect_refused\"} 2\n\
# HELP nginx_upstream_cause_stream_sessions_total TCP and UDP sessions whose final outcome was an upstream failure, by cause and the status nginx logged.\n\
# TYPE nginx_upstream_cause_stream_sessions_total counter\n\
nginx_upstream_cause_stream_sessions_total{upstream=\"pg\",cause=\"upstream_closed_silent\",status=\"200\"} 1\n";
        assert!(text.contains(want), "{text}");
        assert!(text.contains(
            "\nnginx_upstream_cause_total{upstream=\"pg\",peer=\"127.0.0.1:5432\",cause=\"connect_refused\"} 1\n"
        ));
        assert!(
            text.find("nginx_upstream_cause_responses_total").unwrap()
                < text.find("nginx_upstream_cause_stream_total").unwrap()
        );
        assert!(
            !scrape(&slots, &h).contains("_stream_"),
            "no stream zone, no stream families"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Out(Vec::new());
        escape_label(&mut out, b"a\"b\\c\nd");
        assert_eq!(out.0, b"a\\\"b\\\\c\\nd");
    }

    #[test]
    fn overflow_goes_to_other_then_warns_once() {
        let cap = 2 * RESERVE;
        let mut slots = vec![Series::EMPTY; cap];
        let mut h = Header::default();
        let peers: Vec<String> = (0..RESERVE + 6)
            .map(|i| format!("10.0.{}.{}:80", i / 256, i % 256))
            .collect();
        let mut outcomes = Vec::new();
        for p in &peers {
            outcomes.push(count(
                &mut h,
                &mut slots,
                &Key::attempt(b"g", p.as_bytes(), Cause::ConnectRefused),
                1,
            ));
        }
        assert!(outcomes[..RESERVE].iter().all(|o| *o == Counted::Exact));
        assert_eq!(outcomes[RESERVE], Counted::Overflow { first: true });
        assert!(outcomes[RESERVE + 1..]
            .iter()
            .all(|o| *o == Counted::Overflow { first: false }));
        let text = scrape(&slots, &h);
        assert!(
            text.contains("nginx_upstream_cause_total{upstream=\"g\",peer=\"other\",cause=\"connect_refused\"} 6\n")
        );
        // existing series keep counting exactly
        assert_eq!(
            count(
                &mut h,
                &mut slots,
                &Key::attempt(b"g", b"10.0.0.0:80", Cause::ConnectRefused),
                1
            ),
            Counted::Exact
        );
        let total: u64 = slots.iter().map(|s| s.count).sum();
        assert_eq!(total, RESERVE as u64 + 7, "no increment lost");
    }

    #[test]
    fn the_reserve_holds_other_series_until_it_is_gone() {
        let cap = RESERVE + 1;
        let mut slots = vec![Series::EMPTY; cap];
        let mut h = Header::default();
        let names: Vec<String> = (0..200).map(|i| format!("u{i}")).collect();
        let mut counted = 0u64;
        for n in &names {
            if count(
                &mut h,
                &mut slots,
                &Key::attempt(n.as_bytes(), b"p", Cause::ReadTimeout),
                1,
            ) != Counted::Dropped
            {
                counted += 1;
            }
        }
        // one exact, the rest under upstream="g",peer="other" (one per
        // upstream while the reserve lasts), then all under other/other
        assert_eq!(counted, 200);
        assert_eq!(h.dropped, 0);
        assert_eq!(h.used as usize, cap);
        let other = slots
            .iter()
            .find(|s| s.upstream() == OTHER && s.peer() == OTHER)
            .expect("the last-resort series");
        assert!(other.count > 0);
    }

    #[test]
    fn labels_are_kept_whole_up_to_the_longest_unix_path() {
        let mut slots = vec![Series::EMPTY; RESERVE + 10];
        let mut h = Header::default();
        let path = format!("unix:/{}", "d".repeat(106));
        let (one, two) = (
            format!("backend_{}_one", "x".repeat(100)),
            format!("backend_{}_two", "x".repeat(100)),
        );
        for up in [&one, &two] {
            count(
                &mut h,
                &mut slots,
                &Key::attempt(up.as_bytes(), path.as_bytes(), Cause::ConnectRefused),
                1,
            );
        }
        let text = scrape(&slots, &h);
        for up in [&one, &two] {
            assert!(
                text.contains(&format!(
                    "{{upstream=\"{up}\",peer=\"{path}\",cause=\"connect_refused\"}} 1\n"
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn longer_labels_are_shortened_consistently_and_stay_apart() {
        let mut slots = vec![Series::EMPTY; RESERVE + 10];
        let mut h = Header::default();
        let (a, b) = ([b'x'; 200], [b'x'; 201]);
        for up in [&a[..], &b[..], &a[..]] {
            count(&mut h, &mut slots, &Key::attempt(up, b"p", Cause::ConnectError), 1);
        }
        assert_eq!(h.used, 2, "two series, though their first 119 bytes are the same");
        let kept: Vec<&Series> = slots.iter().filter(|s| s.family().is_some()).collect();
        for s in &kept {
            assert_eq!(s.upstream().len(), LABEL_MAX);
            assert_eq!(&s.upstream()[..LABEL_MAX - 9], &a[..LABEL_MAX - 9]);
            assert_eq!(s.upstream()[LABEL_MAX - 9], b'~');
            assert!(s.upstream()[LABEL_MAX - 8..].iter().all(u8::is_ascii_hexdigit));
        }
        assert_eq!(kept.iter().map(|s| s.count).sum::<u64>(), 3);
        assert_eq!(label(&a).as_bytes(), label(&a).as_bytes());
        assert_eq!(label(b"short").as_bytes(), b"short");
        // a two-byte character across the cut is kept whole or not at all
        let utf8 = "\u{e9}".repeat(100);
        let shortened = label(utf8.as_bytes());
        let text = core::str::from_utf8(shortened.as_bytes()).expect("valid UTF-8");
        assert!(
            text.starts_with(&"\u{e9}".repeat(59)) && text.len() == 118 + 9,
            "{text}"
        );
    }

    #[test]
    fn a_small_table_keeps_half_for_overflow() {
        let mut slots = vec![Series::EMPTY; 20];
        let mut h = Header::default();
        let names: Vec<String> = (0..15).map(|i| format!("u{i}")).collect();
        let exact = names
            .iter()
            .filter(|n| {
                count(
                    &mut h,
                    &mut slots,
                    &Key::attempt(n.as_bytes(), b"p", Cause::ReadTimeout),
                    1,
                ) == Counted::Exact
            })
            .count();
        assert_eq!(exact, 10);
        assert_eq!(h.dropped, 0);
    }
}
