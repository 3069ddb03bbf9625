//! The cause taxonomy: stable codes, their typical status and a hint.

/// Why an upstream attempt failed, or why nginx answered what it answered.
///
/// The codes are a public contract (docs/reference.md, "Cause codes"): a code never changes meaning
/// once released, and new causes are only ever appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Cause {
    ConnectRefused = 1,
    ConnectUnreachable,
    ConnectError,
    ConnectTimeout,
    TlsHandshakeFailed,
    TlsVerifyFailed,
    SendFailed,
    SendTimeout,
    UpstreamPrematurelyClosed,
    UpstreamReset,
    ReadTimeout,
    InvalidHeader,
    HeaderTooBig,
    NoLiveUpstreams,
    ResolveFailed,
    ViaUpstream,
    ResponseTruncated,
    ClientClosed,
    AcceptQueueFull,
    StreamRefused,
    MaxConnsReached,
    // Stream (TCP and UDP) only: what nginx's stream proxy ends as success
    // or says only at info.
    UpstreamClosedSilent,
    IdleTimeout,
    UdpNoResponse,
}

impl Cause {
    /// Every cause, in declaration order.
    pub const ALL: [Cause; 24] = [
        Cause::ConnectRefused,
        Cause::ConnectUnreachable,
        Cause::ConnectError,
        Cause::ConnectTimeout,
        Cause::TlsHandshakeFailed,
        Cause::TlsVerifyFailed,
        Cause::SendFailed,
        Cause::SendTimeout,
        Cause::UpstreamPrematurelyClosed,
        Cause::UpstreamReset,
        Cause::ReadTimeout,
        Cause::InvalidHeader,
        Cause::HeaderTooBig,
        Cause::NoLiveUpstreams,
        Cause::ResolveFailed,
        Cause::ViaUpstream,
        Cause::ResponseTruncated,
        Cause::ClientClosed,
        Cause::AcceptQueueFull,
        Cause::StreamRefused,
        Cause::MaxConnsReached,
        Cause::UpstreamClosedSilent,
        Cause::IdleTimeout,
        Cause::UdpNoResponse,
    ];

    /// The stable snake_case code.
    pub const fn code(self) -> &'static str {
        match self {
            Cause::ConnectRefused => "connect_refused",
            Cause::ConnectUnreachable => "connect_unreachable",
            Cause::ConnectError => "connect_error",
            Cause::ConnectTimeout => "connect_timeout",
            Cause::TlsHandshakeFailed => "tls_handshake_failed",
            Cause::TlsVerifyFailed => "tls_verify_failed",
            Cause::SendFailed => "send_failed",
            Cause::SendTimeout => "send_timeout",
            Cause::UpstreamPrematurelyClosed => "upstream_prematurely_closed",
            Cause::UpstreamReset => "upstream_reset",
            Cause::ReadTimeout => "read_timeout",
            Cause::InvalidHeader => "invalid_header",
            Cause::HeaderTooBig => "header_too_big",
            Cause::NoLiveUpstreams => "no_live_upstreams",
            Cause::ResolveFailed => "resolve_failed",
            Cause::ViaUpstream => "via_upstream",
            Cause::ResponseTruncated => "response_truncated",
            Cause::ClientClosed => "client_closed",
            Cause::AcceptQueueFull => "accept_queue_full",
            Cause::StreamRefused => "stream_refused",
            Cause::MaxConnsReached => "max_conns_reached",
            Cause::UpstreamClosedSilent => "upstream_closed_silent",
            Cause::IdleTimeout => "idle_timeout",
            Cause::UdpNoResponse => "udp_no_response",
        }
    }

    /// The status nginx typically answers with for this cause; `None` when
    /// it depends on what the upstream sent (`via_upstream`,
    /// `response_truncated`). A stream session's status is nginx's own:
    /// 200 for the two failures its stream proxy ends as a success.
    pub const fn default_status(self) -> Option<u16> {
        match self {
            Cause::ConnectTimeout | Cause::SendTimeout | Cause::ReadTimeout => Some(504),
            Cause::UpstreamClosedSilent | Cause::IdleTimeout => Some(200),
            Cause::ViaUpstream | Cause::ResponseTruncated => None,
            Cause::ClientClosed => Some(499),
            _ => Some(502),
        }
    }

    /// Whether nginx itself produced the response because of this cause
    /// (a gateway failure), as opposed to passing on what the upstream sent.
    pub const fn is_gateway_failure(self) -> bool {
        !matches!(self, Cause::ViaUpstream)
    }

    /// One sentence: what usually causes it and where to look next.
    pub const fn hint(self) -> &'static str {
        match self {
            Cause::ConnectRefused => {
                "nothing listens on the upstream port: the backend process is down or restarting"
            }
            Cause::ConnectUnreachable => {
                "no route to the upstream host: the host or its network is gone, or the address is stale"
            }
            Cause::ConnectError => {
                "the connect failed on the nginx side (local address, file descriptors, proxy_bind): see the errno"
            }
            Cause::ConnectTimeout => {
                "no TCP handshake within the connect timeout: the host is overloaded, its accept queue is full, or SYNs are dropped"
            }
            Cause::TlsHandshakeFailed => {
                "the TLS handshake failed: the upstream does not speak TLS on that port or shares no protocol or cipher"
            }
            Cause::TlsVerifyFailed => {
                "the upstream certificate did not verify: check the trusted certificate, the expected name and the expiry"
            }
            Cause::SendFailed => {
                "the connection broke while sending the request: the upstream crashed mid-request or refuses the body"
            }
            Cause::SendTimeout => {
                "the upstream stopped reading the request within the send timeout: it is stuck or overloaded"
            }
            Cause::UpstreamPrematurelyClosed => {
                "the upstream closed the connection without answering: its request handler crashed or panicked (see its log)"
            }
            Cause::UpstreamReset => {
                "the upstream reset the connection without answering: it crashed, or something in between killed the connection"
            }
            Cause::ReadTimeout => {
                "the upstream took the request but sent no response header within the read timeout: a slow or stuck handler"
            }
            Cause::InvalidHeader => {
                "the upstream answered with a response that is not valid for the protocol: wrong port or protocol, or a broken backend"
            }
            Cause::HeaderTooBig => {
                "the upstream response header does not fit the buffer size: raise the buffer or shrink the headers"
            }
            Cause::NoLiveUpstreams => {
                "every server of the upstream group is marked failed or down: see the earlier failures, max_fails and fail_timeout"
            }
            Cause::ResolveFailed => {
                "the upstream host name could not be resolved: check the resolver directive and DNS"
            }
            Cause::ViaUpstream => "the upstream itself answered this status: see the backend's own log",
            Cause::ResponseTruncated => {
                "the upstream closed or failed after the response had started: the client got a truncated body"
            }
            Cause::ClientClosed => {
                "the client went away before the upstream answered: its timeout is shorter than the upstream's response time"
            }
            Cause::AcceptQueueFull => {
                "the backend's listen queue is full: every worker is busy (PHP-FPM at pm.max_children); add workers or find the slow requests"
            }
            Cause::StreamRefused => {
                "the HTTP/2 upstream did not process the request: it refused the stream or is draining the connection; safe to retry"
            }
            Cause::MaxConnsReached => {
                "every live server of the group is at its max_conns limit: the group is saturated, not down; raise max_conns or add servers"
            }
            Cause::UpstreamClosedSilent => {
                "the upstream closed the session without a byte after the client's: it crashed or rejected the request (see its log)"
            }
            Cause::IdleTimeout => {
                "no byte either way within proxy_timeout: an idle pooled connection ends so by design, else a stuck peer"
            }
            Cause::UdpNoResponse => {
                "the UDP upstream sent no response within proxy_timeout: it is down, drops the packets, or answers fewer than proxy_responses"
            }
        }
    }

    /// The cause for a code, if it is one of ours.
    pub fn from_code(code: &str) -> Option<Cause> {
        Cause::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// Compact numeric form, for storage in fixed-size records.
    pub const fn to_u8(self) -> u8 {
        self as u8
    }

    /// Inverse of [`Cause::to_u8`].
    pub fn from_u8(v: u8) -> Option<Cause> {
        Cause::ALL.iter().copied().find(|c| *c as u8 == v)
    }
}

impl core::fmt::Display for Cause {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document's cause table (the first table under "## Cause codes"),
    /// row by row: `| `code` | status | hint |`.
    fn code_rows(readme: &str) -> Vec<(String, String, String)> {
        let section = &readme[readme.find("\n## Cause codes\n").expect("a Cause codes section")..];
        let table = &section[section.find("\n|").unwrap()..];
        let table = &table[..table.find("\n\n").unwrap_or(table.len())];
        table
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                (cells.len() == 5 && Cause::from_code(code).is_some())
                    .then(|| (code.to_string(), cells[2].to_string(), cells[3].to_string()))
            })
            .collect()
    }

    #[test]
    fn codes_are_stable_snake_case_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for (i, c) in Cause::ALL.iter().enumerate() {
            assert!(c.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{c}");
            assert!(seen.insert(c.code()), "duplicate code {c}");
            assert_eq!(Cause::from_code(c.code()), Some(*c));
            assert_eq!(Cause::from_u8(c.to_u8()), Some(*c));
            assert_eq!(
                usize::from(c.to_u8()),
                i + 1,
                "ALL is in declaration order, 0 means none"
            );
            assert_eq!(c.to_string(), c.code());
        }
        assert_eq!(Cause::ALL.len(), 24);
        assert_eq!(Cause::from_code("Connect_Refused"), None);
        assert_eq!(Cause::from_u8(0), None);
        assert_eq!(Cause::from_u8(25), None);
    }

    #[test]
    fn default_statuses_follow_the_spec_table() {
        for c in Cause::ALL {
            let want = match c {
                Cause::ConnectTimeout | Cause::SendTimeout | Cause::ReadTimeout => Some(504),
                Cause::UpstreamClosedSilent | Cause::IdleTimeout => Some(200),
                Cause::ViaUpstream | Cause::ResponseTruncated => None,
                Cause::ClientClosed => Some(499),
                _ => Some(502),
            };
            assert_eq!(c.default_status(), want, "{c}");
            assert_eq!(c.is_gateway_failure(), c != Cause::ViaUpstream, "{c}");
        }
    }

    #[test]
    fn hints_are_one_printable_sentence() {
        for c in Cause::ALL {
            let h = c.hint();
            assert!(h.len() > 30 && h.len() < 140, "{c}: {h}");
            assert!(
                h.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
                "{c}"
            );
            assert!(!h.ends_with('.') && h.contains(": "), "{c}: what, then where to look");
        }
        assert_eq!(
            Cause::ConnectRefused.hint(),
            "nothing listens on the upstream port: the backend process is down or restarting"
        );
    }

    #[test]
    fn the_reference_documents_every_code_with_its_status_and_hint_and_the_readme_names_it() {
        check_code_rows(code_rows(include_str!("../../docs/reference.md")));
        let readme = include_str!("../../README.md");
        for c in Cause::ALL {
            assert!(readme.contains(&format!("`{}`", c.code())), "{}", c.code());
        }
    }

    fn check_code_rows(rows: Vec<(String, String, String)>) {
        assert_eq!(rows.len(), Cause::ALL.len(), "one row per code");
        for (code, status, hint) in rows {
            let c = Cause::from_code(&code).unwrap();
            let want = c.default_status().map_or(
                if c == Cause::ViaUpstream {
                    "5xx".into()
                } else {
                    "any".into()
                },
                |s| s.to_string(),
            );
            assert_eq!(status, want, "{code}");
            assert_eq!(hint, c.hint(), "{code}");
        }
    }
}
