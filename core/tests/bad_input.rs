//! Any bytes in: the parser, the classifier and the renderers never panic,
//! and what they render is one printable line whose quoted values decode
//! back to exactly the input.

use proptest::prelude::*;
use upstream_cause_core::classify::Session;
use upstream_cause_core::hint::hint;
use upstream_cause_core::render::{
    escape_quoted, render_list, render_log_line, unescape_quoted, Entry, FixedBuf, LogLine,
};
use upstream_cause_core::text::{extract_message, parse_message, MessageKind};
use upstream_cause_core::{classify, final_cause, Cause, End, Observation};
use upstream_cause_core::{errlog, prefix};

fn printable_line(b: &[u8]) -> bool {
    b.iter().all(|&c| (0x20..0x7f).contains(&c))
}

fn cause() -> impl Strategy<Value = Cause> {
    (0..Cause::ALL.len()).prop_map(|i| Cause::ALL[i])
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        Just(End::Open),
        Just(End::Failed),
        Just(End::Finalized),
        Just(End::NoLivePeer)
    ]
}

/// Bytes that look like nginx's texts often enough to reach deep branches.
fn nginxish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        (
            prop_oneof![
                Just(&b"connect() failed ("[..]),
                Just(&b"upstream timed out ("[..]),
                Just(&b"recv() failed ("[..]),
                Just(&b"upstream sent "[..]),
                Just(&b"SSL_do_handshake() failed ("[..]),
                Just(&b"connect() to unix:/run/php/php-fpm.sock failed ("[..]),
                Just(&b"upstream rejected request with error "[..]),
                Just(&b"upstream sent goaway with error "[..]),
                Just(&b"upstream violated stream flow control, "[..]),
            ],
            proptest::collection::vec(any::<u8>(), 0..40),
            prop_oneof![
                Just(&b" while connecting to upstream"[..]),
                Just(&b" while "[..]),
                Just(&b""[..])
            ],
        )
            .prop_map(|(a, b, c)| [a, &b[..], c].concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn parsing_never_panics(line in nginxish(), action in proptest::collection::vec(any::<u8>(), 0..60)) {
        let _ = parse_message(&line);
        let msg = extract_message(&line, Some(&action));
        prop_assert!(msg.len() <= line.len());
        let _ = parse_message(msg);
        let _ = extract_message(&line, None);
    }

    #[test]
    fn reading_any_line_never_panics(prefix in proptest::collection::vec(any::<u8>(), 0..80), line in nginxish()) {
        // a prefix in front of bytes shaped as nginx's line, and alone
        let stamped = [&prefix[..], b" 2026/11/25 10:00:07 [error] 1#1: *2 ", &line[..]].concat();
        for l in [&stamped[..], &line[..], &prefix[..]] {
            if let Some((start, origin)) = prefix::find(l) {
                prop_assert!(start <= l.len() && origin.len() <= start);
                let _ = prefix::clean_origin(origin);
                if let Some(p) = errlog::parse_line(&l[start..]) {
                    let c = p.context();
                    let _ = errlog::attempt(p.message);
                    let _ = errlog::session_attempt(p.message, &c);
                    let _ = errlog::session_line(p.message);
                    let _ = errlog::peer_in_text(p.message);
                    let _ = c.upstream.map(|u| errlog::peer_of_request(u, c.request));
                }
            }
        }
    }

    #[test]
    fn classifying_never_panics(
        text in nginxish(),
        end in end(),
        flags in any::<[bool; 17]>(),
        session in any::<[bool; 6]>(),
        header_bytes in any::<u32>(),
        status in any::<u16>(),
        final_status in any::<u16>(),
    ) {
        let o = Observation {
            end,
            connection: flags[0], connected: flags[1], ssl: flags[2], ssl_handshaked: flags[3],
            read_eof: flags[4], read_error: flags[5], read_timedout: flags[6], write_error: flags[7],
            write_timedout: flags[8], request_sent: flags[9], header_received: flags[10],
            buffer_full: flags[11], reused: flags[12], header_sent: flags[13], client_error: flags[14],
            header_bytes, status, saturated: flags[16],
            message: flags[15].then(|| parse_message(&text)),
            session: session[0].then_some(Session {
                udp: session[1], client_sent: session[2], upstream_sent: session[3],
                client_ended: session[4], shutdown: session[5],
            }),
        };
        let c = classify(&o);
        let _ = final_cause(c, final_status);
        if o.end == End::NoLivePeer {
            prop_assert_eq!(c, Some(if o.saturated { Cause::MaxConnsReached } else { Cause::NoLiveUpstreams }));
        }
        // the HTTP/2 codes come from the text's kind alone, never from a
        // number that is out of range
        if let (Some(c), Some(m)) = (c, o.message) {
            if c == Cause::StreamRefused {
                prop_assert!(matches!(m.kind, MessageKind::StreamRefused | MessageKind::GoAway));
            }
            if c == Cause::AcceptQueueFull {
                prop_assert!(m.unix && m.errno == Some(11));
            }
        }
    }

    #[test]
    fn quoted_values_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut raw = vec![0u8; 4 * bytes.len()];
        let mut out = FixedBuf::new(&mut raw);
        escape_quoted(&mut out, &bytes);
        prop_assert!(!out.truncated());
        prop_assert!(printable_line(out.as_bytes()));
        prop_assert_eq!(unescape_quoted(out.as_bytes()), Some(bytes));
    }

    #[test]
    fn the_log_line_is_one_line_whatever_the_bytes(
        c in cause(),
        status in any::<u16>(),
        attempts in 0usize..100,
        peer in proptest::collection::vec(any::<u8>(), 0..80),
        detail in proptest::collection::vec(any::<u8>(), 0..600),
        causes in proptest::collection::vec(proptest::option::of(cause()), 0..20),
        cut in 0usize..2000,
        text in nginxish(),
    ) {
        let message = Some(parse_message(&text));
        let entries: Vec<Entry> = causes.iter().map(|c| Entry::Attempt(*c)).collect();
        let mut raw = vec![0u8; cut];
        let mut out = FixedBuf::new(&mut raw);
        render_log_line(&mut out, &LogLine { cause: c, status, attempts, peer: &peer, entries: &entries, detail: &detail, message });
        // cut anywhere: still printable, never a newline
        prop_assert!(printable_line(out.as_bytes()));
        let mut raw = vec![0u8; 8192];
        let mut out = FixedBuf::new(&mut raw);
        render_log_line(&mut out, &LogLine { cause: c, status, attempts, peer: &peer, entries: &entries, detail: &detail, message });
        let line = out.as_bytes();
        prop_assert!(printable_line(line));
        let text = String::from_utf8(line.to_vec()).unwrap();
        let start = text.find(" detail=\"").unwrap() + 9;
        let end = text.rfind("\" hint=\"").unwrap();
        prop_assert_eq!(unescape_quoted(&line[start..end]), Some(detail));
        let hint_kv = format!("hint=\"{}\"", hint(c, message.as_ref()));
        prop_assert!(text.ends_with(&hint_kv));
        let mut list = vec![0u8; 4096];
        let mut lout = FixedBuf::new(&mut list);
        render_list(&mut lout, &entries);
        prop_assert!(printable_line(lout.as_bytes()));
    }
}

#[test]
fn header_values_are_only_the_fixed_codes() {
    for c in Cause::ALL {
        assert!(c.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
}
