//! nginx's line inside a line, as people hand logs over: after a `docker
//! logs -t` or `kubectl logs --timestamps` stamp, a `docker compose logs`
//! or foreman `name | ` column, a `kubectl logs --prefix` `[pod/NAME/C] `
//! or stern `POD CONTAINER ` prefix, a journald (`short`, `short-iso`) or
//! syslog (RFC 3164, RFC 5424, nginx's own `error_log syslog:`) header, an
//! s6 or svlogd stamp. The prefix's pod, container or host is the line's
//! origin: two origins' `*1` are two connections.
//!
//! ```text
//! 2017-05-10T06:50:00.434167704Z 2017/05/10 06:50:00 [error] 7#7: *1 ...
//! web-1  | 2025/03/18 10:00:00 [error] 29#29: *1 ...                  (origin web-1)
//! [pod/ingress-7d8f/controller] 2024/04/21 08:13:58 [error] ...       (origin pod/ingress-7d8f/controller)
//! Apr 21 08:13:58 box nginx[30946]: 2024/04/21 08:13:58 [error] ...   (origin box)
//! <11>1 2024-04-21T08:13:58Z box nginx - - - 2024/04/21 08:13:58 ...  (origin box)
//! ```
//!
//! Every function takes arbitrary bytes and never panics.

use crate::errlog::looks_like_nginx;
use crate::scan::memchr;

/// Bytes of prefix looked through for nginx's own text.
pub const PREFIX_MAX: usize = 512;

/// Where nginx's line starts in a line, and the origin its prefix names
/// (empty when none, or no prefix): `None` when nginx's text is not there.
pub fn find(line: &[u8]) -> Option<(usize, &[u8])> {
    if looks_like_nginx(line) {
        return Some((0, &[]));
    }
    // nginx's "YYYY/MM/DD HH:MM:SS [", after a space: its first '/'
    let hay = &line[..line.len().min(PREFIX_MAX + 5)];
    let mut from = 5;
    while let Some(i) = hay.get(from..).and_then(|h| memchr(b'/', h)) {
        let start = from + i - 4;
        // after a space, or the punctuation a tag ends with (`nginx-stderr>`)
        let after = line[start - 1] == b' ' || b">|:]".contains(&line[start - 1]);
        if after && looks_like_nginx(&line[start..]) && line[start..start + 4].iter().all(u8::is_ascii_digit) {
            return Some((start, origin(&line[..start])));
        }
        from += i + 1;
    }
    None
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// The tokens of a prefix, split at spaces.
fn tokens(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| b == b' ' || b == b'\t').filter(|t| !t.is_empty())
}

/// A token of a time stamp: an RFC 3339 or svlogd stamp, a time, a day,
/// a month's name, an s6 TAI64N label, a syslog priority with RFC 5424's
/// version, or RFC 5424's `-` for an empty field.
fn stamp(t: &[u8]) -> bool {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    ];
    let t = strip_ansi_ends(t);
    t == b"-"
        || MONTHS.contains(&t)
        || (t.first().is_some_and(u8::is_ascii_digit) && t.iter().all(|b| b.is_ascii_digit() || b"-:T._+Z".contains(b)))
        || (t.len() > 1 && t[0] == b'@' && t[1..].iter().all(u8::is_ascii_hexdigit))
        || (t.first() == Some(&b'<') && memchr(b'>', t).is_some_and(|e| t[1..e].iter().all(u8::is_ascii_digit)))
}

/// `t` without the ANSI colour sequences around it (stern colours its
/// names).
fn strip_ansi_ends(mut t: &[u8]) -> &[u8] {
    while t.first() == Some(&0x1b) {
        match t.iter().position(u8::is_ascii_alphabetic) {
            Some(end) => t = &t[end + 1..],
            None => return &[],
        }
    }
    if let Some(esc) = memchr(0x1b, t) {
        t = &t[..esc];
    }
    t
}

/// The origin a prefix names.
fn origin(prefix: &[u8]) -> &[u8] {
    let p = trim(prefix);
    // docker compose logs, foreman: `web-1  | `, `10:00:00 web.1  | `;
    // compose's column around a process manager's (nginx-proxy's forego:
    // `nginx-proxy  | nginx.1  | `) names the container
    if p.ends_with(b"|") {
        let first = &p[..memchr(b'|', p).unwrap_or(p.len())];
        return tokens(first).last().unwrap_or_default();
    }
    // kubectl logs --prefix: `[pod/NAME/CONTAINER] `
    if let Some(rest) = p.strip_prefix(b"[") {
        if let Some(end) = memchr(b']', rest) {
            return trim(&rest[..end]);
        }
    }
    // journald's short forms, syslog RFC 3164: `... HOST TAG[PID]: `;
    // without a host (nginx's own syslog without one, Heroku's
    // `STAMP app[web.1]: `), the tag
    if let Some(head) = p.strip_suffix(b":") {
        let t: Vec<&[u8]> = tokens(head).collect();
        return match t.len().checked_sub(2).map(|i| t[i]) {
            Some(host) if !stamp(host) => host,
            // (a word alone, `Error: `, names no source)
            _ if t.len() >= 2 => t.last().copied().filter(|tag| !stamp(tag)).unwrap_or_default(),
            _ => &[],
        };
    }
    // syslog RFC 5424: `<PRI>1 STAMP HOST APP PROCID MSGID SD `
    if p.starts_with(b"<") {
        let mut t = tokens(p);
        if t.next().is_some_and(|v| v.ends_with(b">1")) {
            return t.nth(1).filter(|h| *h != b"-").unwrap_or_default();
        }
    }
    // stern's `POD CONTAINER `, after stamps (docker -t, kubectl
    // --timestamps, s6, svlogd give stamps alone); a process tag
    // (`nginx-stderr>`)
    let mut rest = if p.starts_with(b"<") {
        p
    } else {
        p.strip_suffix(b">").unwrap_or(p)
    };
    while let Some(t) = tokens(rest).next() {
        if !stamp(t) {
            break;
        }
        let at = t.as_ptr() as usize - rest.as_ptr() as usize + t.len();
        rest = trim(&rest[at..]);
    }
    rest
}

/// An origin as kept and shown: without ANSI colour sequences (stern's).
pub fn clean_origin(o: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(o.len());
    let mut i = 0;
    while i < o.len() {
        if o[i] == 0x1b {
            // ESC [ ... final letter
            match o[i + 1..].iter().position(u8::is_ascii_alphabetic) {
                Some(end) => i += end + 2,
                None => break,
            }
        } else {
            out.push(o[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINX: &str = "2024/04/21 08:13:58 [error] 7#7: *1 connect() failed (111: Connection refused) while \
                         connecting to upstream, client: 10.0.0.1, server: _, request: \"GET / HTTP/1.1\", \
                         upstream: \"http://10.0.0.2:80/\", host: \"a\"";

    #[test]
    fn every_prefix_form_gives_nginx_s_line_and_its_origin() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("2017-05-10T06:50:00.434167704Z ", ""),
            ("2024-04-21T08:13:58.123456789+00:00 ", ""),
            ("web-1  | ", "web-1"),
            ("nginx_1    | ", "nginx_1"),
            ("08:13:58 web.1  | ", "web.1"),
            (
                "[pod/ingress-nginx-controller-7d8f/controller] ",
                "pod/ingress-nginx-controller-7d8f/controller",
            ),
            (
                "[pod/ingress-nginx-controller-7d8f/controller] 2024-04-21T08:13:58.1Z ",
                "pod/ingress-nginx-controller-7d8f/controller",
            ),
            (
                "ingress-nginx-controller-7d8f controller ",
                "ingress-nginx-controller-7d8f controller",
            ),
            (
                "\x1b[32mingress-nginx-controller-7d8f\x1b[0m \x1b[34mcontroller\x1b[0m ",
                "\x1b[32mingress-nginx-controller-7d8f\x1b[0m \x1b[34mcontroller\x1b[0m",
            ),
            ("Apr 21 08:13:58 box nginx[30946]: ", "box"),
            ("Apr  1 08:13:58 box nginx[30946]: ", "box"),
            ("2024-04-21T08:13:58+0000 box nginx[30946]: ", "box"),
            ("<187>Apr 21 08:13:58 box nginx: ", "box"),
            ("<187>Apr 21 08:13:58 nginx: ", "nginx"),
            ("2019-04-08T14:09:05.932714+00:00 app[web.1]: ", "app[web.1]"),
            ("nginx-proxy   | nginx.1    | ", "nginx-proxy"),
            ("nginx-stderr>", "nginx-stderr"),
            ("Error: ", ""),
            ("<11>1 2024-04-21T08:13:58.000Z box nginx - - - ", "box"),
            ("<11>1 2024-04-21T08:13:58.000Z - nginx - - - ", ""),
            ("@400000006624cb6a2c3b1f0c ", ""),
            ("2024-04-21_08:13:58.12345 ", ""),
        ];
        for (prefix, want) in cases {
            let line = format!("{prefix}{NGINX}");
            let (start, origin) = find(line.as_bytes()).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(&line[start..], NGINX, "{prefix:?}");
            assert_eq!(origin, want.as_bytes(), "{prefix:?}");
        }
        assert_eq!(clean_origin(b"\x1b[32mpod\x1b[0m \x1b[34mc\x1b[0m"), b"pod c");
    }

    #[test]
    fn lines_without_nginx_s_text_are_not_found() {
        for bad in [
            "",
            "GET / HTTP/1.1 200",
            "web-1  | 2024/04/21 08:13",
            "a/b/c 2024/04/21",
            "x2024/04/21 08:13:58 [error] 1#1: y",
            "web-1  | 2024/04/21 08:13:58 error 1#1: y",
            "\x1b/\x1b/",
        ] {
            assert_eq!(find(bad.as_bytes()), None, "{bad:?}");
        }
        // beyond the prefix's bound
        let far = format!("{} {NGINX}", "x".repeat(PREFIX_MAX + 10));
        assert_eq!(find(far.as_bytes()), None);
    }
}
