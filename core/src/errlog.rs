//! Reading an nginx error log without the module (the offline classifier,
//! `upstream-cause`): the fields of one line as `ngx_log_error_core` and
//! the HTTP log handler write them, the module's own enriched line, and
//! what an attempt's text alone tells of its cause.
//!
//! ```text
//! 2026/11/25 10:00:00 [error] 123#123: *5 MESSAGE while ACTION, client: 127.0.0.1,
//!     server: , request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:1/", host: "a"
//! ```
//!
//! nginx's stream proxy writes its own suffix, and some of its lines
//! without one ([`session_line`]):
//!
//! ```text
//! 2026/11/25 10:00:00 [error] 123#123: *7 recv() failed (104: Connection reset by peer)
//!     while proxying and reading from upstream, client: 127.0.0.1, server: 0.0.0.0:6379,
//!     upstream: "127.0.0.1:6380", bytes from/to client:14/0, bytes from/to upstream:0/14
//! 2026/11/25 10:00:00 [info] 123#123: *7 upstream disconnected, bytes from/to client:14/0,
//!     bytes from/to upstream:0/14
//! ```
//!
//! Every function takes arbitrary bytes and never panics.

use crate::cause::Cause;
use crate::classify::{classify, End, Observation, Session};
use crate::scan::memchr;
use crate::text::{find, parse_message, Message, MessageKind, Phase};

/// The log's own clock: seconds since 1970-01-01 00:00:00 of the time
/// zone nginx wrote in (its lines carry no zone).
pub type Time = i64;

/// nginx's log levels, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Emerg,
    Alert,
    Crit,
    Error,
    Warn,
    Notice,
    Info,
    Debug,
}

impl Level {
    pub fn from_name(name: &[u8]) -> Option<Level> {
        Some(match name {
            b"emerg" => Level::Emerg,
            b"alert" => Level::Alert,
            b"crit" => Level::Crit,
            b"error" => Level::Error,
            b"warn" => Level::Warn,
            b"notice" => Level::Notice,
            b"info" => Level::Info,
            b"debug" => Level::Debug,
            _ => return None,
        })
    }
}

/// Stream: a session's byte counts, as nginx's stream proxy writes them
/// (`bytes from/to client:5/0, bytes from/to upstream:0/5`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes {
    pub from_client: u64,
    pub to_client: u64,
    pub from_upstream: u64,
    pub to_upstream: u64,
}

impl Bytes {
    /// What the counts tell of the session, as the stream module reads
    /// them from its own counters.
    fn session(&self, udp: bool) -> Session {
        Session {
            udp,
            client_sent: self.from_client > 0,
            upstream_sent: self.from_upstream > 0,
            ..Session::default()
        }
    }
}

/// What nginx's HTTP log handler appends to a request's line, or its
/// stream log handler to a session's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context<'a> {
    pub client: Option<&'a [u8]>,
    pub server: Option<&'a [u8]>,
    pub request: Option<&'a [u8]>,
    /// The URI of the subrequest (SSI, auth_request) the line is about.
    pub subrequest: Option<&'a [u8]>,
    pub upstream: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
    /// Stream: `udp client: ` instead of `client: `.
    pub udp: bool,
    /// Stream: the byte counts that end its suffix.
    pub bytes: Option<Bytes>,
}

impl Context<'_> {
    /// The line is about a stream session (TCP or UDP).
    pub fn stream(&self) -> bool {
        self.udp || self.bytes.is_some()
    }
}

/// One error-log line, split into its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorLine<'a> {
    pub time: Time,
    pub level: Level,
    pub pid: u32,
    /// The connection number (`*N`), on lines about a connection.
    pub conn: Option<u64>,
    /// The text nginx formatted, with its " while ACTION" (what
    /// [`crate::text::parse_message`] reads).
    pub message: &'a [u8],
    /// The log handler's suffix, from "client: " on ([`ErrorLine::context`]).
    pub suffix: &'a [u8],
    /// The pod, container or host a prefix in front of nginx's line named
    /// ([`crate::prefix::find`]), as written; empty for none.
    pub origin: &'a [u8],
}

impl<'a> ErrorLine<'a> {
    /// The suffix's fields, parsed (only for the lines that need them).
    pub fn context(&self) -> Context<'a> {
        parse_context(self.suffix)
    }

    /// Whether the suffix is shaped as stream's (`udp client: ...`, or
    /// ending with its byte counts): the cheap test before
    /// [`ErrorLine::context`] says for sure. HTTP's suffix ends with a
    /// quoted value or a server name.
    pub fn stream_suffix(&self) -> bool {
        let s = self.suffix;
        s.starts_with(b"udp client: ")
            || (s.last().is_some_and(u8::is_ascii_digit)
                && find(&s[s.len().saturating_sub(64)..], b", bytes from/to upstream:").is_some())
    }
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter()
        .try_fold(0u32, |n, &c| n.checked_mul(10)?.checked_add(u32::from(c - b'0')))
}

/// Parses nginx's "YYYY/MM/DD HH:MM:SS".
pub fn parse_time(b: &[u8]) -> Option<Time> {
    if b.len() != 19 || b[4] != b'/' || b[7] != b'/' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi, s) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    Some(days * 86_400 + i64::from(h * 3600 + mi * 60 + s))
}

/// Formats a time as nginx does ("YYYY/MM/DD HH:MM:SS").
pub fn format_time(t: Time) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!("{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Whether a line starts as nginx's error-log lines do: the cheap test
/// run on every line of a log.
pub fn looks_like_nginx(line: &[u8]) -> bool {
    line.len() > 22
        && line[4] == b'/'
        && line[7] == b'/'
        && line[10] == b' '
        && line[13] == b':'
        && line[19] == b' '
        && line[20] == b'['
}

/// The actions nginx names while it works on an upstream: a message
/// ends right after " while ACTION" (what follows is the client-controlled
/// request line, which may hold anything).
const ACTIONS: [&[u8]; 8] = [
    b"connecting to upstream",
    b"SSL handshaking to upstream",
    b"sending request to upstream",
    b"reading response header from upstream",
    b"reading upstream",
    b"proxying and reading from upstream",
    b"proxying and sending to upstream",
    b"proxying connection",
];

const CLIENT: &[u8] = b", client: ";
/// Stream's suffix for a UDP session.
const UDP_CLIENT: &[u8] = b", udp client: ";

/// Where the log handler's suffix starts in `s` (", client: " or stream's
/// ", udp client: "), the first of either: one scan.
fn client_at(s: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = find(&s[from..], b"client: ") {
        let at = from + at;
        if s[..at].ends_with(b", ") {
            return Some(at - 2);
        }
        if s[..at].ends_with(b", udp ") {
            return Some(at - 6);
        }
        from = at + 1;
    }
    None
}

/// Splits nginx's text from the log handler's suffix (which starts at
/// ", client: "). The module's own line ends at its `hint="..."`, whose
/// quoted values never hold a raw `"`.
fn split_suffix(rest: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut end = None;
    if rest.starts_with(MODULE_KEY) {
        if let Some(h) = find(rest, b"\" hint=\"") {
            let from = h + 8;
            if let Some(q) = memchr(b'"', &rest[from..]) {
                end = Some(from + q + 1);
            }
        }
    } else if let Some(w) = find(rest, b" while ") {
        // the first " while ACTION, client: " of an upstream action
        let mut from = w;
        while let Some(at) = find(&rest[from..], b" while ") {
            let a = from + at + 7;
            if let Some(act) = ACTIONS.iter().find(|act| {
                rest[a..].starts_with(act) && {
                    let after = &rest[a + act.len()..];
                    after.starts_with(CLIENT) || after.starts_with(UDP_CLIENT)
                }
            }) {
                end = Some(a + act.len());
                break;
            }
            from = a;
        }
    }
    let end = match end {
        Some(e) => e,
        None => match client_at(rest) {
            Some(at) => at,
            // no suffix: a line cut after its " while ACTION," keeps its action
            None => return (rest.strip_suffix(b",").unwrap_or(rest), None),
        },
    };
    // the module's line may carry " while ACTION" too
    let tail = &rest[end..];
    match client_at(tail) {
        Some(at) => (&rest[..end], Some(&tail[at + 2..])),
        None => (&rest[..end], None),
    }
}

/// The value of `key: ` at the start of `s`, up to the next ", " (unquoted
/// values: client, server).
fn plain_field<'a>(s: &'a [u8], key: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let v = s.strip_prefix(key)?;
    match find(v, b", ") {
        Some(at) => Some((&v[..at], &v[at + 2..])),
        None => Some((v, &[])),
    }
}

/// The keys that may follow a quoted value (stream's byte counts follow
/// its `upstream: "..."`).
const AFTER_QUOTED: [&[u8]; 5] = [
    b", subrequest: \"",
    b", upstream: \"",
    b", host: \"",
    b", referrer: \"",
    BYTES_KEY,
];

const BYTES_KEY: &[u8] = b", bytes from/to client:";

/// The value of `key: "` at the start of `s`: up to the first `"` that
/// ends the line or is followed by one of the keys nginx writes after it.
/// `ends`: the value's end must also pass this test, when some `"` does
/// (a request line ends with its version: a forged `", upstream: "` in
/// its URI does not end it).
fn quoted_field<'a>(s: &'a [u8], key: &[u8], next: &[&[u8]], ends: fn(&[u8]) -> bool) -> Option<(&'a [u8], &'a [u8])> {
    let v = s.strip_prefix(key)?;
    let mut first = None;
    let mut from = 0;
    while let Some(q) = memchr(b'"', &v[from..]) {
        let at = from + q;
        let after = &v[at + 1..];
        let rest: Option<&[u8]> = if after.is_empty() || after == b"\r" {
            Some(&[])
        } else if next.iter().any(|k| after.starts_with(k)) {
            Some(&after[2..])
        } else {
            None
        };
        if let Some(rest) = rest {
            if ends(&v[..at]) {
                return Some((&v[..at], rest));
            }
            first = first.or(Some((&v[..at], rest)));
        }
        from = at + 1;
    }
    Some(first.unwrap_or((v, &[])))
}

/// A request line's end: " HTTP/1.1" and the like.
fn versioned(v: &[u8]) -> bool {
    let n = v.len();
    n >= 9
        && v[n - 9..n - 3] == *b" HTTP/"
        && v[n - 3].is_ascii_digit()
        && v[n - 2] == b'.'
        && v[n - 1].is_ascii_digit()
}

fn any_end(_: &[u8]) -> bool {
    true
}

/// Two counts, `A/B`, and what follows them.
fn pair(s: &[u8]) -> Option<(u64, u64, &[u8])> {
    let count = |s: &[u8]| -> Option<(u64, usize)> {
        let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let v = s[..n]
            .iter()
            .try_fold(0u64, |a, &b| a.checked_mul(10)?.checked_add(u64::from(b - b'0')))?;
        Some((v, n))
    };
    let (a, n) = count(s)?;
    let s = s[n..].strip_prefix(b"/")?;
    let (b, m) = count(s)?;
    Some((a, b, &s[m..]))
}

/// Stream's byte counts at the start of `s`: `bytes from/to
/// client:A/B, bytes from/to upstream:C/D`.
pub fn parse_bytes(s: &[u8]) -> Option<Bytes> {
    let s = s.strip_prefix(&BYTES_KEY[2..])?;
    let (from_client, to_client, s) = pair(s)?;
    let s = s.strip_prefix(b", bytes from/to upstream:")?;
    let (from_upstream, to_upstream, _) = pair(s)?;
    Some(Bytes {
        from_client,
        to_client,
        from_upstream,
        to_upstream,
    })
}

/// Parses the suffix `client: A, server: B, request: "R", upstream: "U",
/// host: "H"`, or stream's `[udp ]client: A, server: B, upstream: "U",
/// bytes from/to client:..., bytes from/to upstream:...`.
pub fn parse_context(s: &[u8]) -> Context<'_> {
    let mut c = Context::default();
    let (client, rest) = match plain_field(s, b"client: ") {
        Some(f) => f,
        None => match plain_field(s, b"udp client: ") {
            Some(f) => {
                c.udp = true;
                f
            }
            None => return c,
        },
    };
    c.client = Some(client);
    let Some((server, mut rest)) = plain_field(rest, b"server: ") else {
        return c;
    };
    c.server = Some(server);
    if let Some((v, r)) = quoted_field(rest, b"request: \"", &AFTER_QUOTED, versioned) {
        c.request = Some(v);
        rest = r;
    }
    if let Some((v, r)) = quoted_field(rest, b"subrequest: \"", &AFTER_QUOTED[1..], any_end) {
        c.subrequest = Some(v);
        rest = r;
    }
    if let Some((v, r)) = quoted_field(rest, b"upstream: \"", &AFTER_QUOTED[2..], any_end) {
        c.upstream = Some(v);
        rest = r;
    }
    if let Some((v, _)) = quoted_field(rest, b"host: \"", &AFTER_QUOTED[3..], any_end) {
        c.host = Some(v);
    }
    // stream's own: the byte counts end its suffix
    if c.request.is_none() && c.host.is_none() {
        c.bytes = parse_bytes(rest);
    }
    c
}

/// Parses one error-log line (without its linefeed); `None` when it is not
/// shaped as nginx writes them.
pub fn parse_line(line: &[u8]) -> Option<ErrorLine<'_>> {
    if !looks_like_nginx(line) {
        return None;
    }
    let time = parse_time(&line[..19])?;
    let rb = 21 + memchr(b']', &line[21..line.len().min(29)])?;
    let level = Level::from_name(&line[21..rb])?;
    let rest = line[rb + 1..].strip_prefix(b" ")?;
    let hash = memchr(b'#', &rest[..rest.len().min(12)])?;
    let pid = digits(&rest[..hash])?;
    let colon = find(rest, b": ")?;
    if colon < hash || digits(&rest[hash + 1..colon]).is_none() {
        return None;
    }
    let mut rest = &rest[colon + 2..];
    let mut conn = None;
    if let Some(r) = rest.strip_prefix(b"*") {
        let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
        if n > 0 && n <= 19 && r.get(n) == Some(&b' ') {
            conn = r[..n]
                .iter()
                .try_fold(0u64, |a, &b| a.checked_mul(10)?.checked_add(u64::from(b - b'0')));
            rest = &r[n + 1..];
        }
    }
    while let Some((&last, head)) = rest.split_last() {
        if last == b'\r' || last == b'\n' {
            rest = head;
        } else {
            break;
        }
    }
    let (message, suffix) = split_suffix(rest);
    Some(ErrorLine {
        time,
        level,
        pid,
        conn,
        message,
        suffix: suffix.unwrap_or_default(),
        origin: &[],
    })
}

/// The peer an upstream URL names (`http://127.0.0.1:8081/ping` ->
/// `127.0.0.1:8081`, `fastcgi://unix:/run/php.sock:` -> `unix:/run/php.sock`),
/// and the URL up to it (`http://127.0.0.1:8081`).
pub fn peer_of(upstream: &[u8]) -> (&[u8], &[u8]) {
    let Some(s) = find(upstream, b"://") else {
        return (upstream, upstream);
    };
    let start = s + 3;
    let auth = &upstream[start..];
    let len = match auth.strip_prefix(b"unix:") {
        Some(path) => 5 + memchr(b':', path).unwrap_or(path.len()),
        None => {
            let len = memchr(b'/', auth).unwrap_or(auth.len());
            // the port ends with its digits: nginx writes a URI without
            // a slash right after it (`http://127.0.0.1:5001version`)
            let host = if auth.starts_with(b"[") {
                memchr(b']', &auth[..len]).map_or(len, |e| e + 1)
            } else {
                memchr(b':', &auth[..len]).unwrap_or(len)
            };
            match auth[host..len].strip_prefix(b":") {
                Some(port) => {
                    let digits = port.iter().take_while(|b| b.is_ascii_digit()).count();
                    if digits > 0 {
                        host + 1 + digits
                    } else {
                        len
                    }
                }
                None => len,
            }
        }
    };
    (&auth[..len], &upstream[..start + len])
}

/// [`peer_of`], for a unix-domain peer that nginx wrote without the colon
/// that ends its path (`proxy_pass http://unix:/tmp/app.sock;` gives
/// `http://unix:/tmp/app.sock/invocations`): the request's URI, which
/// nginx appended, is not part of the path.
pub fn peer_of_request<'a>(upstream: &'a [u8], request: Option<&[u8]>) -> (&'a [u8], &'a [u8]) {
    let (peer, url) = peer_of(upstream);
    // a unix path that runs to the end: no colon ended it
    if !peer.starts_with(b"unix:") || url.len() != upstream.len() {
        return (peer, url);
    }
    // the request line's target, whole and without its arguments
    let target = request.and_then(|r| {
        let r = &r[memchr(b' ', r)? + 1..];
        Some(&r[..memchr(b' ', r).unwrap_or(r.len())])
    });
    let Some(target) = target.filter(|t| t.len() > 1 && t[0] == b'/') else {
        return (peer, url);
    };
    let path = &target[..memchr(b'?', target).unwrap_or(target.len())];
    for uri in [target, path] {
        if let Some(p) = peer.strip_suffix(uri) {
            if p.len() > 5 {
                return (p, &url[..url.len() - uri.len()]);
            }
        }
    }
    (peer, url)
}

/// The peer a message names itself, for lines without `upstream: "..."`
/// (`connect() to [240e::1]:443 failed (101: ...)`).
pub fn peer_in_text(message: &[u8]) -> Option<&[u8]> {
    let rest = message
        .strip_prefix(b"connect() to ")
        .or_else(|| message.strip_prefix(b"kevent() reported that connect() to "))?;
    let end = find(rest, b" failed")?;
    let peer = &rest[..end];
    (!peer.is_empty() && memchr(b' ', peer).is_none()).then_some(peer)
}

/// The key that starts the module's own line.
pub const MODULE_KEY: &[u8] = b"upstream_cause=";

/// The module's enriched line (`upstream_cause=... status=... attempts=...
/// peer=... causes="..." detail="..." hint="..."`), its values as written
/// (`peer`, `detail` escaped as [`crate::render::escape_quoted`] does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleLine<'a> {
    pub cause: Cause,
    pub status: u16,
    pub attempts: u32,
    pub peer: &'a [u8],
    pub causes: &'a [u8],
    pub detail: &'a [u8],
    pub hint: &'a [u8],
}

/// Parses the module's line from a message ([`ErrorLine::message`]).
pub fn parse_module_line(m: &[u8]) -> Option<ModuleLine<'_>> {
    let rest = m.strip_prefix(MODULE_KEY)?;
    let sp = memchr(b' ', rest)?;
    let cause = Cause::from_code(core::str::from_utf8(&rest[..sp]).ok()?)?;
    let rest = rest[sp + 1..].strip_prefix(b"status=")?;
    let sp = memchr(b' ', rest)?;
    let status = u16::try_from(digits(&rest[..sp])?).ok()?;
    let rest = rest[sp + 1..].strip_prefix(b"attempts=")?;
    let sp = memchr(b' ', rest)?;
    let attempts = digits(&rest[..sp])?;
    let rest = rest[sp + 1..].strip_prefix(b"peer=")?;
    let sp = find(rest, b" causes=\"")?;
    let peer = &rest[..sp];
    let rest = &rest[sp + 9..];
    let q = memchr(b'"', rest)?;
    let causes = &rest[..q];
    let rest = rest[q + 1..].strip_prefix(b" detail=\"")?;
    let q = find(rest, b"\" hint=\"")?;
    let detail = &rest[..q];
    let rest = &rest[q + 8..];
    let q = memchr(b'"', rest)?;
    Some(ModuleLine {
        cause,
        status,
        attempts,
        peer: if peer == b"-" { &[] } else { peer },
        causes,
        detail,
        hint: &rest[..q],
    })
}

/// What the text of one line tells of an attempt: the observation the
/// module would have made, from the phase alone (a phase past connecting
/// means connected, reading the body means the header was received and
/// sent), and nothing the text does not say (whether the connection was
/// reused, the status).
pub fn observation(m: &Message) -> Observation {
    let phase = m.phase;
    let body = phase == Some(Phase::ReadBody);
    let client_closed = m.kind == MessageKind::ClientClosed;
    Observation {
        end: if client_closed { End::Finalized } else { End::Failed },
        connection: true,
        connected: matches!(phase, Some(Phase::SendRequest | Phase::ReadHeader | Phase::ReadBody)),
        request_sent: matches!(phase, Some(Phase::ReadHeader | Phase::ReadBody)),
        header_received: body,
        header_sent: body,
        client_error: client_closed,
        message: Some(*m),
        ..Observation::default()
    }
}

/// Whether a message is another module's, not nginx's own: Lua's
/// `[lua] main.lua:28: ...` (nginx's own messages never start with `[`),
/// and the `lua ...` texts of lua-nginx-module.
pub fn third_party(message: &[u8]) -> bool {
    message.starts_with(b"[") || message.starts_with(b"lua ")
}

/// An attempt's failure, from its line's text: its parsed message and its
/// cause. `None` for a line that is not an upstream failure (nginx's other
/// lines, its warnings while on an upstream, a client leaving while the
/// response is sent).
pub fn attempt(message: &[u8]) -> Option<(Message, Cause)> {
    if third_party(message) {
        return None;
    }
    let m = parse_message(message);
    if m.kind == MessageKind::Other {
        return None;
    }
    let upstream_phase = m.phase.is_some_and(|p| p != Phase::Other);
    if !upstream_phase && !matches!(m.kind, MessageKind::ResolveFailed | MessageKind::NoLiveUpstreams) {
        return None;
    }
    classify(&observation(&m)).map(|c| (m, c))
}

/// Stream: an attempt's failure from a line of nginx's stream proxy (one
/// whose suffix is stream's, [`Context::stream`]), from its text and its
/// byte counts, as the stream module classifies it. `None` for a line
/// that is not an upstream failure: the client's side, nginx's other
/// lines.
pub fn session_attempt(message: &[u8], c: &Context<'_>) -> Option<(Message, Cause)> {
    let m = parse_message(message);
    let connected = matches!(m.phase, Some(Phase::ProxyRead | Phase::ProxySend | Phase::Proxying));
    // proxy_timeout with no byte either way: nginx ends the session as a
    // success, at info (the client connection's timeout)
    let idle = !c.udp && m.phase == Some(Phase::Proxying) && message.starts_with(b"connection timed out");
    if m.kind == MessageKind::Other && !idle {
        return None;
    }
    let before_connect = matches!(m.phase, Some(Phase::Connect | Phase::TlsHandshake))
        || matches!(m.kind, MessageKind::ResolveFailed | MessageKind::NoLiveUpstreams);
    if !connected && !before_connect {
        return None;
    }
    let bytes = c.bytes.unwrap_or_default();
    let o = Observation {
        end: if idle { End::Finalized } else { End::Failed },
        connection: true,
        connected,
        message: Some(m),
        session: Some(bytes.session(c.udp)),
        ..Observation::default()
    };
    classify(&o).map(|c| (m, c))
}

/// Stream: what a line nginx's stream proxy writes without its suffix
/// tells of its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionLine<'a> {
    /// `[udp ]client 127.0.0.1:50000 connected to 0.0.0.0:6379` (info):
    /// the session starts.
    Client {
        client: &'a [u8],
        server: &'a [u8],
        udp: bool,
    },
    /// `[udp ]proxy 127.0.0.1:40000 connected to 127.0.0.1:6380` (info):
    /// an attempt's connect completed, to this peer.
    Proxy { peer: &'a [u8], udp: bool },
    /// The session ended (`upstream disconnected`, `client disconnected`,
    /// `udp done`, `udp timed out`, `disconnected on shutdown`, at info),
    /// with the cause its byte counts give: the upstream closed first
    /// without a byte after the client's (`upstream_closed_silent`).
    Ended { cause: Option<Cause> },
}

/// `A connected to B`, two addresses.
fn connected_to(m: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = find(m, b" connected to ")?;
    let (a, b) = (&m[..at], &m[at + 14..]);
    let one = |v: &[u8]| !v.is_empty() && memchr(b' ', v).is_none();
    (one(a) && one(b)).then_some((a, b))
}

/// The cheap test, on a whole line at `info`, of whether it may be one of
/// stream's session lines ([`SessionLine`], or the idle timeout's
/// `connection timed out ... while proxying connection`): what its message
/// starts with.
pub fn may_be_session_line(line: &[u8]) -> bool {
    // "YYYY/MM/DD HH:MM:SS [info] PID#TID: *N message": the message starts
    // after the first ": " past the level (plain loops: the lines are
    // short and many)
    let Some(rb) = line
        .get(21..line.len().min(29))
        .and_then(|l| l.iter().position(|&b| b == b']'))
    else {
        return false;
    };
    // "] PID#TID: "
    let ids = line.get(21 + rb + 2..).unwrap_or_default();
    let n = ids.iter().take_while(|b| b.is_ascii_digit() || **b == b'#').count();
    let Some(mut m) = ids[n..].strip_prefix(b": ") else {
        return false;
    };
    if m.first() == Some(&b'*') {
        let n = m[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        m = m.get(n + 2..).unwrap_or_default();
    }
    let m = m.strip_prefix(b"udp ").unwrap_or(m);
    match m.first() {
        Some(b'p') => m.starts_with(b"proxy "),
        Some(b'u') => m.starts_with(b"upstream disconnected"),
        Some(b'd') => m.starts_with(b"disconnected on shutdown") || m.starts_with(b"done, packets"),
        Some(b't') => m.starts_with(b"timed out, packets"),
        Some(b'c') => {
            m.starts_with(b"connection timed out")
                || m.starts_with(b"client disconnected")
                || m.strip_prefix(b"client ").is_some_and(|r| {
                    // `client ADDR connected to`
                    let addr = r.iter().position(|&b| b == b' ').unwrap_or(r.len());
                    r[addr..].starts_with(b" connected to ")
                })
        }
        _ => false,
    }
}

/// Reads one of stream's suffix-less lines ([`SessionLine`]).
pub fn session_line(message: &[u8]) -> Option<SessionLine<'_>> {
    let (udp, m) = match message.strip_prefix(b"udp ") {
        Some(m) => (true, m),
        None => (false, message),
    };
    if let Some((client, server)) = m.strip_prefix(b"client ").and_then(connected_to) {
        return Some(SessionLine::Client { client, server, udp });
    }
    if let Some((_, peer)) = m.strip_prefix(b"proxy ").and_then(connected_to) {
        return Some(SessionLine::Proxy { peer, udp });
    }
    if let Some(rest) = m.strip_prefix(b"upstream disconnected, ") {
        let bytes = parse_bytes(rest)?;
        let o = Observation {
            end: End::Finalized,
            connection: true,
            connected: true,
            read_eof: true,
            session: Some(bytes.session(udp)),
            ..Observation::default()
        };
        return Some(SessionLine::Ended { cause: classify(&o) });
    }
    let ended = m.starts_with(b"client disconnected, bytes from/to ")
        || (udp && (m.starts_with(b"done, packets from/to ") || m.starts_with(b"timed out, packets from/to ")))
        || m == b"disconnected on shutdown";
    ended.then_some(SessionLine::Ended { cause: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &[u8] = b"2026/11/25 10:00:07 [error] 123#123: *5 connect() failed (111: Connection refused) \
        while connecting to upstream, client: 127.0.0.1, server: api, request: \"GET /x, client: y HTTP/1.1\", \
        upstream: \"http://127.0.0.1:1/x\", host: \"a:8080\"";

    #[test]
    fn dates_round_trip_and_agree_with_known_ones() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(parse_time(b"2026/11/25 10:00:07"), Some(1_795_600_807));
        for d in [-800_000, -1, 0, 59, 60, 365, 11_016, 20_000, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(format_time(1_795_600_807), "2026/11/25 10:00:07");
        for bad in [
            &b"2026/13/25 10:00:07"[..],
            b"2026/11/25 24:00:00",
            b"2026-11-25 10:00:07",
            b"2026/11/2510:00:07",
            b"",
        ] {
            assert_eq!(parse_time(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_request_line_is_split_into_its_fields() {
        let l = parse_line(REFUSED).expect("parsed");
        assert_eq!((l.level, l.pid, l.conn), (Level::Error, 123, Some(5)));
        assert_eq!(
            l.message,
            b"connect() failed (111: Connection refused) while connecting to upstream"
        );
        assert_eq!(
            l.context(),
            Context {
                client: Some(b"127.0.0.1"),
                server: Some(b"api"),
                request: Some(b"GET /x, client: y HTTP/1.1"),
                subrequest: None,
                upstream: Some(b"http://127.0.0.1:1/x"),
                host: Some(b"a:8080"),
                ..Context::default()
            }
        );
        assert_eq!(format_time(l.time), "2026/11/25 10:00:07");
    }

    #[test]
    fn a_forged_suffix_in_the_request_does_not_move_the_fields() {
        let line = b"2026/11/25 10:00:07 [error] 1#1: *9 upstream timed out (110: Connection timed out) while reading \
            response header from upstream, client: ::1, server: , request: \"GET /\\\", upstream: \\\"x\", upstream: \"\" \
            HTTP/1.1\", upstream: \"http://[::1]:81/\", host: \"h\", referrer: \"r\"";
        let l = parse_line(line).unwrap();
        assert_eq!(l.context().client, Some(&b"::1"[..]));
        assert_eq!(l.context().server, Some(&b""[..]));
        assert_eq!(l.context().upstream, Some(&b"http://[::1]:81/"[..]));
        assert_eq!(l.context().host, Some(&b"h"[..]));
        // an upstream's bytes in the message cannot end it early
        let line = b"2026/11/25 10:00:07 [error] 1#1: *9 upstream sent invalid header: \"a, client: b while x\" while \
            reading response header from upstream, client: 10.0.0.1, server: s, request: \"GET / HTTP/1.1\"";
        let l = parse_line(line).unwrap();
        assert_eq!(
            l.message,
            &b"upstream sent invalid header: \"a, client: b while x\" while reading response header from upstream"[..]
        );
        assert_eq!(l.context().client, Some(&b"10.0.0.1"[..]));
        assert_eq!(l.context().request, Some(&b"GET / HTTP/1.1"[..]));
        assert_eq!(l.context().upstream, None);
    }

    #[test]
    fn a_subrequest_is_named() {
        let line = b"2026/11/25 10:00:07 [error] 1#1: *9 connect() failed (111: Connection refused) while connecting \
            to upstream, client: 127.0.0.1, server: , request: \"GET /page HTTP/1.1\", subrequest: \"/auth\", \
            upstream: \"http://127.0.0.1:1/auth\", host: \"h\"";
        let c = parse_line(line).unwrap().context();
        assert_eq!(c.request, Some(&b"GET /page HTTP/1.1"[..]));
        assert_eq!(c.subrequest, Some(&b"/auth"[..]));
        assert_eq!(c.upstream, Some(&b"http://127.0.0.1:1/auth"[..]));
    }

    #[test]
    fn lines_without_a_connection_or_a_suffix() {
        let l = parse_line(b"2026/11/25 10:00:07 [notice] 1#1: signal process started").unwrap();
        assert_eq!(
            (l.level, l.conn, l.message),
            (Level::Notice, None, &b"signal process started"[..])
        );
        assert_eq!(l.context(), Context::default());
        for bad in [
            &b"2026/11/25 10:00:07 [nonsense] 1#1: x"[..],
            b"2026/11/25 10:00:07 [error] x#1: y",
            b"2026/11/25 10:00:07 [error] 1#1 y",
            b"2026/11/25 10:00:07",
            b"GET / HTTP/1.1 200",
        ] {
            assert_eq!(parse_line(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_module_line_is_read_as_written() {
        let line = b"2026/11/25 10:21:51 [error] 381#381: *1 upstream_cause=connect_refused status=502 attempts=2 \
            peer=127.0.0.1:9 causes=\"connect_refused, connect_refused\" detail=\"connect() failed (111: Connection \
            refused) while connecting to upstream, client: \\\"x\\\"\" hint=\"nothing listens on the upstream port: the \
            backend process is down or restarting\", client: 127.0.0.1, server: , request: \"GET /checkout HTTP/1.1\", \
            upstream: \"http://127.0.0.1:9/checkout\", host: \"localhost\"";
        let l = parse_line(line).unwrap();
        assert_eq!(l.context().client, Some(&b"127.0.0.1"[..]));
        assert_eq!(l.context().upstream, Some(&b"http://127.0.0.1:9/checkout"[..]));
        let m = parse_module_line(l.message).unwrap();
        assert_eq!((m.cause, m.status, m.attempts), (Cause::ConnectRefused, 502, 2));
        assert_eq!(m.peer, b"127.0.0.1:9");
        assert_eq!(m.causes, b"connect_refused, connect_refused");
        assert!(m.detail.ends_with(b"client: \\\"x\\\""));
        assert!(m.hint.starts_with(b"nothing listens"));
        assert_eq!(parse_module_line(b"upstream_cause=nonsense status=502"), None);
        assert_eq!(
            parse_module_line(b"upstream_cause=read_timeout status=504 attempts=1"),
            None
        );
    }

    #[test]
    fn peers_are_cut_from_the_upstream_url() {
        assert_eq!(
            peer_of(b"http://127.0.0.1:8081/ping"),
            (&b"127.0.0.1:8081"[..], &b"http://127.0.0.1:8081"[..])
        );
        assert_eq!(peer_of(b"http://[::1]:81"), (&b"[::1]:81"[..], &b"http://[::1]:81"[..]));
        assert_eq!(
            peer_of(b"fastcgi://unix:/run/php/php-fpm.sock:"),
            (
                &b"unix:/run/php/php-fpm.sock"[..],
                &b"fastcgi://unix:/run/php/php-fpm.sock"[..]
            )
        );
        assert_eq!(
            peer_of(b"http://unix:/tmp/a.sock:/x"),
            (&b"unix:/tmp/a.sock"[..], &b"http://unix:/tmp/a.sock"[..])
        );
        assert_eq!(peer_of(b"backend"), (&b"backend"[..], &b"backend"[..]));
        assert_eq!(
            peer_of(b"http://127.0.0.1:5001version"),
            (&b"127.0.0.1:5001"[..], &b"http://127.0.0.1:5001"[..])
        );
        assert_eq!(peer_of(b"http://[::1]:81?x=1").0, b"[::1]:81");
        assert_eq!(peer_of(b"http://backend?x").0, b"backend?x");
        assert_eq!(peer_of(b"http://backend:/x").0, b"backend:");
        assert_eq!(
            peer_in_text(b"connect() to [240e::1]:443 failed (101: Network is unreachable)"),
            Some(&b"[240e::1]:443"[..])
        );
        assert_eq!(
            peer_in_text(b"connect() to unix:/run/php/php-fpm.sock failed (11: Resource temporarily unavailable)"),
            Some(&b"unix:/run/php/php-fpm.sock"[..])
        );
        assert_eq!(peer_in_text(b"connect() failed (111: Connection refused)"), None);
        let sock = b"http://unix:/tmp/gunicorn.sock/invocations";
        assert_eq!(
            peer_of_request(sock, Some(b"POST /invocations?x=1 HTTP/1.1")),
            (&b"unix:/tmp/gunicorn.sock"[..], &b"http://unix:/tmp/gunicorn.sock"[..])
        );
        assert_eq!(peer_of_request(sock, None).0, b"unix:/tmp/gunicorn.sock/invocations");
        assert_eq!(
            peer_of_request(sock, Some(b"GET / HTTP/1.1")).0,
            b"unix:/tmp/gunicorn.sock/invocations"
        );
        assert_eq!(
            peer_of_request(b"http://unix:/a.sock:/x", Some(b"GET /x HTTP/1.1")).0,
            b"unix:/a.sock"
        );
    }

    /// A stream line, as nginx 1.28's stream proxy writes it.
    fn stream(level: &str, msg: &str, suffix: &str) -> String {
        format!("2026/11/25 10:00:07 [{level}] 51#51: *3 {msg}{suffix}")
    }

    const TCP: &str = ", client: 127.0.0.1, server: 127.0.0.1:9000, upstream: \"127.0.0.1:9001\", \
        bytes from/to client:5/0, bytes from/to upstream:0/5";
    const UDP: &str = ", udp client: 127.0.0.1, server: 127.0.0.1:9053, upstream: \"127.0.0.1:9054\", \
        bytes from/to client:29/0, bytes from/to upstream:0/29";

    #[test]
    fn stream_s_suffix_is_read_with_its_byte_counts() {
        let line = stream(
            "error",
            "recv() failed (104: Connection reset by peer) while proxying and reading from upstream",
            TCP,
        );
        let l = parse_line(line.as_bytes()).unwrap();
        assert_eq!(
            l.message,
            b"recv() failed (104: Connection reset by peer) while proxying and reading from upstream"
        );
        let c = l.context();
        assert_eq!(c.client, Some(&b"127.0.0.1"[..]));
        assert_eq!(c.server, Some(&b"127.0.0.1:9000"[..]));
        assert_eq!(c.upstream, Some(&b"127.0.0.1:9001"[..]));
        assert_eq!(peer_of(c.upstream.unwrap()).0, b"127.0.0.1:9001");
        let b = Bytes {
            from_client: 5,
            to_client: 0,
            from_upstream: 0,
            to_upstream: 5,
        };
        assert_eq!((c.udp, c.bytes, c.stream()), (false, Some(b), true));
        let line = stream(
            "error",
            "upstream timed out (110: Connection timed out) while proxying connection",
            UDP,
        );
        let c = parse_line(line.as_bytes()).unwrap().context();
        assert_eq!(
            (c.udp, c.client, c.upstream),
            (true, Some(&b"127.0.0.1"[..]), Some(&b"127.0.0.1:9054"[..]))
        );
        assert_eq!(c.bytes.map(|b| b.from_client), Some(29));
        // without a peer (a resolver failure): the counts follow the server
        let line = stream(
            "error",
            "nosuch.test could not be resolved (3: Host not found)",
            ", client: 127.0.0.1, server: 0.0.0.0:9000, bytes from/to client:0/0, bytes from/to upstream:0/0",
        );
        let c = parse_line(line.as_bytes()).unwrap().context();
        assert_eq!((c.upstream, c.bytes), (None, Some(Bytes::default())));
        // HTTP's suffix is not stream's
        assert!(!parse_line(REFUSED).unwrap().context().stream());
        for bad in [
            "bytes from/to client:",
            "bytes from/to client:1/",
            "bytes from/to client:1/2, bytes from/to upstream:x/1",
            "bytes from/to client:99999999999999999999/1, bytes from/to upstream:1/1",
        ] {
            assert_eq!(parse_bytes(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn stream_s_lines_give_the_stream_module_s_causes() {
        let cases: &[(&str, &str, Option<Cause>)] = &[
            ("connect() failed (111: Connection refused) while connecting to upstream", TCP, Some(Cause::ConnectRefused)),
            ("upstream timed out (110: Connection timed out) while connecting to upstream", TCP, Some(Cause::ConnectTimeout)),
            ("no live upstreams while connecting to upstream", TCP, Some(Cause::NoLiveUpstreams)),
            ("SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number) while SSL handshaking to upstream", TCP, Some(Cause::TlsHandshakeFailed)),
            ("upstream SSL certificate verify error: (18:self-signed certificate) while SSL handshaking to upstream", TCP, Some(Cause::TlsVerifyFailed)),
            ("recv() failed (104: Connection reset by peer) while proxying and reading from upstream", TCP, Some(Cause::UpstreamReset)),
            ("send() failed (32: Broken pipe) while proxying and sending to upstream", TCP, Some(Cause::SendFailed)),
            ("connection timed out (110: Connection timed out) while proxying connection", TCP, Some(Cause::IdleTimeout)),
            ("recv() failed (111: Connection refused) while proxying and reading from upstream", UDP, Some(Cause::ConnectRefused)),
            ("upstream timed out (110: Connection timed out) while proxying connection", UDP, Some(Cause::UdpNoResponse)),
            // the client's side and nginx's other lines
            ("recv() failed (104: Connection reset by peer) while proxying and reading from client", TCP, None),
            ("send() failed (32: Broken pipe) while proxying and sending to client", TCP, None),
            ("upstream server temporarily disabled while connecting to upstream", TCP, None),
            ("client timed out (110: Connection timed out) while proxying connection", TCP, None),
            ("buffered data on next upstream while connecting to upstream", TCP, None),
        ];
        for (msg, suffix, want) in cases {
            let line = stream("error", msg, suffix);
            let l = parse_line(line.as_bytes()).unwrap();
            let c = l.context();
            assert!(c.stream(), "{line}");
            assert_eq!(l.message, msg.as_bytes());
            assert_eq!(session_attempt(l.message, &c).map(|(_, c)| c), *want, "{msg}");
        }
        let l = parse_line(
            b"2026/11/25 10:00:07 [error] 51#51: *3 nosuch.test could not be resolved (3: Host not found), \
            client: 127.0.0.1, server: 0.0.0.0:9000, bytes from/to client:0/0, bytes from/to upstream:0/0",
        )
        .unwrap();
        assert_eq!(
            session_attempt(l.message, &l.context()).map(|(_, c)| c),
            Some(Cause::ResolveFailed)
        );
    }

    #[test]
    fn stream_s_lines_without_a_suffix_tell_how_the_session_went() {
        fn read(m: &str) -> Option<SessionLine<'_>> {
            session_line(m.as_bytes())
        }
        assert_eq!(
            read("client 127.0.0.1:50000 connected to 127.0.0.1:9000"),
            Some(SessionLine::Client {
                client: b"127.0.0.1:50000",
                server: b"127.0.0.1:9000",
                udp: false
            })
        );
        assert_eq!(
            read("udp proxy 127.0.0.1:40000 connected to 127.0.0.1:9054"),
            Some(SessionLine::Proxy {
                peer: b"127.0.0.1:9054",
                udp: true
            })
        );
        // the backend read the client's bytes and closed without a byte
        assert_eq!(
            read("upstream disconnected, bytes from/to client:5/0, bytes from/to upstream:0/5"),
            Some(SessionLine::Ended {
                cause: Some(Cause::UpstreamClosedSilent)
            })
        );
        for ended in [
            "upstream disconnected, bytes from/to client:5/7, bytes from/to upstream:7/5",
            "upstream disconnected, bytes from/to client:0/0, bytes from/to upstream:0/0",
            "client disconnected, bytes from/to client:5/0, bytes from/to upstream:0/5",
            "udp done, packets from/to client:1/0, bytes from/to client:29/0, bytes from/to upstream:0/29",
            "udp timed out, packets from/to client:1/1, bytes from/to client:29/60, bytes from/to upstream:60/29",
            "disconnected on shutdown",
        ] {
            assert_eq!(read(ended), Some(SessionLine::Ended { cause: None }), "{ended}");
        }
        let info = |m: &str| may_be_session_line(format!("2026/11/25 10:00:07 [info] 51#51: *3 {m}").as_bytes());
        assert!(info(
            "upstream disconnected, bytes from/to client:5/0, bytes from/to upstream:0/5"
        ));
        assert!(info("udp client 127.0.0.1:5000 connected to 127.0.0.1:53"));
        assert!(info(
            "connection timed out (110: Connection timed out) while proxying connection, client: x"
        ));
        assert!(!info("client 10.0.0.1 closed keepalive connection"));
        assert!(!info(
            "client closed connection while waiting for request, client: 10.0.0.1, server: 0.0.0.0:80"
        ));
        assert!(!may_be_session_line(b"2026/11/25 10:00:07 [info]"));
        for other in [
            "upstream disconnected, bytes from/to client:5",
            "client 127.0.0.1 connected",
            "proxy  connected to ",
            "done, packets from/to client:1/0",
            "signal process started",
        ] {
            assert_eq!(read(other), None, "{other}");
        }
    }

    #[test]
    fn the_text_alone_gives_the_module_s_cause() {
        let cases: &[(&str, Option<Cause>)] = &[
            ("connect() failed (111: Connection refused) while connecting to upstream", Some(Cause::ConnectRefused)),
            ("connect() failed (113: No route to host) while connecting to upstream", Some(Cause::ConnectUnreachable)),
            (
                "connect() to unix:/run/php.sock failed (11: Resource temporarily unavailable) while connecting to upstream",
                Some(Cause::AcceptQueueFull),
            ),
            ("upstream timed out (110: Connection timed out) while connecting to upstream", Some(Cause::ConnectTimeout)),
            ("upstream timed out (110: Connection timed out) while SSL handshaking to upstream", Some(Cause::ConnectTimeout)),
            ("upstream timed out (110: Connection timed out) while sending request to upstream", Some(Cause::SendTimeout)),
            (
                "upstream timed out (110: Connection timed out) while reading response header from upstream",
                Some(Cause::ReadTimeout),
            ),
            (
                "upstream timed out (110: Connection timed out) while reading upstream",
                Some(Cause::ResponseTruncated),
            ),
            (
                "upstream prematurely closed connection while reading response header from upstream",
                Some(Cause::UpstreamPrematurelyClosed),
            ),
            ("upstream prematurely closed connection while reading upstream", Some(Cause::ResponseTruncated)),
            (
                "recv() failed (104: Connection reset by peer) while reading response header from upstream",
                Some(Cause::UpstreamReset),
            ),
            ("recv() failed (104: Connection reset by peer) while sending request to upstream", Some(Cause::SendFailed)),
            ("writev() failed (32: Broken pipe) while sending request to upstream", Some(Cause::SendFailed)),
            ("upstream sent too big header while reading response header from upstream", Some(Cause::HeaderTooBig)),
            ("upstream sent invalid header: \"x\" while reading response header from upstream", Some(Cause::InvalidHeader)),
            ("no live upstreams while connecting to upstream", Some(Cause::NoLiveUpstreams)),
            ("nosuch.test could not be resolved (3: Host not found)", Some(Cause::ResolveFailed)),
            ("no resolver defined to resolve backend.example", Some(Cause::ResolveFailed)),
            (
                "SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number) while SSL handshaking to upstream",
                Some(Cause::TlsHandshakeFailed),
            ),
            (
                "upstream SSL certificate verify error: (18:self-signed certificate) while SSL handshaking to upstream",
                Some(Cause::TlsVerifyFailed),
            ),
            ("upstream rejected request with error 7 while reading response header from upstream", Some(Cause::StreamRefused)),
            ("upstream sent goaway with error 0 while reading response header from upstream", Some(Cause::StreamRefused)),
            ("upstream rejected request with error 2 while reading response header from upstream", Some(Cause::UpstreamReset)),
            ("client prematurely closed connection while reading response header from upstream", Some(Cause::ClientClosed)),
            ("client prematurely closed connection while sending to client", None),
            ("upstream server temporarily disabled while connecting to upstream", None),
            ("an upstream response is buffered to a temporary file /x while reading upstream", None),
            ("open() \"/x\" failed (2: No such file or directory)", None),
            // other modules' lines
            ("[lua] main.lua:28: handler(): failed to connect: api.internal could not be resolved (110: Operation timed out)", None),
            ("[lua] balancer.lua:12: upstream timed out (110: Connection timed out) while connecting to upstream", None),
            ("lua tcp socket connect timed out, when connecting to 10.0.0.1:6379", None),
            // other platforms' errnos
            ("kevent() reported that connect() failed (61: Connection refused) while connecting to upstream", Some(Cause::ConnectRefused)),
            (
                "connect() failed (10061: No connection could be made because the target machine actively refused it) while connecting to upstream",
                Some(Cause::ConnectRefused),
            ),
            (
                "WSARecv() failed (10054: An existing connection was forcibly closed by the remote host) while reading response header from upstream",
                Some(Cause::UpstreamReset),
            ),
            ("connect() to 10.0.0.1:80 failed (65: No route to host) while connecting to upstream", Some(Cause::ConnectUnreachable)),
            ("connect() failed (113: Host is unreachable) while connecting to upstream", Some(Cause::ConnectUnreachable)),
        ];
        for (text, want) in cases {
            assert_eq!(attempt(text.as_bytes()).map(|(_, c)| c), *want, "{text}");
        }
    }
}
