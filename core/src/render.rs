//! Rendering: the per-attempt list and the enriched error-log line.
//!
//! Renderers write into a caller-provided byte sink so the shell can render
//! straight into nginx pool memory without heap allocation.

use crate::cause::Cause;
use crate::text::Message;

/// A byte sink that never fails: it truncates when full.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A fixed buffer that keeps what fits and counts what did not.
pub struct FixedBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
    truncated: bool,
}

impl<'a> FixedBuf<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        FixedBuf {
            buf,
            len: 0,
            truncated: false,
        }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn truncated(&self) -> bool {
        self.truncated
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Write for FixedBuf<'_> {
    /// Cuts at the buffer's end, like [`Sink::put`]; never fails.
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}

impl Sink for FixedBuf<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.len;
        let n = bytes.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        if n < bytes.len() {
            self.truncated = true;
        }
    }
}

/// A sink that only counts, to size an allocation before rendering.
#[derive(Default)]
pub struct Counter(pub usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Writes `bytes` as the inside of a double-quoted value: `"` and `\` are
/// backslash-escaped, control bytes and bytes >= 0x7f become `\xHH`, so the
/// result is printable ASCII on one line whatever the input.
pub fn escape_quoted(out: &mut impl Sink, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut rest = bytes;
    loop {
        let n = crate::scan::plain_prefix(rest);
        out.put(&rest[..n]);
        let Some((&b, tail)) = rest[n..].split_first() else {
            return;
        };
        match b {
            b'"' => out.put(b"\\\""),
            b'\\' => out.put(b"\\\\"),
            _ => out.put(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
        rest = tail;
    }
}

/// The inverse of [`escape_quoted`]: the bytes a quoted value stands for.
/// `None` if it is not one `escape_quoted` could have written.
pub fn unescape_quoted(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => match s.get(i + 1)? {
                b'"' | b'\\' => {
                    out.push(s[i + 1]);
                    i += 2;
                }
                b'x' => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    let (hi, lo) = (hex(*s.get(i + 2)?)?, hex(*s.get(i + 3)?)?);
                    out.push((hi * 16 + lo) as u8);
                    i += 4;
                }
                _ => return None,
            },
            b'"' => return None,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Whether `name` is acceptable as a response header name: an HTTP token
/// of letters, digits, `-` and `_`, at most 64 bytes.
pub fn is_header_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One entry of `$upstream_cause_list`, aligned with `r->upstream_states`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A real attempt: its cause, or `None` for a successful one (`-`).
    Attempt(Option<Cause>),
    /// The empty state nginx inserts when a request moves to a second
    /// upstream after an internal redirect (rendered as ` : `).
    Separator,
}

/// Renders entries with exactly the separators of `$upstream_addr`:
/// `, ` between attempts, ` : ` for a separator state.
pub fn render_list(out: &mut impl Sink, entries: &[Entry]) {
    let n = entries.len();
    if n == 0 {
        return;
    }
    let mut i = 0;
    loop {
        if let Entry::Attempt(c) = entries[i] {
            out.put(c.map_or("-", Cause::code).as_bytes());
        }
        i += 1;
        if i == n {
            break;
        }
        if let Entry::Attempt(_) = entries[i] {
            out.put(b", ");
        } else {
            out.put(b" : ");
            i += 1;
            if i == n {
                break;
            }
        }
    }
}

/// The fields of the enriched error-log line.
pub struct LogLine<'a> {
    pub cause: Cause,
    pub status: u16,
    pub attempts: usize,
    pub peer: &'a [u8],
    pub entries: &'a [Entry],
    pub detail: &'a [u8],
    /// The parsed message of the attempt `cause` is from, which refines
    /// the hint ([`crate::hint::hint`]).
    pub message: Option<Message>,
}

impl<'a> LogLine<'a> {
    /// The line of a request or session whose outcome is a gateway
    /// failure (none otherwise): from its summary, the records it was made
    /// from, the status nginx answered or logged, and `peer`, the label of
    /// the attempt the outcome is at.
    pub fn of<U: Copy>(
        s: &'a crate::Summary<U>,
        observed: Option<&'a crate::Observed<U>>,
        status: u16,
        peer: impl FnOnce(crate::At) -> &'a [u8],
    ) -> Option<LogLine<'a>> {
        let outcome = s.outcome().filter(|o| o.cause.is_gateway_failure())?;
        Some(LogLine {
            cause: outcome.cause,
            status,
            attempts: s.attempts(),
            peer: peer(outcome.at),
            entries: s.entries(),
            detail: observed.map_or(&[], |o| o.detail(outcome.at)),
            message: observed.and_then(|o| o.message(outcome.at)),
        })
    }
}

/// Renders the enriched line (without nginx's ", client: ..." suffix, which
/// nginx's log handler appends). Keys in the documented order (docs/reference.md).
pub fn render_log_line(out: &mut impl Sink, l: &LogLine<'_>) {
    let mut num = NumBuf::new();
    out.put(b"upstream_cause=");
    out.put(l.cause.code().as_bytes());
    out.put(b" status=");
    out.put(fmt_u64(&mut num, u64::from(l.status)));
    out.put(b" attempts=");
    out.put(fmt_u64(&mut num, l.attempts as u64));
    out.put(b" peer=");
    if l.peer.is_empty() {
        out.put(b"-");
    } else {
        // A peer name is an address or an upstream name: no spaces or
        // quotes in practice, but never let one break the line.
        escape_quoted(out, l.peer);
    }
    out.put(b" causes=\"");
    render_list(out, l.entries);
    out.put(b"\" detail=\"");
    escape_quoted(out, l.detail);
    out.put(b"\" hint=\"");
    // Our own fixed text, printable and without quotes (the hint tests
    // hold every one of them to it).
    out.put(crate::hint::hint(l.cause, l.message.as_ref()).as_bytes());
    out.put(b"\"");
}

/// Room for a number in decimal ([`fmt_u64`]).
pub type NumBuf = itoa::Buffer;

/// `v` in decimal (the itoa crate: two digits a step), in `buf`.
#[inline]
pub fn fmt_u64(buf: &mut NumBuf, v: u64) -> &[u8] {
    buf.format(v).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[Entry]) -> String {
        let mut v = Vec::new();
        render_list(&mut v, entries);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn list_separators_match_upstream_addr() {
        use Entry::*;
        assert_eq!(list(&[]), "");
        assert_eq!(list(&[Attempt(None)]), "-");
        assert_eq!(
            list(&[Attempt(Some(Cause::ConnectRefused)), Attempt(None)]),
            "connect_refused, -"
        );
        assert_eq!(
            list(&[
                Attempt(Some(Cause::ConnectRefused)),
                Separator,
                Attempt(Some(Cause::ViaUpstream))
            ]),
            "connect_refused : via_upstream"
        );
        assert_eq!(list(&[Attempt(None), Separator]), "- : ");
    }

    #[test]
    fn quoting_escapes_everything_dangerous() {
        let mut v = Vec::new();
        escape_quoted(&mut v, b"a\"b\\c\nd\r\x00\x7f\xff");
        assert_eq!(v, b"a\\\"b\\\\c\\x0Ad\\x0D\\x00\\x7F\\xFF");
    }

    #[test]
    fn the_spec_example_line() {
        let mut v = Vec::new();
        render_log_line(
            &mut v,
            &LogLine {
                cause: Cause::ConnectRefused,
                status: 502,
                attempts: 1,
                peer: b"127.0.0.1:8081",
                entries: &[Entry::Attempt(Some(Cause::ConnectRefused))],
                detail: b"connect() failed (111: Connection refused) while connecting to upstream",
                message: None,
            },
        );
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "upstream_cause=connect_refused status=502 attempts=1 peer=127.0.0.1:8081 causes=\"connect_refused\" \
             detail=\"connect() failed (111: Connection refused) while connecting to upstream\" \
             hint=\"nothing listens on the upstream port: the backend process is down or restarting\""
        );
    }

    #[test]
    fn header_names() {
        assert!(is_header_name(b"X-Upstream-Cause"));
        assert!(is_header_name(b"x_cause"));
        assert!(!is_header_name(b""));
        assert!(!is_header_name(b"X Cause"));
        assert!(!is_header_name(b"X:Cause"));
        assert!(!is_header_name(b"X\r\nY"));
        assert!(!is_header_name(&[b'a'; 65]));
    }

    #[test]
    fn fixed_buffers_truncate() {
        let mut raw = [0u8; 4];
        let mut b = FixedBuf::new(&mut raw);
        b.put(b"abc");
        b.put(b"def");
        assert_eq!(b.as_bytes(), b"abcd");
        assert!(b.truncated());
        let mut c = Counter::default();
        escape_quoted(&mut c, b"\"x");
        assert_eq!(c.0, 3);
        let mut n = NumBuf::new();
        assert_eq!(fmt_u64(&mut n, 0), b"0");
        assert_eq!(fmt_u64(&mut n, u64::MAX), b"18446744073709551615");
    }
}
