//! Parsing nginx's error-log text: the message of a line, its errno and its
//! phase ("while connecting to upstream").
//!
//! Every function takes arbitrary bytes and never panics: the text may carry
//! bytes the upstream sent (e.g. "upstream sent invalid header: ...").

use crate::scan::{memchr, memrchr};

/// What nginx was doing when the line was logged: the `log->action` text
/// that follows " while ".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// "connecting to upstream"
    Connect,
    /// "SSL handshaking to upstream"
    TlsHandshake,
    /// "sending request to upstream"
    SendRequest,
    /// "reading response header from upstream"
    ReadHeader,
    /// "reading upstream": the header was already sent to the client
    ReadBody,
    /// Stream: "proxying and reading from upstream"
    ProxyRead,
    /// Stream: "proxying and sending to upstream"
    ProxySend,
    /// Stream: "proxying connection", between reads and writes (where a
    /// session's timeouts fire)
    Proxying,
    /// "sending to client" and anything else (stream's "proxying and
    /// reading from client", "proxying and sending to client")
    Other,
}

impl Phase {
    /// Maps nginx's action text to a phase.
    pub fn from_action(action: &[u8]) -> Phase {
        match action {
            b"connecting to upstream" => Phase::Connect,
            b"SSL handshaking to upstream" => Phase::TlsHandshake,
            b"sending request to upstream" => Phase::SendRequest,
            b"reading response header from upstream" => Phase::ReadHeader,
            b"reading upstream" => Phase::ReadBody,
            b"proxying and reading from upstream" => Phase::ProxyRead,
            b"proxying and sending to upstream" => Phase::ProxySend,
            b"proxying connection" => Phase::Proxying,
            _ => Phase::Other,
        }
    }
}

/// Which of nginx's upstream error messages a line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// `connect() failed (111: ...)`, `connect() to 1.2.3.4:80 failed (99: ...)`
    ConnectFailed,
    /// `512 worker_connections are not enough`: the worker had no free
    /// connection for the upstream's (nginx answers 500)
    NoConnections,
    /// `upstream timed out (110: ...)`
    TimedOut,
    /// `upstream prematurely closed connection`
    PrematurelyClosed,
    /// `recv() failed (104: ...)`, `readv() failed`, `SSL_read() failed`
    RecvFailed,
    /// `writev() failed (32: ...)`, `send() failed`, `sendfile() failed`, `SSL_write() failed`
    SendFailed,
    /// `upstream sent too big header`
    TooBigHeader,
    /// `upstream sent invalid header`, `upstream sent no valid HTTP/1.0 header`, ...
    InvalidHeader,
    /// `no live upstreams`
    NoLiveUpstreams,
    /// `... could not be resolved (3: Host not found)`, `no resolver defined to resolve ...`
    ResolveFailed,
    /// `SSL_do_handshake() failed`, `peer closed connection in SSL handshake`
    TlsHandshake,
    /// `upstream SSL certificate verify error`, `upstream SSL certificate does not match`
    TlsVerify,
    /// `client prematurely closed connection`
    ClientClosed,
    /// HTTP/2 and gRPC: `upstream rejected request with error 7`, an
    /// RST_STREAM with REFUSED_STREAM: the upstream did not process it
    StreamRefused,
    /// HTTP/2 and gRPC: `upstream sent goaway with error N`, logged only
    /// when the GOAWAY's last stream id is below ours: not processed either
    GoAway,
    /// HTTP/2 and gRPC: `upstream rejected request with error N`, any error
    /// other than REFUSED_STREAM, or one too large to be a valid code
    StreamReset,
    /// anything else
    Other,
}

/// What one error-log message says, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    /// The errno in "(111: Connection refused)", if any.
    pub errno: Option<u16>,
    /// The phase after " while ", if any.
    pub phase: Option<Phase>,
    /// The line names a unix-domain peer (`connect() to unix:/path failed`):
    /// its errnos mean other things than a TCP connect's.
    pub unix: bool,
}

/// The byte of `needle` to scan for: its first that is not a space (spaces
/// are everywhere in log text).
fn anchor(needle: &[u8]) -> usize {
    needle.iter().position(|&b| b != b' ').unwrap_or(0)
}

/// The first occurrence of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let n = needle.len();
    let last = hay.len().checked_sub(n)?;
    if n == 0 {
        return None;
    }
    let k = anchor(needle);
    let mut i = k;
    while i <= last + k {
        let at = i + memchr(needle[k], &hay[i..=last + k])?;
        if hay[at - k..at - k + n] == *needle {
            return Some(at - k);
        }
        i = at + 1;
    }
    None
}

/// The last occurrence of `needle` in `hay`.
fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let n = needle.len();
    let last = hay.len().checked_sub(n)?;
    if n == 0 {
        return None;
    }
    let k = anchor(needle);
    let mut end = last + k + 1;
    while end > k {
        let at = k + memrchr(needle[k], &hay[k..end])?;
        if hay[at - k..at - k + n] == *needle {
            return Some(at - k);
        }
        end = at;
    }
    None
}

/// The first "(NNN: " in the text: nginx's rendering of an errno, as its
/// platform numbers it, with its text (up to the ")").
pub fn parse_errno_text(text: &[u8]) -> Option<(u16, &[u8])> {
    let mut i = 0;
    while let Some(off) = text.get(i..).and_then(|t| memchr(b'(', t)) {
        let start = i + off + 1;
        let digits = text[start..].iter().take_while(|b| b.is_ascii_digit()).count();
        if (1..=5).contains(&digits) && text[start + digits..].starts_with(b": ") {
            let mut n: u32 = 0;
            for &b in &text[start..start + digits] {
                n = n * 10 + u32::from(b - b'0');
            }
            if let Ok(n) = u16::try_from(n) {
                let from = start + digits + 2;
                let end = memchr(b')', &text[from..]).map_or(text.len(), |e| from + e);
                return Some((n, &text[from..end]));
            }
        }
        i = start;
    }
    None
}

/// The errno of the text, in Linux's numbers ([`crate::errno::canonical`]).
pub fn parse_errno(text: &[u8]) -> Option<u16> {
    parse_errno_text(text).map(|(n, t)| crate::errno::canonical(n, t))
}

/// Splits "message while action" into the message and the phase.
pub fn split_phase(text: &[u8]) -> (&[u8], Option<Phase>) {
    match rfind(text, b" while ") {
        Some(at) => (&text[..at], Some(Phase::from_action(&text[at + 7..]))),
        None => (text, None),
    }
}

/// Recognises which nginx message the text is.
pub fn message_kind(msg: &[u8]) -> MessageKind {
    let starts = |p: &[u8]| msg.starts_with(p);
    let has = |p: &[u8]| find(msg, p).is_some();
    if starts(b"connect() failed")
        || (starts(b"connect() to ") && has(b" failed"))
        || starts(b"kevent() reported that connect() failed")
        || starts(b"bind(")
        || starts(b"socket() failed")
    {
        MessageKind::ConnectFailed
    } else if has(b" worker_connections are not enough") {
        MessageKind::NoConnections
    } else if starts(b"upstream timed out") {
        MessageKind::TimedOut
    } else if starts(b"upstream prematurely closed") {
        MessageKind::PrematurelyClosed
    } else if starts(b"recv() failed")
        || starts(b"readv() failed")
        || starts(b"SSL_read() failed")
        || starts(b"WSARecv() failed")
        || starts(b"kevent() reported about an closed connection")
    {
        MessageKind::RecvFailed
    } else if starts(b"writev() failed")
        || starts(b"send() failed")
        || starts(b"sendfile() failed")
        || starts(b"SSL_write() failed")
        || starts(b"WSASend() failed")
        || starts(b"sendmsg() failed")
    {
        MessageKind::SendFailed
    } else if starts(b"upstream sent too big header") {
        MessageKind::TooBigHeader
    } else if let Some(code) = msg.strip_prefix(b"upstream rejected request with error ") {
        // REFUSED_STREAM (7) is the one code that says "not processed";
        // any other, or digits that are no code at all, is a reset.
        if parse_decimal(code) == Some(REFUSED_STREAM) {
            MessageKind::StreamRefused
        } else {
            MessageKind::StreamReset
        }
    } else if starts(b"upstream sent goaway with error ") {
        MessageKind::GoAway
    } else if starts(b"upstream sent ") || starts(b"upstream returned ") || starts(b"upstream violated ") {
        MessageKind::InvalidHeader
    } else if starts(b"no live upstreams") {
        MessageKind::NoLiveUpstreams
    } else if starts(b"no resolver defined to resolve ") || resolver_failed(msg) {
        MessageKind::ResolveFailed
    } else if starts(b"upstream SSL certificate") {
        MessageKind::TlsVerify
    } else if starts(b"SSL_do_handshake() failed") || starts(b"peer closed connection in SSL handshake") {
        MessageKind::TlsHandshake
    } else if starts(b"client prematurely closed connection") || has(b"reported that client prematurely closed") {
        MessageKind::ClientClosed
    } else {
        MessageKind::Other
    }
}

/// nginx's resolver: `NAME could not be resolved (3: Host not found)`, the
/// name first (a Lua cosocket's own failure says more before it).
fn resolver_failed(msg: &[u8]) -> bool {
    find(msg, b" could not be resolved").is_some_and(|at| at > 0 && memchr(b' ', &msg[..at]).is_none())
}

/// HTTP/2's REFUSED_STREAM error code (RFC 9113, section 7).
const REFUSED_STREAM: u32 = 7;

/// All of `digits` as a decimal number, if it is one that fits a u32 (an
/// HTTP/2 error code is 32 bits).
fn parse_decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).ok()
}

/// Parses one message (the text nginx formatted, without the timestamp
/// prefix and the ", client: ..." suffix).
pub fn parse_message(text: &[u8]) -> Message {
    let (msg, phase) = split_phase(text);
    parse_split(msg, phase)
}

/// [`parse_message`] of a text already split into the message and the
/// phase its " while ACTION" names.
pub fn parse_split(msg: &[u8], phase: Option<Phase>) -> Message {
    let kind = message_kind(msg);
    Message {
        kind,
        errno: parse_errno(msg),
        phase,
        unix: kind == MessageKind::ConnectFailed && msg.starts_with(b"connect() to unix:"),
    }
}

/// Extracts the message from a whole error-log line as nginx's
/// `ngx_log_error_core` formats it:
/// `2026/11/25 10:00:00 [error] 123#0: *5 MESSAGE while ACTION, client: ...`.
///
/// `action` is the `log->action` in force when the line was written; when
/// given, the message ends right after " while ACTION" (the client-controlled
/// request line that follows can never shift it). Without it, the message
/// ends at the first ", client: ".
pub fn extract_message<'a>(line: &'a [u8], action: Option<&[u8]>) -> &'a [u8] {
    // Skip "YYYY/MM/DD HH:MM:SS [level] PID#TID: " and the optional "*CONN ".
    let mut start = 0;
    if let Some(lb) = find(line, b" [") {
        if let Some(rb) = line[lb..].iter().position(|&b| b == b']') {
            let after = lb + rb + 1;
            if let Some(colon) = find(&line[after..], b": ") {
                start = after + colon + 2;
            }
        }
    }
    let mut rest = &line[start..];
    if rest.first() == Some(&b'*') {
        let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && rest.get(1 + digits) == Some(&b' ') {
            rest = &rest[2 + digits..];
        }
    }
    // Trim the trailing linefeed.
    while let Some((&last, head)) = rest.split_last() {
        if last == b'\n' || last == b'\r' {
            rest = head;
        } else {
            break;
        }
    }
    if let Some(action) = action.filter(|a| !a.is_empty()) {
        // the first " while ACTION" (no allocation: this runs per line)
        const WHILE: &[u8] = b" while ";
        let mut from = 0;
        while let Some(at) = find(&rest[from..], WHILE) {
            let end = from + at + WHILE.len();
            if rest[end..].starts_with(action) {
                return &rest[..end + action.len()];
            }
            from = end;
        }
    }
    match find(rest, b", client: ") {
        Some(at) => &rest[..at],
        None => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_and_rfind_agree_with_a_naive_search() {
        let naive = |h: &[u8], n: &[u8]| -> Vec<usize> {
            if n.is_empty() || n.len() > h.len() {
                return vec![];
            }
            (0..=h.len() - n.len()).filter(|&i| &h[i..i + n.len()] == n).collect()
        };
        let needles: [&[u8]; 9] = [b"", b"a", b"ab", b"aa", b" w", b" while ", b"while", b" ", b"  "];
        // Every string of up to 40 bytes a small generator makes over an
        // alphabet that forms the needles, and some fixed ones.
        let mut hays: Vec<Vec<u8>> = [&b"x while a while b"[..], b"aaaaaaaaaaaaaaaaab", b"   while    "]
            .iter()
            .map(|h| h.to_vec())
            .collect();
        let mut seed: u32 = 1;
        for len in 0..40 {
            for _ in 0..25 {
                let h = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        b"ab whiel"[(seed >> 16) as usize % 8]
                    })
                    .collect();
                hays.push(h);
            }
        }
        for h in &hays {
            for n in needles {
                let all = naive(h, n);
                assert_eq!(find(h, n), all.first().copied(), "find {h:?} {n:?}");
                assert_eq!(rfind(h, n), all.last().copied(), "rfind {h:?} {n:?}");
            }
            for b in [b'a', b' ', b'w', b'z'] {
                assert_eq!(memchr(b, h), h.iter().position(|&x| x == b));
                assert_eq!(memrchr(b, h), h.iter().rposition(|&x| x == b));
            }
        }
    }

    #[test]
    fn errno_is_found_after_function_parentheses() {
        assert_eq!(parse_errno(b"connect() failed (111: Connection refused)"), Some(111));
        assert_eq!(
            parse_errno(b"connect() to 10.0.0.1:80 failed (113: No route to host)"),
            Some(113)
        );
        assert_eq!(
            parse_errno(b"upstream timed out (110: Connection timed out)"),
            Some(110)
        );
        assert_eq!(parse_errno(b"upstream prematurely closed connection"), None);
        assert_eq!(parse_errno(b"(: x) (1234567: y)"), None);
        assert_eq!(parse_errno(b"x (99999: y)"), None);
        assert_eq!(parse_errno(b"SSL_do_handshake() failed (SSL: error:0A00010B)"), None);
        assert_eq!(parse_errno(b"("), None);
        assert_eq!(parse_errno(b""), None);
    }

    #[test]
    fn phase_is_the_last_while() {
        let (m, p) =
            split_phase(b"upstream sent invalid header: \"a while b\" while reading response header from upstream");
        assert_eq!(m, b"upstream sent invalid header: \"a while b\"");
        assert_eq!(p, Some(Phase::ReadHeader));
        assert_eq!(split_phase(b"no live upstreams"), (&b"no live upstreams"[..], None));
        for (a, p) in [
            (&b"connecting to upstream"[..], Phase::Connect),
            (b"SSL handshaking to upstream", Phase::TlsHandshake),
            (b"sending request to upstream", Phase::SendRequest),
            (b"reading response header from upstream", Phase::ReadHeader),
            (b"reading upstream", Phase::ReadBody),
            (b"sending to client", Phase::Other),
        ] {
            assert_eq!(Phase::from_action(a), p);
        }
    }

    #[test]
    fn every_nginx_message_is_recognised() {
        use MessageKind::*;
        let cases: &[(&[u8], MessageKind)] = &[
            (b"connect() failed (111: Connection refused)", ConnectFailed),
            (
                b"connect() to 127.0.0.1:1 failed (99: Cannot assign requested address)",
                ConnectFailed,
            ),
            (
                b"kevent() reported that connect() failed (61: Connection refused)",
                ConnectFailed,
            ),
            (
                b"bind(127.0.0.1:8080) failed (98: Address already in use)",
                ConnectFailed,
            ),
            (b"socket() failed (24: Too many open files)", ConnectFailed),
            (b"512 worker_connections are not enough", NoConnections),
            (b"upstream timed out (110: Connection timed out)", TimedOut),
            (b"upstream prematurely closed connection", PrematurelyClosed),
            (b"upstream prematurely closed FastCGI stdout", PrematurelyClosed),
            (b"recv() failed (104: Connection reset by peer)", RecvFailed),
            (b"readv() failed (104: Connection reset by peer)", RecvFailed),
            (b"writev() failed (32: Broken pipe)", SendFailed),
            (b"send() failed (104: Connection reset by peer)", SendFailed),
            (b"upstream sent too big header", TooBigHeader),
            (b"upstream sent invalid header: \"X\\x0D...\"", InvalidHeader),
            (b"upstream sent no valid HTTP/1.0 header", InvalidHeader),
            (
                b"upstream sent duplicate header line: \"Content-Length: 1\"",
                InvalidHeader,
            ),
            (b"no live upstreams", NoLiveUpstreams),
            (
                b"backend.invalid could not be resolved (3: Host not found)",
                ResolveFailed,
            ),
            (b"no resolver defined to resolve backend.example", ResolveFailed),
            (
                b"upstream SSL certificate verify error: (18:self-signed certificate)",
                TlsVerify,
            ),
            (b"upstream SSL certificate does not match \"x\"", TlsVerify),
            (
                b"SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number)",
                TlsHandshake,
            ),
            (
                b"peer closed connection in SSL handshake (104: Connection reset by peer)",
                TlsHandshake,
            ),
            (b"client prematurely closed connection", ClientClosed),
            (
                b"epoll_wait() reported that client prematurely closed connection",
                ClientClosed,
            ),
            (b"upstream rejected request with error 7", StreamRefused),
            (b"upstream rejected request with error 2", StreamReset),
            (b"upstream rejected request with error 0", StreamReset),
            (b"upstream rejected request with error 70", StreamReset),
            (b"upstream rejected request with error 4294967303", StreamReset),
            (
                b"upstream rejected request with error 99999999999999999999",
                StreamReset,
            ),
            (b"upstream rejected request with error ", StreamReset),
            (b"upstream sent goaway with error 0", GoAway),
            (b"upstream sent goaway with error 2", GoAway),
            (b"upstream sent goaway frame with invalid length: 4", InvalidHeader),
            (b"upstream sent rst stream frame with invalid length: 3", InvalidHeader),
            (b"upstream prematurely closed stream", PrematurelyClosed),
            (b"upstream sent unexpected :status \"103\"", InvalidHeader),
            (b"upstream sent no :status header", InvalidHeader),
            (b"upstream sent invalid http2 table index: 70", InvalidHeader),
            (b"upstream sent too large http2 frame: 16777215", InvalidHeader),
            (b"upstream sent frame for unknown stream 3", InvalidHeader),
            (b"upstream sent unexpected http2 frame: 0", InvalidHeader),
            (
                b"upstream violated stream flow control, received 70000 data frame with window 65535",
                InvalidHeader,
            ),
            (
                b"upstream violated connection flow control, received 70000 data frame with window 65535",
                InvalidHeader,
            ),
            (
                b"connect() to unix:/run/php/php-fpm.sock failed (11: Resource temporarily unavailable)",
                ConnectFailed,
            ),
            (b"open() \"/x\" failed (2: No such file or directory)", Other),
            (b"", Other),
        ];
        for (text, kind) in cases {
            assert_eq!(message_kind(text), *kind, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn whole_lines_are_cut_to_the_message() {
        let line = b"2026/11/25 10:00:00 [error] 123#0: *5 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: , request: \"GET /x, client: y HTTP/1.1\", upstream: \"http://127.0.0.1:1/x\", host: \"a\"\n";
        let want = &b"connect() failed (111: Connection refused) while connecting to upstream"[..];
        assert_eq!(extract_message(line, Some(b"connecting to upstream")), want);
        assert_eq!(extract_message(line, None), want);
        let no_conn = b"2026/11/25 10:00:00 [crit] 1#1: no live upstreams\n";
        assert_eq!(extract_message(no_conn, None), b"no live upstreams");
        assert_eq!(extract_message(b"", None), b"");
        assert_eq!(extract_message(b" [", Some(b"x")), b" [");
        let m = parse_message(extract_message(line, Some(b"connecting to upstream")));
        assert_eq!(
            m,
            Message {
                kind: MessageKind::ConnectFailed,
                errno: Some(111),
                phase: Some(Phase::Connect),
                unix: false,
            }
        );
    }

    #[test]
    fn unix_peers_are_told_from_tcp_ones() {
        let m = parse_message(
            b"connect() to unix:/run/php/php-fpm.sock failed (11: Resource temporarily unavailable) while connecting to upstream",
        );
        assert_eq!((m.kind, m.errno, m.unix), (MessageKind::ConnectFailed, Some(11), true));
        let m = parse_message(b"connect() to 127.0.0.1:9000 failed (11: Resource temporarily unavailable)");
        assert_eq!((m.errno, m.unix), (Some(11), false));
        // only the connect line names the peer: other texts never say unix
        let m = parse_message(b"upstream sent invalid header: \"connect() to unix:/x\"");
        assert!(!m.unix);
        assert!(!parse_message(b"connect() failed (111: Connection refused)").unix);
    }
}
