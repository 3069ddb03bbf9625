//! Failed requests put back together from an error log's lines.
//!
//! nginx writes no line when a request ends, so a request is the run of
//! upstream failure lines one worker wrote for one client connection
//! (`pid`, `*N`) about one request line, client and host:
//! - a line more than `window` seconds after the previous one, or about
//!   another request line, starts a new request;
//! - so does a line naming a peer the request already tried: nginx never
//!   tries a peer twice in a request, except once more after a failure
//!   on a cached keepalive connection (closed, reset or a failed send);
//! - the module's own line (`upstream_cause=...`) ends its request and is
//!   taken as it is: nginx's lines it accounts for are not counted again.
//!
//! A stream session (TCP or UDP) is one connection: its lines are its
//! attempts. After its connect, nginx's stream proxy tries no other peer,
//! and ends the session as a success (`$status` 200) on a reset, a send
//! failure, the upstream's close and the idle timeout (UDP: 502 without a
//! response): the status of a session whose last failure came after the
//! connect is known. Its lines at `info` (written without its suffix) tell
//! its client, server and peer, and the upstream's silent close, which no
//! other line tells.
//!
//! Open requests are bounded in number ([`Assembler::new`]'s `max_open`)
//! and in size (attempts and field bytes), so memory does not grow with the
//! log.

use rustc_hash::FxHashMap as HashMap;

use upstream_cause_core::errlog::{self, Context, ErrorLine, ModuleLine, SessionLine, Time, MODULE_KEY};
use upstream_cause_core::hint::hint;
use upstream_cause_core::observed::{DETAIL_MAX, MAX_ATTEMPTS};
use upstream_cause_core::render::unescape_quoted;
use upstream_cause_core::{Cause, Message, MessageKind, Phase};

/// Bytes kept of a context field (nginx's own lines hold at most 2,048).
const FIELD_MAX: usize = 1024;

/// Where a request's report comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// nginx's own lines only: what the text cannot tell is unknown.
    Nginx,
    /// The module's enriched line.
    Module,
}

/// A stream session's transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    /// A line's, from its suffix; `None` for HTTP's.
    fn of(ctx: &Context<'_>) -> Option<Transport> {
        ctx.stream()
            .then_some(if ctx.udp { Transport::Udp } else { Transport::Tcp })
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// One failed attempt (or, for the resolver, the failure before any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub cause: Cause,
    /// The peer, as nginx names it (`127.0.0.1:8081`); empty if unknown.
    pub peer: Vec<u8>,
    /// The upstream URL up to the peer (`http://127.0.0.1:8081`), or the
    /// name that could not be resolved; empty if unknown.
    pub upstream: Vec<u8>,
}

/// A failed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub time: Time,
    pub last: Time,
    pub pid: u32,
    pub conn: u64,
    pub client: Vec<u8>,
    pub server: Vec<u8>,
    pub host: Vec<u8>,
    pub request: Vec<u8>,
    /// The subrequest's URI, when the attempts were a subrequest's (SSI,
    /// auth_request): the access log shows the main request.
    pub subrequest: Vec<u8>,
    /// nginx's `upstream: "..."` of the last line.
    pub upstream: Vec<u8>,
    /// The failed attempts, in order (peers kept for the first
    /// [`MAX_ATTEMPTS`]).
    pub attempts: Vec<Attempt>,
    /// The request's cause: its last failure's (the module's, when it wrote one).
    pub cause: Cause,
    /// `$upstream_cause_list`'s form: the module's, or the failures seen.
    pub causes: String,
    /// nginx's text of the cause's failure.
    pub detail: Vec<u8>,
    pub hint: String,
    /// The status nginx sent (only the module's line says it).
    pub status: Option<u16>,
    /// The module's attempt count (successful ones included).
    pub attempts_made: Option<u32>,
    pub source: Source,
    /// The text says the group had no live server: it cannot tell a
    /// saturated group (`max_conns_reached`) from a dead one.
    pub no_live: bool,
    /// A stream session's, not an HTTP request's.
    pub stream: Option<Transport>,
    /// The pod, container or host a prefix named (without colours); empty
    /// for none.
    pub origin: Vec<u8>,
}

impl Request {
    /// What the text cannot tell of this request, by name.
    pub fn unknown(&self) -> Vec<&'static str> {
        let mut u = Vec::new();
        if self.source == Source::Nginx && self.stream.is_some() {
            // a session ended after its connect tells its status; before,
            // a later attempt may have succeeded
            if self.status.is_none() {
                u.extend(["status", "later_attempts"]);
            }
            if self.no_live {
                u.push("max_conns_reached");
            }
            if self.attempts.iter().any(|a| a.peer.is_empty()) {
                u.push("peers");
            }
        } else if self.source == Source::Nginx {
            // nginx logs no line for a successful attempt or a passed-on 5xx
            u.extend(["status", "later_attempts", "via_upstream", "reused"]);
            if self.no_live {
                u.push("max_conns_reached");
            }
        } else if self.attempts.iter().any(|a| a.peer.is_empty()) {
            u.push("peers");
        }
        u
    }
}

#[cfg(test)]
impl Request {
    /// A request from nginx's lines with these failed attempts, for the
    /// reports' tests.
    pub fn sample(t: Time, attempts: Vec<Attempt>) -> Request {
        Request {
            time: t,
            last: t,
            pid: 1,
            conn: 1,
            client: b"127.0.0.1".to_vec(),
            server: b"api".to_vec(),
            host: Vec::new(),
            request: b"GET / HTTP/1.1".to_vec(),
            subrequest: Vec::new(),
            upstream: Vec::new(),
            cause: attempts.last().map_or(Cause::ConnectError, |a| a.cause),
            attempts,
            causes: String::new(),
            detail: Vec::new(),
            hint: String::new(),
            status: None,
            attempts_made: None,
            source: Source::Nginx,
            no_live: false,
            stream: None,
            origin: Vec::new(),
        }
    }
}

/// What was read, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines shaped as nginx writes them.
    pub nginx_lines: u64,
    /// Upstream failure lines of nginx's, taken as attempts.
    pub attempt_lines: u64,
    /// The module's own lines.
    pub module_lines: u64,
    /// nginx's lines a module line accounted for (not counted again).
    pub folded: u64,
    /// Lines that mention an upstream but could not be read: a module
    /// line cut or altered, a failure line without its connection, a
    /// failure line cut before its " while ...".
    pub unreadable: u64,
    /// Other modules' lines that mention an upstream or a resolver
    /// (Lua's `[lua] ...`): not attempts.
    pub third_party: u64,
    /// Requests closed early because too many were open at once.
    pub evicted: u64,
    pub requests: u64,
}

struct Open {
    req: Request,
    /// Its [`heap`] when last counted.
    bytes: usize,
    /// The cached-connection retry nginx allows was used.
    retried: bool,
    /// The last failure's parsed message (refines the hint).
    message: Option<Message>,
    /// No attempt follows: nginx ended the request or the session. It
    /// stays open for the module's line, which comes after nginx's.
    ended: bool,
}

/// Stream: what a live session's lines at `info` told, kept until it ends.
struct Live {
    client: Vec<u8>,
    server: Vec<u8>,
    /// The peer its last connect reached.
    peer: Vec<u8>,
}

fn capped(v: Option<&[u8]>) -> Vec<u8> {
    let v = v.unwrap_or_default();
    v[..v.len().min(FIELD_MAX)].to_vec()
}

/// `v` becomes the first `max` bytes of `from`, in the memory it has.
fn set(v: &mut Vec<u8>, from: &[u8], max: usize) {
    v.clear();
    v.extend_from_slice(&from[..from.len().min(max)]);
}

fn same_context(r: &Request, c: &Context<'_>) -> bool {
    if r.stream.is_some() && c.stream() {
        // a session's lines are its connection's: their suffix's peer
        // and counts change, and its `info` lines have none
        return true;
    }
    let eq = |have: &[u8], got: Option<&[u8]>| {
        let got = got.unwrap_or_default();
        have == &got[..got.len().min(FIELD_MAX)]
    };
    eq(&r.client, c.client)
        && eq(&r.server, c.server)
        && eq(&r.request, c.request)
        && eq(&r.subrequest, c.subrequest)
        && eq(&r.host, c.host)
}

/// The failures a cached keepalive connection shows when its upstream
/// closed it: nginx tries once more, possibly on the same peer.
fn stale_connection_failure(c: Cause) -> bool {
    matches!(
        c,
        Cause::UpstreamPrematurelyClosed | Cause::UpstreamReset | Cause::SendFailed
    )
}

/// The peer and upstream of an attempt's line: from nginx's `upstream:
/// "..."`, or the name a resolver failure names.
fn peer_and_upstream(l: &ErrorLine<'_>, ctx: &Context<'_>, m: &Message) -> (Vec<u8>, Vec<u8>) {
    if let Some(u) = ctx.upstream {
        let (peer, upstream) = errlog::peer_of_request(u, ctx.request);
        return (capped(Some(peer)), capped(Some(upstream)));
    }
    if m.kind == MessageKind::ResolveFailed {
        let name = match l.message.strip_prefix(b"no resolver defined to resolve ") {
            Some(n) => n,
            None => {
                let end = upstream_cause_core::scan::memchr(b' ', l.message).unwrap_or(l.message.len());
                &l.message[..end]
            }
        };
        return (Vec::new(), capped(Some(name)));
    }
    match errlog::peer_in_text(l.message) {
        Some(peer) => (capped(Some(peer)), capped(Some(peer))),
        None => (Vec::new(), Vec::new()),
    }
}

/// An open request: its worker, its connection, and a hash of its request
/// line, client, server, host and subrequest (HTTP/2 multiplexes requests
/// on one connection). A stream session's is its worker and connection.
type Key = (u32, u64, u64);

/// The hash of a stream session's key (nginx numbers connections across
/// HTTP and stream alike: no request shares a session's number).
const SESSION: u64 = 0;

fn session_key(l: &ErrorLine<'_>, conn: u64) -> Key {
    (l.pid, conn, SESSION ^ origin_hash(l))
}

/// The origin's part of a key: 0 for none.
fn origin_hash(l: &ErrorLine<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    if l.origin.is_empty() {
        return 0;
    }
    let mut h = rustc_hash::FxHasher::default();
    l.origin.hash(&mut h);
    h.finish() | 1
}

/// A client's address without its port, as the suffix writes it
/// (`127.0.0.1:50000` -> `127.0.0.1`, `[::1]:50000` -> `::1`).
fn address(a: &[u8]) -> &[u8] {
    if let Some(v6) = a.strip_prefix(b"[") {
        return match upstream_cause_core::scan::memchr(b']', v6) {
            Some(end) => &v6[..end],
            None => a,
        };
    }
    match a.iter().rposition(|&b| b == b':') {
        Some(at) if !a.starts_with(b"unix:") && a[at + 1..].iter().all(u8::is_ascii_digit) => &a[..at],
        _ => a,
    }
}

fn key_of(l: &ErrorLine<'_>, conn: u64, c: &Context<'_>) -> Key {
    use std::hash::{Hash, Hasher};
    if c.stream() {
        return session_key(l, conn);
    }
    let mut h = rustc_hash::FxHasher::default();
    for f in [c.client, c.server, c.request, c.subrequest, c.host] {
        let f = f.unwrap_or_default();
        f[..f.len().min(FIELD_MAX)].hash(&mut h);
    }
    l.origin.hash(&mut h);
    (l.pid, conn, h.finish())
}

/// Bytes the open requests may hold at once (an estimate of their heap):
/// past it, the older half is closed.
const BYTES_MAX: usize = 64 << 20;
/// Attempts of one request: past these, its peers are not kept.
const PEERS_KEPT: usize = MAX_ATTEMPTS;
/// Attempts of one request at most (nginx tries each server of a group
/// once): a longer run of lines is taken as a new request.
const ATTEMPTS_MAX: usize = 1024;

fn heap(r: &Request) -> usize {
    std::mem::size_of::<Request>()
        + r.client.len()
        + r.server.len()
        + r.host.len()
        + r.request.len()
        + r.subrequest.len()
        + r.upstream.len()
        + r.detail.len()
        + r.attempts
            .iter()
            .map(|a| std::mem::size_of::<Attempt>() + a.peer.len() + a.upstream.len())
            .sum::<usize>()
}

/// Puts requests back together, line by line.
pub struct Assembler {
    open: HashMap<Key, Open>,
    /// Stream sessions' client, server and peer, from their `info` lines.
    live: HashMap<Key, Live>,
    /// [`heap`] of the open requests.
    bytes: usize,
    window: i64,
    max_open: usize,
    now: Time,
    swept: Time,
    pub stats: Stats,
}

impl Assembler {
    /// `window`: seconds of the log's clock after which a request's next
    /// line starts a new one. `max_open`: requests kept open at once.
    pub fn new(window: i64, max_open: usize) -> Self {
        Assembler {
            open: HashMap::default(),
            live: HashMap::default(),
            bytes: 0,
            window,
            max_open: max_open.max(1),
            now: Time::MIN,
            swept: Time::MIN,
            stats: Stats::default(),
        }
    }

    /// Requests open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// The latest time the log's lines have shown.
    pub fn now(&self) -> Time {
        self.now
    }

    /// The log's clock, from any of its lines: requests idle for longer
    /// than the window are closed.
    pub fn tick(&mut self, t: Time, out: &mut impl FnMut(Request)) {
        if t > self.now {
            self.now = t;
            if self.now >= self.swept.saturating_add(self.window.max(1)) {
                self.sweep(self.now, out);
            }
        }
    }

    /// One line ([`errlog::parse_line`]); closed requests go to `out`.
    pub fn line(&mut self, l: &ErrorLine<'_>, out: &mut impl FnMut(Request)) {
        self.tick(l.time, out);
        if l.message.starts_with(MODULE_KEY) {
            match (errlog::parse_module_line(l.message), l.conn) {
                (Some(m), Some(conn)) => {
                    self.stats.module_lines += 1;
                    self.module(l, &l.context(), conn, &m, out);
                }
                _ => self.stats.unreadable += 1,
            }
            return;
        }
        if l.stream_suffix() {
            let ctx = l.context();
            if ctx.stream() {
                let Some((m, cause)) = errlog::session_attempt(l.message, &ctx) else {
                    return;
                };
                let Some(conn) = l.conn else {
                    self.stats.unreadable += 1;
                    return;
                };
                self.stats.attempt_lines += 1;
                self.session_attempt(l, &ctx, conn, m, cause, out);
                return;
            }
        }
        if let Some(s) = errlog::session_line(l.message) {
            if let Some(conn) = l.conn {
                self.session_line(l, conn, s, out);
            }
            return;
        }
        if errlog::third_party(l.message) {
            self.stats.third_party += 1;
            return;
        }
        let Some((m, cause)) = errlog::attempt(l.message) else {
            // a failure's text cut before its " while ..." and suffix
            if l.suffix.is_empty() && l.level <= errlog::Level::Error {
                let m = upstream_cause_core::text::parse_message(l.message);
                if m.phase.is_none() && !matches!(m.kind, MessageKind::Other | MessageKind::ClientClosed) {
                    self.stats.unreadable += 1;
                }
            }
            return;
        };
        let Some(conn) = l.conn else {
            self.stats.unreadable += 1;
            return;
        };
        self.stats.attempt_lines += 1;
        self.attempt(l, &l.context(), conn, m, cause, out);
    }

    /// Stream: an attempt's failure line.
    fn session_attempt(
        &mut self,
        l: &ErrorLine<'_>,
        ctx: &Context<'_>,
        conn: u64,
        m: Message,
        cause: Cause,
        out: &mut impl FnMut(Request),
    ) {
        let key = session_key(l, conn);
        let connected = matches!(m.phase, Some(Phase::ProxyRead | Phase::ProxySend | Phase::Proxying));
        if connected && self.open.get(&key).is_some_and(|o| o.ended) {
            // a second failure of the same connection (a reset read after
            // the send failed): the session's first tells
            self.stats.folded += 1;
            return;
        }
        self.attempt(l, ctx, conn, m, cause, out);
        if let Some(o) = self.open.get_mut(&key) {
            o.req.stream = Transport::of(ctx);
            if connected {
                // nginx tries no other peer once connected
                o.ended = true;
                o.req.status = Some(if cause == Cause::UdpNoResponse { 502 } else { 200 });
            }
        }
    }

    /// Stream: a line written without the suffix.
    fn session_line(&mut self, l: &ErrorLine<'_>, conn: u64, s: SessionLine<'_>, out: &mut impl FnMut(Request)) {
        let at = session_key(l, conn);
        match s {
            SessionLine::Client { client, server, .. } => {
                if self.live.len() >= self.max_open {
                    // the oldest half, by connection number: sessions that
                    // ended without a line (the log cut, a level changed)
                    let mut conns: Vec<(u64, Key)> = self.live.keys().map(|&k| (k.1, k)).collect();
                    conns.sort_unstable();
                    for (_, k) in &conns[..conns.len().div_ceil(2)] {
                        self.live.remove(k);
                    }
                }
                self.live.insert(
                    at,
                    Live {
                        client: capped(Some(address(client))),
                        server: capped(Some(server)),
                        peer: Vec::new(),
                    },
                );
            }
            SessionLine::Proxy { peer, .. } => {
                if let Some(s) = self.live.get_mut(&at) {
                    set(&mut s.peer, peer, FIELD_MAX);
                }
            }
            SessionLine::Ended { cause } => {
                let live = self.live.remove(&at);
                let key = at;
                // the session ended as it should: its failures, if any,
                // were before its last connect (what the text cannot tell
                // of HTTP either: a later attempt's success)
                let Some(cause) = cause else {
                    return;
                };
                if self.open.get(&key).is_some_and(|o| o.ended) {
                    // nginx's line after the failure it already wrote
                    return;
                }
                self.stats.attempt_lines += 1;
                let live = live.unwrap_or(Live {
                    client: Vec::new(),
                    server: Vec::new(),
                    peer: Vec::new(),
                });
                let ctx = Context {
                    client: Some(&live.client),
                    server: Some(&live.server),
                    upstream: Some(&live.peer),
                    bytes: Some(errlog::Bytes::default()),
                    ..Context::default()
                };
                let m = Message {
                    kind: MessageKind::Other,
                    errno: None,
                    phase: Some(Phase::Proxying),
                    unix: false,
                };
                self.session_attempt(l, &ctx, conn, m, cause, out);
            }
        }
    }

    fn new_request(l: &ErrorLine<'_>, ctx: &Context<'_>, conn: u64, source: Source) -> Request {
        Request {
            time: l.time,
            last: l.time,
            pid: l.pid,
            conn,
            client: capped(ctx.client),
            server: capped(ctx.server),
            host: capped(ctx.host),
            request: capped(ctx.request),
            subrequest: capped(ctx.subrequest),
            upstream: capped(ctx.upstream),
            attempts: Vec::new(),
            cause: Cause::ConnectError,
            causes: String::new(),
            detail: Vec::new(),
            hint: String::new(),
            status: None,
            attempts_made: None,
            source,
            no_live: false,
            stream: Transport::of(ctx),
            origin: upstream_cause_core::prefix::clean_origin(&l.origin[..l.origin.len().min(FIELD_MAX)]),
        }
    }

    fn attempt(
        &mut self,
        l: &ErrorLine<'_>,
        ctx: &Context<'_>,
        conn: u64,
        m: Message,
        cause: Cause,
        out: &mut impl FnMut(Request),
    ) {
        let key = key_of(l, conn, ctx);
        let (peer, upstream) = peer_and_upstream(l, ctx, &m);
        let continues = self.open.get(&key).map(|o| {
            let r = &o.req;
            let tried = !peer.is_empty() && r.attempts.iter().any(|a| a.peer == peer);
            let retry = tried
                && !o.retried
                && r.attempts
                    .last()
                    .is_some_and(|a| a.peer == peer && stale_connection_failure(a.cause));
            let fresh = l.time >= r.last && l.time - r.last <= self.window;
            let room = r.attempts.len() < ATTEMPTS_MAX;
            (
                !o.ended && same_context(r, ctx) && fresh && room && (!tried || retry),
                retry,
            )
        });
        let retried = match continues {
            Some((true, retry)) => retry,
            Some((false, _)) => {
                self.close_key(&key, out);
                false
            }
            None => false,
        };
        if !self.open.contains_key(&key) && (self.open.len() >= self.max_open || self.bytes >= BYTES_MAX) {
            self.evict(out);
        }
        let o = self.open.entry(key).or_insert_with(|| Open {
            req: Self::new_request(l, ctx, conn, Source::Nginx),
            bytes: 0,
            retried: false,
            message: None,
            ended: false,
        });
        o.retried |= retried;
        let r = &mut o.req;
        r.last = l.time;
        set(&mut r.upstream, ctx.upstream.unwrap_or_default(), FIELD_MAX);
        let (peer, upstream) = if r.attempts.len() < PEERS_KEPT {
            (peer, upstream)
        } else {
            (Vec::new(), Vec::new())
        };
        r.attempts.push(Attempt { cause, peer, upstream });
        r.cause = cause;
        r.no_live |= m.kind == MessageKind::NoLiveUpstreams;
        set(&mut r.detail, l.message, DETAIL_MAX);
        o.message = Some(m);
        let now = heap(&o.req);
        self.bytes = self.bytes - o.bytes + now;
        o.bytes = now;
        // nginx ends the request at once after these: no attempt follows
        // (the module's line may: the request stays open for it)
        if matches!(
            cause,
            Cause::ResolveFailed | Cause::NoLiveUpstreams | Cause::ClientClosed
        ) {
            o.ended = true;
        }
    }

    fn close_key(&mut self, key: &Key, out: &mut impl FnMut(Request)) {
        if let Some(o) = self.open.remove(key) {
            self.bytes -= o.bytes;
            self.close(o, out);
        }
    }

    fn module(
        &mut self,
        l: &ErrorLine<'_>,
        ctx: &Context<'_>,
        conn: u64,
        m: &ModuleLine<'_>,
        out: &mut impl FnMut(Request),
    ) {
        let key = key_of(l, conn, ctx);
        // The module's entries: the failed ones, each with the peer of the
        // nginx line it accounts for, where the text had one.
        let listed: Vec<Cause> = m
            .causes
            .split(|&b| b == b',' || b == b':')
            .filter_map(|e| Cause::from_code(std::str::from_utf8(e.trim_ascii()).ok()?))
            .collect();
        // nginx writes a line for every failure but an upstream's own 5xx
        let in_text = listed.iter().filter(|&&c| c != Cause::ViaUpstream).count();
        let mut seen: Vec<Attempt> = Vec::new();
        if let Some(mut o) = self.open.remove(&key) {
            self.bytes -= o.bytes;
            if same_context(&o.req, ctx) {
                let n = o.req.attempts.len();
                let keep = n.min(in_text);
                seen = o.req.attempts.split_off(n - keep);
                self.stats.folded += keep as u64;
                if !o.req.attempts.is_empty() {
                    // earlier failures on this connection: a request of their own
                    o.req.cause = o.req.attempts.last().map_or(o.req.cause, |a| a.cause);
                    self.close(o, out);
                }
            } else {
                self.close(o, out);
            }
        }
        let mut r = Self::new_request(l, ctx, conn, Source::Module);
        let peer = unescape_quoted(m.peer).unwrap_or_else(|| m.peer.to_vec());
        let (_, upstream) = errlog::peer_of(ctx.upstream.unwrap_or_default());
        // nginx's lines missing from the input are the earliest ones (cut
        // by --since or a rotation): the lines there are the last entries'
        let mut missing = in_text - seen.len();
        let mut from_text = seen.into_iter();
        let last = listed.len().saturating_sub(1);
        for (i, &c) in listed.iter().enumerate().take(ATTEMPTS_MAX) {
            let a = if c == Cause::ViaUpstream {
                None
            } else if missing > 0 {
                missing -= 1;
                None
            } else {
                from_text.next()
            };
            let attempt = match a {
                Some(a) => Attempt { cause: c, ..a },
                _ if i == last => Attempt {
                    cause: c,
                    peer: peer.clone(),
                    upstream: capped(Some(upstream)),
                },
                _ => Attempt {
                    cause: c,
                    peer: Vec::new(),
                    upstream: Vec::new(),
                },
            };
            r.attempts.push(attempt);
        }
        if m.cause == Cause::ResolveFailed && r.attempts.is_empty() {
            r.attempts.push(Attempt {
                cause: m.cause,
                peer: Vec::new(),
                upstream: Vec::new(),
            });
        }
        r.cause = m.cause;
        let cut = |v: &[u8], n: usize| v[..v.len().min(n)].to_vec();
        r.causes = String::from_utf8_lossy(&cut(m.causes, 4 * FIELD_MAX)).into_owned();
        r.detail = cut(
            &unescape_quoted(m.detail).unwrap_or_else(|| m.detail.to_vec()),
            DETAIL_MAX,
        );
        r.hint = String::from_utf8_lossy(&cut(m.hint, FIELD_MAX)).into_owned();
        r.status = Some(m.status);
        r.attempts_made = Some(m.attempts);
        self.stats.requests += 1;
        out(r);
    }

    fn close(&mut self, o: Open, out: &mut impl FnMut(Request)) {
        let mut r = o.req;
        if r.source == Source::Nginx {
            let causes: Vec<&str> = r.attempts.iter().map(|a| a.cause.code()).collect();
            r.causes = causes.join(", ");
            r.hint = hint(r.cause, o.message.as_ref()).to_owned();
        }
        self.stats.requests += 1;
        out(r);
    }

    /// Closes the requests whose last line is more than `window` before `now`.
    pub fn sweep(&mut self, now: Time, out: &mut impl FnMut(Request)) {
        self.swept = now;
        let limit = now.saturating_sub(self.window);
        let idle: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, o)| o.req.last < limit)
            .map(|(k, _)| *k)
            .collect();
        self.close_keys(idle, out);
    }

    /// Too many open: the older half is closed.
    fn evict(&mut self, out: &mut impl FnMut(Request)) {
        let mut by_age: Vec<(Time, Key)> = self.open.iter().map(|(k, o)| (o.req.last, *k)).collect();
        by_age.sort_unstable();
        let n = by_age.len().div_ceil(2);
        self.stats.evicted += n as u64;
        self.close_keys(by_age.into_iter().take(n).map(|(_, k)| k).collect(), out);
    }

    fn close_keys(&mut self, keys: Vec<Key>, out: &mut impl FnMut(Request)) {
        let mut keys: Vec<(Time, Key)> = keys
            .into_iter()
            .filter_map(|k| Some((self.open.get(&k)?.req.time, k)))
            .collect();
        keys.sort_unstable();
        for (_, k) in keys {
            self.close_key(&k, out);
        }
    }

    /// The end of the input: every open request is closed, oldest first.
    pub fn finish(&mut self, out: &mut impl FnMut(Request)) {
        let keys = self.open.keys().copied().collect();
        self.close_keys(keys, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[String], window: i64) -> (Vec<Request>, Stats) {
        let mut a = Assembler::new(window, 1000);
        let mut got = Vec::new();
        for l in lines {
            let parsed = errlog::parse_line(l.as_bytes()).expect("an nginx line");
            a.stats.nginx_lines += 1;
            a.line(&parsed, &mut |r| got.push(r));
        }
        a.finish(&mut |r| got.push(r));
        (got, a.stats)
    }

    fn line(sec: u32, pid: u32, conn: u32, msg: &str, uri: &str, peer: &str) -> String {
        format!(
            "2026/11/25 10:00:{sec:02} [error] {pid}#{pid}: *{conn} {msg}, client: 127.0.0.1, server: s, \
             request: \"GET {uri} HTTP/1.1\", upstream: \"http://{peer}{uri}\", host: \"h\""
        )
    }

    const REFUSED: &str = "connect() failed (111: Connection refused) while connecting to upstream";
    const CLOSED: &str = "upstream prematurely closed connection while reading response header from upstream";

    #[test]
    fn a_retry_over_two_peers_is_one_request_in_order() {
        let (got, st) = run(
            &[
                line(1, 7, 3, REFUSED, "/a", "127.0.0.1:1"),
                line(1, 7, 3, CLOSED, "/a", "127.0.0.1:2"),
            ],
            65,
        );
        assert_eq!(got.len(), 1);
        let r = &got[0];
        assert_eq!(r.causes, "connect_refused, upstream_prematurely_closed");
        assert_eq!(r.cause, Cause::UpstreamPrematurelyClosed);
        assert_eq!(r.attempts[0].peer, b"127.0.0.1:1");
        assert_eq!(r.attempts[1].upstream, b"http://127.0.0.1:2");
        assert_eq!(r.detail, CLOSED.as_bytes());
        assert_eq!((r.pid, r.conn, r.status, r.source), (7, 3, None, Source::Nginx));
        assert!(r.unknown().contains(&"later_attempts"));
        assert_eq!((st.attempt_lines, st.requests), (2, 1));
    }

    #[test]
    fn workers_connections_request_lines_and_time_apart_make_requests() {
        let (got, _) = run(
            &[
                line(1, 7, 3, REFUSED, "/a", "127.0.0.1:1"),
                line(1, 8, 3, REFUSED, "/a", "127.0.0.1:1"),
                line(1, 7, 4, REFUSED, "/a", "127.0.0.1:1"),
                line(2, 7, 3, REFUSED, "/b", "127.0.0.1:2"),
                line(50, 7, 3, REFUSED, "/b", "127.0.0.1:3"),
            ],
            30,
        );
        let keys: Vec<_> = got
            .iter()
            .map(|r| (r.pid, r.conn, r.request.clone(), r.attempts.len()))
            .collect();
        assert_eq!(got.len(), 5, "{keys:?}");
    }

    #[test]
    fn a_peer_tried_again_is_a_new_request_but_for_a_stale_keepalive_retry() {
        let (got, _) = run(
            &[
                line(1, 7, 3, REFUSED, "/a", "127.0.0.1:1"),
                line(2, 7, 3, REFUSED, "/a", "127.0.0.1:1"),
            ],
            65,
        );
        assert_eq!(got.len(), 2);
        let (got, _) = run(
            &[
                line(1, 7, 3, CLOSED, "/a", "127.0.0.1:1"),
                line(1, 7, 3, CLOSED, "/a", "127.0.0.1:1"),
                line(1, 7, 3, CLOSED, "/a", "127.0.0.1:1"),
            ],
            65,
        );
        assert_eq!(got.iter().map(|r| r.attempts.len()).collect::<Vec<_>>(), [2, 1]);
    }

    #[test]
    fn the_module_line_is_taken_and_the_lines_it_accounts_for_are_not_counted_again() {
        let module = format!(
            "2026/11/25 10:00:02 [error] 7#7: *3 upstream_cause=upstream_prematurely_closed status=502 attempts=3 \
             peer=127.0.0.1:2 causes=\"connect_refused, via_upstream, upstream_prematurely_closed\" detail=\"{CLOSED}\" \
             hint=\"the upstream closed\", client: 127.0.0.1, server: s, request: \"GET /a HTTP/1.1\", upstream: \
             \"http://127.0.0.1:2/a\", host: \"h\""
        );
        let (got, st) = run(
            &[
                line(0, 7, 3, REFUSED, "/z", "127.0.0.1:1"),
                line(1, 7, 3, REFUSED, "/a", "127.0.0.1:1"),
                line(1, 7, 3, CLOSED, "/a", "127.0.0.1:2"),
                module,
            ],
            65,
        );
        assert_eq!(got.len(), 2);
        // /z is another request on the connection: it stays open until the end
        assert_eq!(got[1].request, b"GET /z HTTP/1.1");
        let r = &got[0];
        assert_eq!(
            (r.source, r.status, r.attempts_made),
            (Source::Module, Some(502), Some(3))
        );
        assert_eq!(r.causes, "connect_refused, via_upstream, upstream_prematurely_closed");
        let peers: Vec<_> = r
            .attempts
            .iter()
            .map(|a| String::from_utf8_lossy(&a.peer).into_owned())
            .collect();
        assert_eq!(peers, ["127.0.0.1:1", "", "127.0.0.1:2"]);
        assert_eq!(r.unknown(), ["peers"]);
        assert_eq!((st.folded, st.module_lines, st.requests), (2, 1, 2));
    }

    #[test]
    fn http2_streams_on_one_connection_are_requests_of_their_own() {
        let (got, _) = run(
            &[
                line(1, 7, 3, REFUSED, "/a", "127.0.0.1:1"),
                line(1, 7, 3, REFUSED, "/b", "127.0.0.1:1"),
                line(1, 7, 3, CLOSED, "/a", "127.0.0.1:2"),
                line(1, 7, 3, CLOSED, "/b", "127.0.0.1:2"),
            ],
            65,
        );
        let mut causes: Vec<_> = got.iter().map(|r| (r.request.clone(), r.causes.clone())).collect();
        causes.sort();
        let want = "connect_refused, upstream_prematurely_closed".to_owned();
        assert_eq!(
            causes,
            [
                (b"GET /a HTTP/1.1".to_vec(), want.clone()),
                (b"GET /b HTTP/1.1".to_vec(), want)
            ]
        );
    }

    #[test]
    fn a_resolver_failure_or_no_live_server_ends_its_request() {
        let nx = |sec| {
            format!(
                "2026/11/25 10:00:{sec:02} [error] 7#7: *5 nosuch.test could not be resolved (3: Host not found), \
                 client: 127.0.0.1, server: s, request: \"GET /a HTTP/1.1\", host: \"h\""
            )
        };
        let none = |sec| {
            line(
                sec,
                7,
                5,
                "no live upstreams while connecting to upstream",
                "/a",
                "backend",
            )
        };
        let (got, _) = run(&[nx(1), nx(2), nx(3), none(4), none(5)], 65);
        let causes: Vec<_> = got.iter().map(|r| r.causes.as_str()).collect();
        assert_eq!(
            causes,
            [
                "resolve_failed",
                "resolve_failed",
                "resolve_failed",
                "no_live_upstreams",
                "no_live_upstreams"
            ]
        );
        assert_eq!(got[0].attempts[0].upstream, b"nosuch.test");
    }

    #[test]
    fn a_no_live_line_and_the_module_s_after_it_are_one_request() {
        let module = "2026/11/25 10:00:01 [error] 7#7: *5 upstream_cause=no_live_upstreams status=502 attempts=1 \
             peer=- causes=\"no_live_upstreams\" detail=\"no live upstreams while connecting to upstream\" hint=\"h\", \
             client: 127.0.0.1, server: s, request: \"GET /a HTTP/1.1\", upstream: \"http://backend/a\", host: \"h\"";
        let none = line(
            1,
            7,
            5,
            "no live upstreams while connecting to upstream",
            "/a",
            "backend",
        );
        let (got, st) = run(&[none, module.to_owned()], 65);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].source, got[0].status), (Source::Module, Some(502)));
        assert_eq!(st.folded, 1);
    }

    /// A stream line of worker 7, session *9, as nginx 1.28 writes it.
    fn session(sec: u32, level: &str, msg: &str, suffix: &str) -> String {
        format!("2026/11/25 10:00:{sec:02} [{level}] 7#7: *9 {msg}{suffix}")
    }

    fn tcp(peer: &str, from_client: u32, from_upstream: u32) -> String {
        format!(
            ", client: 127.0.0.1, server: 127.0.0.1:9000, upstream: \"{peer}\", bytes from/to client:{from_client}/\
             {from_upstream}, bytes from/to upstream:{from_upstream}/{from_client}"
        )
    }

    #[test]
    fn a_stream_session_s_failures_before_its_connect_are_its_attempts() {
        let refused = "connect() failed (111: Connection refused) while connecting to upstream";
        let (got, st) = run(
            &[
                session(1, "error", refused, &tcp("127.0.0.1:1", 0, 0)),
                session(1, "error", refused, &tcp("127.0.0.1:2", 0, 0)),
            ],
            65,
        );
        assert_eq!(got.len(), 1);
        let r = &got[0];
        assert_eq!(r.causes, "connect_refused, connect_refused");
        assert_eq!(
            (r.stream, r.status, r.source),
            (Some(Transport::Tcp), None, Source::Nginx)
        );
        assert_eq!(r.attempts[1].peer, b"127.0.0.1:2");
        assert_eq!(r.attempts[1].upstream, b"127.0.0.1:2");
        assert_eq!(
            (r.client.as_slice(), r.server.as_slice()),
            (&b"127.0.0.1"[..], &b"127.0.0.1:9000"[..])
        );
        assert_eq!(r.unknown(), ["status", "later_attempts"]);
        assert_eq!(st.attempt_lines, 2);
    }

    #[test]
    fn a_stream_session_s_failure_after_its_connect_ends_it_with_nginx_s_status() {
        let reset = "recv() failed (104: Connection reset by peer) while proxying and reading from upstream";
        let (got, st) = run(
            &[
                session(1, "info", "client 127.0.0.1:50000 connected to 127.0.0.1:9000", ""),
                session(1, "info", "proxy 127.0.0.1:40000 connected to 127.0.0.1:9001", ""),
                session(2, "error", reset, &tcp("127.0.0.1:9001", 5, 0)),
                session(
                    2,
                    "info",
                    "upstream disconnected, bytes from/to client:5/0, bytes from/to upstream:0/5",
                    "",
                ),
            ],
            65,
        );
        assert_eq!(got.len(), 1);
        let r = &got[0];
        assert_eq!(
            (r.cause, r.status, r.stream),
            (Cause::UpstreamReset, Some(200), Some(Transport::Tcp))
        );
        assert_eq!(r.attempts.len(), 1);
        assert_eq!(r.unknown(), Vec::<&str>::new());
        assert_eq!(st.attempt_lines, 1);
        // the idle timeout: nginx's own line at info
        let idle = "connection timed out (110: Connection timed out) while proxying connection";
        let (got, _) = run(&[session(3, "info", idle, &tcp("127.0.0.1:9001", 5, 5))], 65);
        assert_eq!((got[0].cause, got[0].status), (Cause::IdleTimeout, Some(200)));
    }

    #[test]
    fn a_stream_session_closed_silently_is_told_by_its_info_lines() {
        let lines = [
            session(1, "info", "client [::1]:50000 connected to [::1]:9000", ""),
            session(1, "info", "proxy [::1]:40000 connected to [::1]:9001", ""),
            session(
                2,
                "info",
                "upstream disconnected, bytes from/to client:5/0, bytes from/to upstream:0/5",
                "",
            ),
        ];
        let (got, st) = run(&lines, 65);
        assert_eq!(got.len(), 1);
        let r = &got[0];
        assert_eq!(
            (r.cause, r.status, r.stream),
            (Cause::UpstreamClosedSilent, Some(200), Some(Transport::Tcp))
        );
        assert_eq!(r.attempts[0].peer, b"[::1]:9001");
        assert_eq!(
            (r.client.as_slice(), r.server.as_slice()),
            (&b"::1"[..], &b"[::1]:9000"[..])
        );
        assert!(r.detail.starts_with(b"upstream disconnected, bytes"));
        assert_eq!(st.attempt_lines, 1);
        // with the module's line after them: one session, the module's
        let module = session(
            2,
            "error",
            "upstream_cause=upstream_closed_silent status=200 attempts=1 peer=[::1]:9001 \
             causes=\"upstream_closed_silent\" detail=\"\" hint=\"h\"",
            ", client: ::1, server: [::1]:9000, upstream: \"[::1]:9001\", bytes from/to client:5/0, bytes from/to upstream:0/0",
        );
        let (got, st) = run(&[&lines[..], &[module]].concat(), 65);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].source, got[0].stream, st.folded),
            (Source::Module, Some(Transport::Tcp), 1)
        );
        // sessions that ended as they should are no failure
        let (got, _) = run(
            &[
                lines[0].clone(),
                lines[1].clone(),
                session(
                    2,
                    "info",
                    "upstream disconnected, bytes from/to client:5/9, bytes from/to upstream:9/5",
                    "",
                ),
                session(
                    2,
                    "info",
                    "client disconnected, bytes from/to client:5/0, bytes from/to upstream:0/5",
                    "",
                ),
            ],
            65,
        );
        assert!(got.is_empty());
    }

    #[test]
    fn udp_sessions() {
        let udp = ", udp client: 127.0.0.1, server: 127.0.0.1:9053, upstream: \"127.0.0.1:9054\", \
                   bytes from/to client:29/0, bytes from/to upstream:0/29";
        let (got, _) = run(
            &[
                session(
                    1,
                    "error",
                    "recv() failed (111: Connection refused) while proxying and reading from upstream",
                    udp,
                ),
                session(
                    1,
                    "info",
                    "udp done, packets from/to client:1/0, bytes from/to client:29/0, bytes from/to upstream:0/29",
                    "",
                ),
            ],
            65,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].cause, got[0].status, got[0].stream),
            (Cause::ConnectRefused, Some(200), Some(Transport::Udp))
        );
        let silent = "upstream timed out (110: Connection timed out) while proxying connection";
        let (got, _) = run(&[session(1, "error", silent, udp)], 65);
        assert_eq!((got[0].cause, got[0].status), (Cause::UdpNoResponse, Some(502)));
    }

    #[test]
    fn a_module_line_whose_first_nginx_lines_are_missing_takes_the_peers_of_the_last() {
        let module = String::from(
            "2026/11/25 10:00:02 [error] 7#7: *3 upstream_cause=read_timeout status=504 attempts=2 \
             peer=127.0.0.1:2 causes=\"connect_refused, read_timeout\" detail=\"x\" hint=\"y\", client: 127.0.0.1, \
             server: s, request: \"GET /a HTTP/1.1\", upstream: \"http://127.0.0.1:2/a\", host: \"h\"",
        );
        let timed_out = "upstream timed out (110: Connection timed out) while reading response header from upstream";
        let (got, _) = run(&[line(1, 7, 3, timed_out, "/a", "127.0.0.1:2"), module], 65);
        let r = &got[0];
        let peers: Vec<_> = r
            .attempts
            .iter()
            .map(|a| String::from_utf8_lossy(&a.peer).into_owned())
            .collect();
        assert_eq!(peers, ["", "127.0.0.1:2"]);
        assert_eq!(r.unknown(), ["peers"]);
    }

    #[test]
    fn open_requests_are_bounded() {
        let mut a = Assembler::new(3600, 8);
        let mut closed = 0;
        for conn in 0..100 {
            let l = line(1, 1, conn, REFUSED, "/a", "127.0.0.1:1");
            a.line(&errlog::parse_line(l.as_bytes()).unwrap(), &mut |_| closed += 1);
            assert!(a.open() <= 8);
        }
        a.finish(&mut |_| closed += 1);
        assert_eq!(closed, 100);
        assert!(a.stats.evicted > 0);
    }

    #[test]
    fn lines_that_cannot_be_read_are_counted() {
        let (got, st) = run(
            &[
                "2026/11/25 10:00:01 [error] 7#7: *3 upstream_cause=connect_refused status=502 attempts=1 peer=x cau"
                    .to_owned(),
                "2026/11/25 10:00:01 [error] 7#7: no live upstreams while connecting to upstream".to_owned(),
                "2026/11/25 10:00:01 [warn] 7#7: *3 upstream server temporarily disabled while connecting to upstream"
                    .to_owned(),
            ],
            65,
        );
        assert!(got.is_empty());
        assert_eq!((st.unreadable, st.nginx_lines, st.attempt_lines), (2, 3, 0));
        // other modules' lines are counted apart; a failure cut before its
        // " while" is unreadable, one cut after its action's comma is read
        let (got, st) = run(
            &[
                "2026/11/25 10:00:01 [error] 7#7: *3 [lua] main.lua:28: handler(): api.internal could not be \
                 resolved (110: Operation timed out), client: 10.0.0.1, server: s, request: \"GET / HTTP/1.1\""
                    .to_owned(),
                "2026/11/25 10:00:01 [error] 7#7: *4 connect() failed (111: Connection refused) while conn".to_owned(),
                "2026/11/25 10:00:01 [error] 7#7: *5 upstream timed out (110: Connection timed out) while reading \
                 response header from upstream,"
                    .to_owned(),
            ],
            65,
        );
        assert_eq!((st.third_party, st.unreadable, st.attempt_lines), (1, 0, 1));
        assert_eq!(got[0].cause, Cause::ReadTimeout);
        let (_, st) = run(
            &["2026/11/25 10:00:01 [error] 7#7: *4 connect() failed (111: Connection refused)".to_owned()],
            65,
        );
        assert_eq!(st.unreadable, 1);
    }

    #[test]
    fn two_sources_connections_never_merge() {
        let mut a = Assembler::new(65, 1000);
        let mut got = Vec::new();
        for origin in [&b"pod/a/c"[..], b"pod/b/c", b"pod/a/c"] {
            let l = line(
                1,
                7,
                3,
                REFUSED,
                "/a",
                if origin == b"pod/b/c" {
                    "127.0.0.1:1"
                } else {
                    "127.0.0.1:2"
                },
            );
            let mut p = errlog::parse_line(l.as_bytes()).unwrap();
            p.origin = origin;
            a.line(&p, &mut |r| got.push(r));
        }
        a.finish(&mut |r| got.push(r));
        got.sort_by(|x, y| x.origin.cmp(&y.origin));
        let seen: Vec<_> = got.iter().map(|r| (r.origin.clone(), r.attempts.len())).collect();
        assert_eq!(
            seen,
            [
                (b"pod/a/c".to_vec(), 1),
                (b"pod/a/c".to_vec(), 1),
                (b"pod/b/c".to_vec(), 1)
            ]
        );
    }
}

/// Any bytes in: no panic, open requests bounded, and every failure line
/// ends up in a request or is counted as folded into the module's.
#[cfg(test)]
mod bad_input {
    use super::*;
    use crate::input::Splitter;
    use proptest::prelude::*;

    const LINES: [&str; 8] = [
        "2026/11/25 10:00:01 [error] 7#7: *3 connect() failed (111: Connection refused) while connecting to \
         upstream, client: 127.0.0.1, server: s, request: \"GET /a HTTP/1.1\", upstream: \"http://127.0.0.1:1/a\", \
         host: \"h\"\n",
        "2026/11/25 10:00:02 [error] 7#7: *3 upstream_cause=connect_refused status=502 attempts=1 peer=127.0.0.1:1 \
         causes=\"connect_refused\" detail=\"connect() failed (111: Connection refused) while connecting to \
         upstream\" hint=\"x\", client: 127.0.0.1, server: s, request: \"GET /a HTTP/1.1\", upstream: \
         \"http://127.0.0.1:1/a\", host: \"h\"\n",
        "2026/11/25 10:00:03 [error] 8#8: *4 no live upstreams while connecting to upstream, client: ::1, server: , \
         request: \"GET / HTTP/2.0\", upstream: \"grpc://backend\", host: \"h\"\n",
        "2026/11/25 10:00:04 [info] 8#8: *5 client 10.0.0.1 closed keepalive connection\n",
        "2026/11/25 10:00:04 [info] 8#8: *6 client 10.0.0.1:5000 connected to 0.0.0.0:9000\n",
        "2026/11/25 10:00:04 [info] 8#8: *6 proxy 10.0.0.2:4000 connected to 10.0.0.3:9001\n",
        "2026/11/25 10:00:05 [error] 8#8: *6 recv() failed (104: Connection reset by peer) while proxying and reading \
         from upstream, client: 10.0.0.1, server: 0.0.0.0:9000, upstream: \"10.0.0.3:9001\", bytes from/to \
         client:5/0, bytes from/to upstream:0/5\n",
        "2026/11/25 10:00:05 [info] 8#8: *6 upstream disconnected, bytes from/to client:5/0, bytes from/to upstream:0/5\n",
    ];

    fn pieces() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..400),
            (0..LINES.len(), any::<usize>()).prop_map(|(i, cut)| {
                let l = LINES[i].as_bytes();
                l[..cut % (l.len() + 1)].to_vec()
            }),
            (0..LINES.len()).prop_map(|i| LINES[i].as_bytes().to_vec()),
            (0..LINES.len(), 0..256usize, any::<u8>()).prop_map(|(i, at, b)| {
                let mut l = LINES[i].as_bytes().to_vec();
                let n = l.len();
                l[at % n] = b;
                l
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_bytes_are_read_without_a_panic(parts in proptest::collection::vec(pieces(), 0..40), window in 0..100i64) {
            let input: Vec<u8> = parts.concat();
            let mut a = Assembler::new(window, 4);
            let mut s = Splitter::new();
            let mut closed = Vec::new();
            let feed = |l: &[u8], a: &mut Assembler, closed: &mut Vec<Request>| {
                if let Some(p) = errlog::parse_line(l) {
                    a.line(&p, &mut |r| closed.push(r));
                    prop_assert!(a.open() <= 4);
                }
                Ok(())
            };
            let mut lines = Vec::new();
            s.read_from(&mut &input[..], &mut |l| lines.push(l.to_vec())).unwrap();
            s.finish(&mut |l| lines.push(l.to_vec()));
            for l in &lines {
                feed(l, &mut a, &mut closed)?;
            }
            a.finish(&mut |r| closed.push(r));
            prop_assert_eq!(a.open(), 0);
            let st = a.stats;
            let attempts: u64 = closed.iter().filter(|r| r.source == Source::Nginx).map(|r| r.attempts.len() as u64).sum();
            prop_assert_eq!(attempts + st.folded, st.attempt_lines);
            prop_assert_eq!(closed.len() as u64, st.requests);
            prop_assert_eq!(s.stats.bytes, input.len() as u64);
        }
    }
}
