//! `Proxy-Status` (RFC 9209): nginx's member of the field, and whether an
//! upstream's own value is a valid Structured Fields list (RFC 9651) that
//! can be kept in front of it.

use crate::cause::Cause;
use crate::render::{fmt_u64, NumBuf, Sink};
use crate::text::Message;

/// ETIMEDOUT, as nginx's resolver reports a timeout
/// (`could not be resolved (110: Operation timed out)`).
const RESOLVER_TIMED_OUT: u16 = 110;

/// The RFC 9209 error type of a cause; `None` for an upstream's own status
/// (`via_upstream`, which has `received-status` instead) and for a client
/// that left (no response reaches it), and for stream's own causes.
pub fn error_type(cause: Cause, message: Option<&Message>) -> Option<&'static str> {
    Some(match cause {
        Cause::ConnectRefused | Cause::AcceptQueueFull => "connection_refused",
        Cause::ConnectUnreachable => "destination_ip_unroutable",
        Cause::ConnectError => "proxy_internal_error",
        Cause::ConnectTimeout => "connection_timeout",
        Cause::TlsHandshakeFailed => "tls_protocol_error",
        Cause::TlsVerifyFailed => "tls_certificate_error",
        Cause::SendFailed | Cause::UpstreamPrematurelyClosed | Cause::UpstreamReset | Cause::StreamRefused => {
            "connection_terminated"
        }
        Cause::SendTimeout => "connection_write_timeout",
        Cause::ReadTimeout => "http_response_timeout",
        Cause::InvalidHeader => "http_protocol_error",
        Cause::HeaderTooBig => "http_response_header_section_size",
        Cause::NoLiveUpstreams => "destination_unavailable",
        Cause::MaxConnsReached => "connection_limit_reached",
        Cause::ResolveFailed if message.and_then(|m| m.errno) == Some(RESOLVER_TIMED_OUT) => "dns_timeout",
        Cause::ResolveFailed => "dns_error",
        Cause::ResponseTruncated => "http_response_incomplete",
        // stream's own causes: no HTTP response ever carries them
        Cause::ViaUpstream
        | Cause::ClientClosed
        | Cause::UpstreamClosedSilent
        | Cause::IdleTimeout
        | Cause::UdpNoResponse => return None,
    })
}

/// nginx's member of the field.
pub struct Member<'a> {
    /// The intermediary's name: an sf-token ([`is_token`]).
    pub name: &'a [u8],
    pub cause: Cause,
    /// The message of the failure the cause is from (tells a resolver's
    /// timeout).
    pub message: Option<Message>,
    /// The peer of the final attempt (`host:port`, `unix:/path`); left out
    /// when there was none, or when it is not printable ASCII.
    pub next_hop: Option<&'a [u8]>,
    /// The upstream's own status, for `via_upstream`.
    pub received_status: Option<u16>,
}

/// Renders the member: `name;error=T;next-hop="P";received-status=N;details="code"`.
/// Only our own values go in: the error type and the code are fixed
/// strings, the name a token checked at configuration, the peer nginx's
/// own address, and all are checked to fit their Structured Fields type.
pub fn render_member(out: &mut impl Sink, m: &Member<'_>) {
    out.put(m.name);
    if let Some(error) = error_type(m.cause, m.message.as_ref()) {
        out.put(b";error=");
        out.put(error.as_bytes());
    }
    if let Some(hop) = m.next_hop.filter(|h| h.iter().all(|&b| (0x20..0x7f).contains(&b))) {
        out.put(b";next-hop=\"");
        for &b in hop {
            if b == b'"' || b == b'\\' {
                out.put(b"\\");
            }
            out.put(&[b]);
        }
        out.put(b"\"");
    }
    if let (Cause::ViaUpstream, Some(status)) = (m.cause, m.received_status) {
        let mut num = NumBuf::new();
        out.put(b";received-status=");
        out.put(fmt_u64(&mut num, u64::from(status)));
    }
    out.put(b";details=\"");
    out.put(m.cause.code().as_bytes());
    out.put(b"\"");
}

/// Whether `v` is an sf-token (RFC 9651 §3.3.4): what a member's name may be.
pub fn is_token(v: &[u8]) -> bool {
    match v.split_first() {
        Some((&first, rest)) => {
            (first.is_ascii_alphabetic() || first == b'*')
                && rest.iter().all(|&b| is_tchar(b) || b == b':' || b == b'/')
        }
        None => false,
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `v` is a valid Structured Fields List (RFC 9651 §4.2, parsing
/// a List): what an upstream's `Proxy-Status` must be to be kept. An empty
/// field is an empty list.
pub fn is_list(v: &[u8]) -> bool {
    let mut p = Parser { s: v, i: 0 };
    p.sp();
    if p.eof() {
        return true;
    }
    loop {
        if !p.item_or_inner_list() {
            return false;
        }
        p.ows();
        if p.eof() {
            return true;
        }
        if !p.eat(b',') {
            return false;
        }
        p.ows();
        if p.eof() {
            return false; // a trailing comma
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }
    fn eat(&mut self, b: u8) -> bool {
        let ok = self.peek() == Some(b);
        self.i += usize::from(ok);
        ok
    }
    fn sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }
    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn item_or_inner_list(&mut self) -> bool {
        if self.eat(b'(') {
            loop {
                self.sp();
                if self.eat(b')') {
                    return self.parameters();
                }
                if !self.bare_item() || !self.parameters() {
                    return false;
                }
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return false;
                }
            }
        }
        self.bare_item() && self.parameters()
    }

    fn parameters(&mut self) -> bool {
        while self.eat(b';') {
            self.sp();
            if !self.key() {
                return false;
            }
            if self.eat(b'=') && !self.bare_item() {
                return false;
            }
        }
        true
    }

    fn key(&mut self) -> bool {
        match self.peek() {
            Some(b) if b.is_ascii_lowercase() || b == b'*' => self.i += 1,
            _ => return false,
        }
        while matches!(self.peek(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b)) {
            self.i += 1;
        }
        true
    }

    fn bare_item(&mut self) -> bool {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string(),
            Some(b':') => self.byte_sequence(),
            Some(b'?') => {
                self.i += 1;
                matches!(self.peek(), Some(b'0' | b'1')) && {
                    self.i += 1;
                    true
                }
            }
            Some(b'@') => {
                self.i += 1;
                matches!(self.peek(), Some(b'-' | b'0'..=b'9')) && self.integer_only()
            }
            Some(b'%') => self.display_string(),
            Some(b) if b.is_ascii_alphabetic() || b == b'*' => {
                self.i += 1;
                while matches!(self.peek(), Some(b) if is_tchar(b) || b == b':' || b == b'/') {
                    self.i += 1;
                }
                true
            }
            _ => false,
        }
    }

    /// An Integer or a Decimal.
    fn number(&mut self) -> bool {
        self.eat(b'-');
        let start = self.i;
        let mut dot = None;
        while let Some(b) = self.peek() {
            if b.is_ascii_digit() {
                self.i += 1;
            } else if b == b'.' && dot.is_none() {
                dot = Some(self.i);
                self.i += 1;
            } else {
                break;
            }
            let len = self.i - start;
            if (dot.is_none() && len > 15) || (dot.is_some() && len > 16) {
                return false;
            }
        }
        match dot {
            None => self.i > start,
            Some(d) => {
                let (int, frac) = (d - start, self.i - d - 1);
                (1..=12).contains(&int) && (1..=3).contains(&frac)
            }
        }
    }

    fn integer_only(&mut self) -> bool {
        let start = self.i;
        let ok = self.number();
        ok && !self.s[start..self.i].contains(&b'.')
    }

    fn string(&mut self) -> bool {
        self.i += 1;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'\\' => match self.peek() {
                    Some(b'"' | b'\\') => self.i += 1,
                    _ => return false,
                },
                b'"' => return true,
                0x20..=0x7e => {}
                _ => return false,
            }
        }
        false
    }

    fn byte_sequence(&mut self) -> bool {
        self.i += 1;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b':' => return true,
                b'+' | b'/' | b'=' => {}
                _ if b.is_ascii_alphanumeric() => {}
                _ => return false,
            }
        }
        false
    }

    /// `%"..."`: printable ASCII but `%` and `"`, and %xx escapes of
    /// lowercase hex forming UTF-8.
    fn display_string(&mut self) -> bool {
        self.i += 1;
        if !self.eat(b'"') {
            return false;
        }
        let mut bytes = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'%' => {
                    let hex = |c: u8| match c {
                        b'0'..=b'9' => Some(c - b'0'),
                        b'a'..=b'f' => Some(c - b'a' + 10),
                        _ => None,
                    };
                    let (Some(h), Some(l)) = (self.peek().and_then(hex), self.s.get(self.i + 1).copied().and_then(hex))
                    else {
                        return false;
                    };
                    self.i += 2;
                    bytes.push(h << 4 | l);
                }
                b'"' => return core::str::from_utf8(&bytes).is_ok(),
                0x20..=0x7e => bytes.push(b),
                _ => return false,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::parse_message;

    fn member(m: &Member<'_>) -> String {
        let mut out = Vec::new();
        render_member(&mut out, m);
        String::from_utf8(out).unwrap()
    }

    fn of(cause: Cause) -> Member<'static> {
        Member {
            name: b"nginx",
            cause,
            message: None,
            next_hop: Some(b"127.0.0.1:8081"),
            received_status: None,
        }
    }

    #[test]
    fn every_cause_has_its_error_type() {
        let table = [
            (Cause::ConnectRefused, Some("connection_refused")),
            (Cause::AcceptQueueFull, Some("connection_refused")),
            (Cause::ConnectUnreachable, Some("destination_ip_unroutable")),
            (Cause::ConnectError, Some("proxy_internal_error")),
            (Cause::ConnectTimeout, Some("connection_timeout")),
            (Cause::TlsHandshakeFailed, Some("tls_protocol_error")),
            (Cause::TlsVerifyFailed, Some("tls_certificate_error")),
            (Cause::SendFailed, Some("connection_terminated")),
            (Cause::UpstreamPrematurelyClosed, Some("connection_terminated")),
            (Cause::UpstreamReset, Some("connection_terminated")),
            (Cause::StreamRefused, Some("connection_terminated")),
            (Cause::SendTimeout, Some("connection_write_timeout")),
            (Cause::ReadTimeout, Some("http_response_timeout")),
            (Cause::InvalidHeader, Some("http_protocol_error")),
            (Cause::HeaderTooBig, Some("http_response_header_section_size")),
            (Cause::NoLiveUpstreams, Some("destination_unavailable")),
            (Cause::MaxConnsReached, Some("connection_limit_reached")),
            (Cause::ResolveFailed, Some("dns_error")),
            (Cause::ResponseTruncated, Some("http_response_incomplete")),
            (Cause::ViaUpstream, None),
            (Cause::ClientClosed, None),
            (Cause::UpstreamClosedSilent, None),
            (Cause::IdleTimeout, None),
            (Cause::UdpNoResponse, None),
        ];
        for (cause, want) in table {
            assert_eq!(error_type(cause, None), want, "{cause}");
            if let Some(t) = want {
                assert!(is_token(t.as_bytes()), "{t}");
            }
        }
        assert_eq!(table.len(), Cause::ALL.len());
    }

    /// docs/reference.md's table says what the code does, row for row.
    #[test]
    fn the_reference_gives_every_error_type() {
        let doc = include_str!("../../docs/reference.md");
        for cause in Cause::ALL {
            let section = &doc[doc.find("## Proxy-Status").expect("a Proxy-Status section")..];
            let row = section
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` | ", cause.code())))
                .unwrap_or_else(|| panic!("docs/reference.md: no Proxy-Status row for {cause}"));
            match error_type(cause, None) {
                Some(t) => assert!(row.contains(&format!("| `{t}`")), "{row}"),
                None => assert!(row.contains("| none"), "{row}"),
            }
        }
    }

    #[test]
    fn a_resolver_timeout_is_dns_timeout() {
        let timed_out = parse_message(b"app.test could not be resolved (110: Operation timed out)");
        assert_eq!(error_type(Cause::ResolveFailed, Some(&timed_out)), Some("dns_timeout"));
        let nx = parse_message(b"app.test could not be resolved (3: Host not found)");
        assert_eq!(error_type(Cause::ResolveFailed, Some(&nx)), Some("dns_error"));
    }

    #[test]
    fn the_member_has_the_error_the_next_hop_and_the_code() {
        let s = member(&of(Cause::ConnectRefused));
        assert_eq!(
            s,
            r#"nginx;error=connection_refused;next-hop="127.0.0.1:8081";details="connect_refused""#
        );
        assert!(is_list(s.as_bytes()));
    }

    #[test]
    fn an_upstreams_own_status_is_received_status_without_an_error() {
        let m = Member {
            received_status: Some(503),
            ..of(Cause::ViaUpstream)
        };
        let s = member(&m);
        assert_eq!(
            s,
            r#"nginx;next-hop="127.0.0.1:8081";received-status=503;details="via_upstream""#
        );
        assert!(is_list(s.as_bytes()));
    }

    #[test]
    fn a_next_hop_that_is_not_printable_is_left_out_and_quotes_are_escaped() {
        let m = Member {
            next_hop: Some(b"unix:/run/\xc3\xa9.sock"),
            ..of(Cause::ConnectRefused)
        };
        assert_eq!(
            member(&m),
            r#"nginx;error=connection_refused;details="connect_refused""#
        );
        let m = Member {
            next_hop: Some(br#"unix:/run/a"b\c.sock"#),
            ..of(Cause::ConnectRefused)
        };
        let s = member(&m);
        assert!(s.contains(r#"next-hop="unix:/run/a\"b\\c.sock""#), "{s}");
        assert!(is_list(s.as_bytes()));
        let m = Member {
            next_hop: None,
            ..of(Cause::NoLiveUpstreams)
        };
        assert_eq!(
            member(&m),
            r#"nginx;error=destination_unavailable;details="no_live_upstreams""#
        );
    }

    #[test]
    fn tokens() {
        for ok in ["nginx", "gw-1", "*x", "a:b/c", "edge.example"] {
            assert!(is_token(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "1nginx", "-a", "a b", "a,b", "a;b", "\"a\"", "a=b", "é"] {
            assert!(!is_token(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn lists_rfc_9209_and_9651_give_are_valid() {
        for ok in [
            "",
            "  ",
            "ExampleCDN",
            "cdn.example.org; error=http_request_error",
            "SomeReverseProxy; error=http_protocol_error; details=\"Malformed response header: space before colon\"",
            "FooProxy; error=connection_timeout; next-hop=\"backend.example.org:8001\"",
            "proxy.example.net; error=http_request_denied",
            "a, b;c=1;d=?0, (e f);g=2.5, h;i=:aGk=:, j;k=@1659578233, l;m=%\"caf%c3%a9\", n;o=-12",
            "a,b",
            "a ,\tb",
            "x;received-status=503",
        ] {
            assert!(is_list(ok.as_bytes()), "{ok:?}");
        }
    }

    #[test]
    fn malformed_lists_are_refused() {
        for bad in [
            ",",
            "a,",
            ",a",
            "a b",
            "a;",
            "a;B=1",
            "a;k=",
            "\"unterminated",
            "\"bad\\n escape\"",
            "\"ctl\x01\"",
            "a;k=1.2345",
            "a;k=1234567890123456",
            "a;k=?2",
            "a;k=:not base64!:",
            "(a b",
            "(a)b",
            "a;k=%\"%c3\"",
            "a;k=%\"%C3%A9\"",
            "\u{e9}",
            "a\x00",
        ] {
            assert!(!is_list(bad.as_bytes()), "{bad:?}");
        }
    }
}
