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
//! Every function takes arbitrary bytes and never panics.

use crate::cause::Cause;
use crate::classify::{classify, End, Observation};
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

/// What nginx's HTTP log handler appends to a request's line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context<'a> {
    pub client: Option<&'a [u8]>,
    pub server: Option<&'a [u8]>,
    pub request: Option<&'a [u8]>,
    /// The URI of the subrequest (SSI, auth_request) the line is about.
    pub subrequest: Option<&'a [u8]>,
    pub upstream: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
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
}

impl<'a> ErrorLine<'a> {
    /// The suffix's fields, parsed (only for the lines that need them).
    pub fn context(&self) -> Context<'a> {
        parse_context(self.suffix)
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
const ACTIONS: [&[u8]; 5] = [
    b"connecting to upstream",
    b"SSL handshaking to upstream",
    b"sending request to upstream",
    b"reading response header from upstream",
    b"reading upstream",
];

const CLIENT: &[u8] = b", client: ";

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
            if let Some(act) = ACTIONS
                .iter()
                .find(|act| rest[a..].starts_with(act) && rest[a + act.len()..].starts_with(CLIENT))
            {
                end = Some(a + act.len());
                break;
            }
            from = a;
        }
    }
    let end = match end {
        Some(e) => e,
        None => match find(rest, CLIENT) {
            Some(at) => at,
            None => return (rest, None),
        },
    };
    // the module's line may carry " while ACTION" too
    let tail = &rest[end..];
    match find(tail, CLIENT) {
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

/// The keys that may follow a quoted value.
const AFTER_QUOTED: [&[u8]; 4] = [b", subrequest: \"", b", upstream: \"", b", host: \"", b", referrer: \""];

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

/// Parses the suffix `client: A, server: B, request: "R", upstream: "U", host: "H"`.
pub fn parse_context(s: &[u8]) -> Context<'_> {
    let mut c = Context::default();
    let Some((client, rest)) = plain_field(s, b"client: ") else {
        return c;
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
        None => memchr(b'/', auth).unwrap_or(auth.len()),
    };
    (&auth[..len], &upstream[..start + len])
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

/// An attempt's failure, from its line's text: its parsed message and its
/// cause. `None` for a line that is not an upstream failure (nginx's other
/// lines, its warnings while on an upstream, a client leaving while the
/// response is sent).
pub fn attempt(message: &[u8]) -> Option<(Message, Cause)> {
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
        ];
        for (text, want) in cases {
            assert_eq!(attempt(text.as_bytes()).map(|(_, c)| c), *want, "{text}");
        }
    }
}
