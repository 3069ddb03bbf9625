//! What was seen of one upstream attempt, and the cause it leads to.

use crate::cause::Cause;
use crate::errno::{EAGAIN, ECONNREFUSED, ECONNRESET, EHOSTDOWN, EHOSTUNREACH, ENETUNREACH, ENOENT, EPIPE};
use crate::text::{Message, MessageKind, Phase};

/// How an attempt ended, as the balancer saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum End {
    /// Still running, or never ended through the balancer.
    #[default]
    Open,
    /// `peer.free` with `NGX_PEER_FAILED`: nginx counts it as a failure
    /// (and may retry).
    Failed,
    /// `peer.free` with state 0: the request was finalized on this attempt.
    Finalized,
    /// `peer.get` answered `NGX_BUSY`: no live peer to try.
    NoLivePeer,
}

/// Everything the shell observed of one attempt. Flags are snapshots taken
/// in `peer.free` before the inner balancer runs; `message` is the first
/// upstream error line nginx logged for the attempt, parsed.
///
/// The connection's fields (`connection` to `write_timedout`, `reused`,
/// `client_error`, `saturated`, `message`) mean the same for any proxied protocol. The
/// fields marked "HTTP:" are about a request and its response header: only
/// HTTP's upstream has them, and an observer of another protocol leaves
/// them at their default (false, 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    pub end: End,
    /// The attempt had a connection object (`pc->connection`).
    pub connection: bool,
    /// TCP (and TLS) were established and sending started
    /// (`u->state->connect_time` was set).
    pub connected: bool,
    /// TLS was started on the connection (`c->ssl`).
    pub ssl: bool,
    /// The TLS handshake completed.
    pub ssl_handshaked: bool,
    pub read_eof: bool,
    pub read_error: bool,
    pub read_timedout: bool,
    pub write_error: bool,
    pub write_timedout: bool,
    /// HTTP: the whole request, body included, was sent (`u->request_body_sent`).
    pub request_sent: bool,
    /// HTTP: a complete response header was received (`header_time` set).
    pub header_received: bool,
    /// HTTP: bytes of response header received so far.
    pub header_bytes: u32,
    /// HTTP: the header buffer was full (`last == end`).
    pub buffer_full: bool,
    /// The connection came from the keepalive cache.
    pub reused: bool,
    /// HTTP: the response header had already been sent to the client.
    pub header_sent: bool,
    /// The client connection had failed (`r->connection->error`).
    pub client_error: bool,
    /// HTTP: the status nginx recorded for this attempt (`u->state->status`),
    /// 0 if none. Stream: the session's `$status` on its last attempt,
    /// once nginx set it, else 0.
    pub status: u16,
    /// With `End::NoLivePeer`: a live server of the group was at its
    /// `max_conns` limit (see [`crate::peers::saturated`]).
    pub saturated: bool,
    /// The first upstream error line of the attempt, parsed.
    pub message: Option<Message>,
    /// Stream: what the session's own counters and ends said when nginx
    /// ended the attempt; `None` for HTTP.
    pub session: Option<Session>,
}

/// Stream: a TCP or UDP session as nginx's stream proxy left it when it
/// ended the attempt (`peer.free`), where nginx logs no error or only at
/// `info`. The session's status is not known yet there: nginx sets it
/// after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// A UDP session.
    pub udp: bool,
    /// The client had sent bytes (`$bytes_received` > 0).
    pub client_sent: bool,
    /// The upstream had sent bytes (`$upstream_bytes_received` > 0).
    pub upstream_sent: bool,
    /// The client's side had ended: its read reached EOF or failed, or a
    /// write to it failed.
    pub client_ended: bool,
    /// The worker was shutting down (a reload, a stop): nginx closes
    /// sessions on its own.
    pub shutdown: bool,
}

impl Observation {
    fn kind(&self) -> MessageKind {
        self.message.map_or(MessageKind::Other, |m| m.kind)
    }

    fn errno(&self) -> Option<u16> {
        self.message.and_then(|m| m.errno)
    }

    fn phase(&self) -> Option<Phase> {
        self.message.and_then(|m| m.phase)
    }

    fn unix(&self) -> bool {
        self.message.is_some_and(|m| m.unix)
    }
}

/// A connect failure by its errno and the kind of peer. A unix socket's
/// missing file is a backend that is not running (as a refused TCP port
/// is), and its EAGAIN is a full listen queue (Linux answers a connect to
/// a unix socket whose accept queue is full with EAGAIN, at once); TCP's
/// EAGAIN stays a local error. A reset while connecting is the upstream's
/// RST: the kernel had completed the handshake and queued the connection,
/// then the listener closed (its process exited) before accepting it.
fn connect_cause(errno: Option<u16>, unix: bool) -> Cause {
    match (errno, unix) {
        (Some(ECONNREFUSED), _) | (Some(ENOENT), true) => Cause::ConnectRefused,
        (Some(ECONNRESET), _) => Cause::UpstreamReset,
        (Some(EAGAIN), true) => Cause::AcceptQueueFull,
        (Some(ENETUNREACH | EHOSTUNREACH | EHOSTDOWN), false) => Cause::ConnectUnreachable,
        _ => Cause::ConnectError,
    }
}

/// The cause of one attempt, or `None` when the attempt did not fail
/// (the upstream answered a non-error status, or the attempt is still open).
///
/// Flags decide first; the log text refines (errno, TLS, header errors),
/// and is the only source for the errno of an asynchronous connect failure.
pub fn classify(o: &Observation) -> Option<Cause> {
    let cause = classify_inner(o);
    tracing::debug!(?cause, end = ?o.end, kind = ?o.kind(), errno = ?o.errno(), "upstream_cause: classified attempt");
    cause
}

fn classify_inner(o: &Observation) -> Option<Cause> {
    let kind = o.kind();

    if o.end == End::NoLivePeer || kind == MessageKind::NoLiveUpstreams {
        // nginx says "no live upstreams" for both: the peers tell.
        return Some(if o.saturated {
            Cause::MaxConnsReached
        } else {
            Cause::NoLiveUpstreams
        });
    }
    if kind == MessageKind::ResolveFailed {
        return Some(Cause::ResolveFailed);
    }
    if let Some(s) = o.session {
        return session_cause(o, &s);
    }

    // The upstream's own response was received: it is either a pass-through
    // (or next_upstream on http_5xx), or it broke after the header was sent.
    if o.header_received {
        if o.header_sent && body_failed(o) {
            return Some(Cause::ResponseTruncated);
        }
        // A client that leaves after the header arrived is not
        // `client_closed` (the upstream did answer).
        return (o.status >= 500 || (o.end == End::Failed && o.status == 0)).then_some(Cause::ViaUpstream);
    }

    if o.end == End::Finalized && (o.client_error || kind == MessageKind::ClientClosed) {
        return Some(Cause::ClientClosed);
    }

    if o.end == End::Open {
        return None;
    }

    // Timeouts: the flags are set before free; the text comes after.
    if o.write_timedout || o.read_timedout || kind == MessageKind::TimedOut {
        let phase = o.phase();
        return Some(
            if !o.connected && !matches!(phase, Some(Phase::SendRequest | Phase::ReadHeader)) {
                Cause::ConnectTimeout
            } else if o.write_timedout || phase == Some(Phase::SendRequest) {
                if o.read_timedout || phase == Some(Phase::ReadHeader) {
                    Cause::ReadTimeout
                } else {
                    Cause::SendTimeout
                }
            } else {
                Cause::ReadTimeout
            },
        );
    }

    match kind {
        MessageKind::ConnectFailed => return Some(connect_cause(o.errno(), o.unix())),
        MessageKind::NoConnections => return Some(Cause::ConnectError),
        // HTTP/2: nginx ends these with "invalid header" for the upstream
        // core, so the text alone tells a refused or reset stream.
        MessageKind::StreamRefused | MessageKind::GoAway => return Some(Cause::StreamRefused),
        MessageKind::StreamReset => return Some(Cause::UpstreamReset),
        MessageKind::TlsVerify => return Some(Cause::TlsVerifyFailed),
        MessageKind::TlsHandshake => return Some(Cause::TlsHandshakeFailed),
        MessageKind::TooBigHeader => return Some(Cause::HeaderTooBig),
        MessageKind::InvalidHeader => return Some(Cause::InvalidHeader),
        _ => {}
    }

    if o.ssl && !o.ssl_handshaked && !o.connected {
        return Some(Cause::TlsHandshakeFailed);
    }

    if o.write_error || (kind == MessageKind::SendFailed && !o.read_eof) {
        return Some(Cause::SendFailed);
    }

    if o.read_error || kind == MessageKind::RecvFailed {
        // A reset that nginx happened to read while the request was still
        // going out broke the sending: nginx reports whichever of its read
        // and write events it handled first.
        return Some(if o.errno() == Some(EPIPE) || (o.connected && !o.request_sent) {
            Cause::SendFailed
        } else {
            Cause::UpstreamReset
        });
    }
    if o.read_eof || kind == MessageKind::PrematurelyClosed {
        return Some(Cause::UpstreamPrematurelyClosed);
    }

    if o.buffer_full {
        return Some(Cause::HeaderTooBig);
    }

    if o.end == End::Finalized {
        // Finalized without a failure signal before a header: nginx gave up
        // on its own (e.g. an internal error), nothing the upstream did.
        return None;
    }

    // A failure with no flag and no recognised text.
    Some(if !o.connected && o.phase().is_none_or(|p| p == Phase::Connect) {
        connect_cause(o.errno(), o.unix())
    } else if o.header_bytes > 0 {
        Cause::InvalidHeader
    } else {
        Cause::UpstreamPrematurelyClosed
    })
}

/// Stream: the cause of an attempt of a TCP or UDP session. Before the
/// session is connected, failures are those of any proxied connection
/// (connect, TLS); after, nginx's stream proxy ends most of them as a
/// success (`$status` 200), and only the flags and counters tell.
fn session_cause(o: &Observation, s: &Session) -> Option<Cause> {
    let kind = o.kind();
    let phase = o.phase();
    if o.end == End::Open {
        return None;
    }
    if !o.connected {
        // The connect and TLS failures, read as HTTP's (the flags and
        // the text mean the same there).
        let before = Observation { session: None, ..*o };
        return classify_inner(&before).or((o.end == End::Failed).then_some(Cause::ConnectError));
    }
    if s.udp {
        // Reads of a UDP upstream fail only with an ICMP error: a port
        // unreachable is the refused connect of UDP (nginx ends the
        // session as `udp done`, 200). nginx marks a missing response
        // as a read error itself, before "upstream timed out".
        if kind == MessageKind::TimedOut || (o.read_error && !o.read_eof && kind == MessageKind::Other) {
            return Some(Cause::UdpNoResponse);
        }
        if o.read_error || kind == MessageKind::RecvFailed || kind == MessageKind::ConnectFailed {
            return Some(connect_cause(o.errno().or(Some(ECONNREFUSED)), false));
        }
        return None;
    }
    if o.write_error || kind == MessageKind::SendFailed || phase == Some(Phase::ProxySend) {
        return Some(Cause::SendFailed);
    }
    if o.read_error || kind == MessageKind::RecvFailed || phase == Some(Phase::ProxyRead) {
        return Some(Cause::UpstreamReset);
    }
    if o.read_eof {
        // The upstream closed first. Without a byte of its own, after
        // the client's: the backend crashed on the request (the TCP
        // form of `upstream_prematurely_closed`). Else the session ended
        // as it should.
        return (!s.upstream_sent && s.client_sent).then_some(Cause::UpstreamClosedSilent);
    }
    // Nobody closed, nothing failed, nginx ended it as a success:
    // proxy_timeout passed with no byte either way ("connection timed
    // out", at info). (`status` is the session's, once nginx set it: its
    // own 500 after an internal error is not an idle session.)
    let ended = s.client_ended || o.client_error || s.shutdown;
    (o.end == End::Finalized && !ended && matches!(o.status, 0 | 200)).then_some(Cause::IdleTimeout)
}

/// The body broke after the header: only nginx's own text says so, since a
/// close-delimited body ends with a normal EOF.
fn body_failed(o: &Observation) -> bool {
    matches!(
        o.kind(),
        MessageKind::PrematurelyClosed
            | MessageKind::RecvFailed
            | MessageKind::TimedOut
            | MessageKind::InvalidHeader
            | MessageKind::StreamRefused
            | MessageKind::GoAway
            | MessageKind::StreamReset
    )
}

/// The final cause of a request: the cause of its last attempt, if that
/// attempt's outcome made the response (`final_status` is what nginx sent).
///
/// An upstream's own error status passed through is `via_upstream`; a
/// gateway failure is reported whatever status nginx ended up sending for it
/// (502, 504, or 500 for a local connect error).
pub fn final_cause(last: Option<Cause>, final_status: u16) -> Option<Cause> {
    match last {
        Some(Cause::ViaUpstream) if final_status < 500 => None,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::parse_message;

    fn msg(t: &str) -> Option<Message> {
        Some(parse_message(t.as_bytes()))
    }

    fn failed() -> Observation {
        Observation {
            end: End::Failed,
            connection: true,
            ..Default::default()
        }
    }

    /// One test case per row of the cause table (docs/reference.md), built the way nginx presents it.
    #[test]
    fn every_spec_row() {
        let rows: Vec<(Observation, Cause)> = vec![
            (
                Observation { message: msg("connect() failed (111: Connection refused) while connecting to upstream"), ..failed() },
                Cause::ConnectRefused,
            ),
            (
                Observation {
                    connection: false,
                    message: msg("connect() to 127.0.0.1:1 failed (111: Connection refused) while connecting to upstream"),
                    ..failed()
                },
                Cause::ConnectRefused,
            ),
            (
                Observation { message: msg("connect() failed (113: No route to host) while connecting to upstream"), ..failed() },
                Cause::ConnectUnreachable,
            ),
            (
                Observation { message: msg("connect() to 10.0.0.1:80 failed (101: Network is unreachable) while connecting to upstream"), ..failed() },
                Cause::ConnectUnreachable,
            ),
            (
                Observation {
                    connection: false,
                    message: msg("connect() to 127.0.0.1:80 failed (99: Cannot assign requested address) while connecting to upstream"),
                    ..failed()
                },
                Cause::ConnectError,
            ),
            (
                // proxy_bind fails: no free(FAILED), nginx finalizes with 500
                Observation {
                    end: End::Finalized,
                    message: msg("bind(127.0.0.1:8080) failed (98: Address already in use) while connecting to upstream"),
                    ..Default::default()
                },
                Cause::ConnectError,
            ),
            (
                Observation { write_timedout: true, message: msg("upstream timed out (110: Connection timed out) while connecting to upstream"), ..failed() },
                Cause::ConnectTimeout,
            ),
            (
                Observation { write_timedout: true, ssl: true, ..failed() },
                Cause::ConnectTimeout,
            ),
            (
                Observation { ssl: true, read_eof: true, message: msg("SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number) while SSL handshaking to upstream"), ..failed() },
                Cause::TlsHandshakeFailed,
            ),
            (
                Observation { ssl: true, read_eof: true, ..failed() },
                Cause::TlsHandshakeFailed,
            ),
            (
                Observation { ssl: true, ssl_handshaked: true, message: msg("upstream SSL certificate verify error: (18:self-signed certificate) while SSL handshaking to upstream"), ..failed() },
                Cause::TlsVerifyFailed,
            ),
            (
                Observation { connected: true, write_error: true, message: msg("writev() failed (32: Broken pipe) while sending request to upstream"), ..failed() },
                Cause::SendFailed,
            ),
            (
                Observation { connected: true, message: msg("writev() failed (104: Connection reset by peer) while sending request to upstream"), ..failed() },
                Cause::SendFailed,
            ),
            (
                // the RST was read before the request (a large body) was all sent
                Observation { connected: true, read_error: true, message: msg("recv() failed (104: Connection reset by peer) while reading response header from upstream"), ..failed() },
                Cause::SendFailed,
            ),
            (
                Observation { connected: true, write_timedout: true, message: msg("upstream timed out (110: Connection timed out) while sending request to upstream"), ..failed() },
                Cause::SendTimeout,
            ),
            (
                Observation { connected: true, request_sent: true, read_eof: true, message: msg("upstream prematurely closed connection while reading response header from upstream"), ..failed() },
                Cause::UpstreamPrematurelyClosed,
            ),
            (
                Observation { connected: true, request_sent: true, read_eof: true, header_bytes: 7, ..failed() },
                Cause::UpstreamPrematurelyClosed,
            ),
            (
                Observation { connected: true, request_sent: true, read_error: true, message: msg("recv() failed (104: Connection reset by peer) while reading response header from upstream"), ..failed() },
                Cause::UpstreamReset,
            ),
            (
                Observation { connected: true, request_sent: true, read_timedout: true, message: msg("upstream timed out (110: Connection timed out) while reading response header from upstream"), ..failed() },
                Cause::ReadTimeout,
            ),
            (
                Observation { connected: true, request_sent: true, header_bytes: 20, message: msg("upstream sent invalid header: \"X\\x01...\" while reading response header from upstream"), ..failed() },
                Cause::InvalidHeader,
            ),
            (
                Observation { connected: true, request_sent: true, header_bytes: 20, message: msg("upstream sent no valid HTTP/1.0 header while reading response header from upstream"), ..failed() },
                Cause::InvalidHeader,
            ),
            (
                Observation { connected: true, request_sent: true, header_bytes: 4096, buffer_full: true, message: msg("upstream sent too big header while reading response header from upstream"), ..failed() },
                Cause::HeaderTooBig,
            ),
            (
                Observation { connected: true, request_sent: true, header_bytes: 4096, buffer_full: true, ..failed() },
                Cause::HeaderTooBig,
            ),
            (Observation { end: End::NoLivePeer, ..Default::default() }, Cause::NoLiveUpstreams),
            (Observation { end: End::NoLivePeer, saturated: true, ..Default::default() }, Cause::MaxConnsReached),
            (
                Observation {
                    connection: false,
                    message: msg("connect() to unix:/run/php/php-fpm.sock failed (11: Resource temporarily unavailable) while connecting to upstream"),
                    ..failed()
                },
                Cause::AcceptQueueFull,
            ),
            (
                Observation {
                    connected: true,
                    request_sent: true,
                    header_bytes: 13,
                    message: msg("upstream rejected request with error 7 while reading response header from upstream"),
                    ..failed()
                },
                Cause::StreamRefused,
            ),
            (
                Observation { end: End::Open, message: msg("backend.test could not be resolved (3: Host not found)"), ..Default::default() },
                Cause::ResolveFailed,
            ),
            (
                Observation { end: End::Open, message: msg("no resolver defined to resolve backend.test"), ..Default::default() },
                Cause::ResolveFailed,
            ),
            (
                Observation { end: End::Finalized, connected: true, header_received: true, status: 502, ..Default::default() },
                Cause::ViaUpstream,
            ),
            (
                Observation { end: End::Failed, connected: true, header_received: true, status: 0, ..Default::default() },
                Cause::ViaUpstream,
            ),
            (
                Observation {
                    end: End::Finalized,
                    connected: true,
                    header_received: true,
                    header_sent: true,
                    read_eof: true,
                    status: 200,
                    message: msg("upstream prematurely closed connection while reading upstream"),
                    ..Default::default()
                },
                Cause::ResponseTruncated,
            ),
            (
                Observation { end: End::Finalized, connected: true, request_sent: true, client_error: true, ..Default::default() },
                Cause::ClientClosed,
            ),
            (
                Observation { end: End::Finalized, connected: true, message: msg("client prematurely closed connection while reading upstream"), ..Default::default() },
                Cause::ClientClosed,
            ),
            // stream's own (the rest of stream's rows: `stream_sessions`)
            (
                Observation { read_eof: true, ..session(End::Finalized, true, TCP_SENT, None) },
                Cause::UpstreamClosedSilent,
            ),
            (session(End::Finalized, true, TCP_SENT, None), Cause::IdleTimeout),
            (
                Observation { read_error: true, ..session(End::Failed, true, Session { udp: true, ..TCP_SENT }, Some("upstream timed out (110: Connection timed out) while proxying connection")) },
                Cause::UdpNoResponse,
            ),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (i, (o, want)) in rows.iter().enumerate() {
            assert_eq!(classify(o), Some(*want), "row {i}: {o:?}");
            seen.insert(*want);
        }
        assert_eq!(seen.len(), Cause::ALL.len(), "every cause has a row");
    }

    #[test]
    fn successes_are_not_failures() {
        let ok = Observation {
            end: End::Finalized,
            connected: true,
            request_sent: true,
            header_received: true,
            status: 200,
            ..Default::default()
        };
        assert_eq!(classify(&ok), None);
        let not_found = Observation { status: 404, ..ok };
        assert_eq!(classify(&not_found), None);
        assert_eq!(classify(&Observation::default()), None);
        // finalized before any header and without any failure signal: not ours
        let internal = Observation {
            end: End::Finalized,
            connected: true,
            ..Default::default()
        };
        assert_eq!(classify(&internal), None);
        // a close-delimited body ends with a plain EOF: complete, not truncated
        let close_delimited = Observation {
            header_sent: true,
            read_eof: true,
            ..ok
        };
        assert_eq!(classify(&close_delimited), None);
        // the client left while the body streamed: the upstream did answer
        let client_left = Observation {
            header_sent: true,
            client_error: true,
            message: msg("client prematurely closed connection while sending to client"),
            ..ok
        };
        assert_eq!(classify(&client_left), None);
    }

    #[test]
    fn flags_win_over_missing_text() {
        // The async connect error's errno is only in the text; without it
        // the attempt still counts as a connect failure.
        assert_eq!(classify(&failed()), Some(Cause::ConnectError));
        // read timeout text arrives after free: flags alone decide
        let o = Observation {
            connected: true,
            request_sent: true,
            read_timedout: true,
            ..failed()
        };
        assert_eq!(classify(&o), Some(Cause::ReadTimeout));
        let o = Observation {
            connected: true,
            request_sent: true,
            read_error: true,
            ..failed()
        };
        assert_eq!(classify(&o), Some(Cause::UpstreamReset));
        let o = Observation {
            connected: true,
            header_bytes: 3,
            ..failed()
        };
        assert_eq!(classify(&o), Some(Cause::InvalidHeader));
        let o = Observation {
            connected: true,
            ..failed()
        };
        assert_eq!(classify(&o), Some(Cause::UpstreamPrematurelyClosed));
    }

    /// Unix-domain peers: each errno nginx can log for `connect() to unix:`.
    #[test]
    fn unix_socket_errnos() {
        for (errno, text, want) in [
            (2, "No such file or directory", Cause::ConnectRefused),
            (111, "Connection refused", Cause::ConnectRefused),
            (11, "Resource temporarily unavailable", Cause::AcceptQueueFull),
            (13, "Permission denied", Cause::ConnectError),
            (20, "Not a directory", Cause::ConnectError),
            (24, "Too many open files", Cause::ConnectError),
            (113, "No route to host", Cause::ConnectError),
        ] {
            let o = Observation {
                connection: false,
                message: msg(&format!(
                    "connect() to unix:/run/php/php-fpm.sock failed ({errno}: {text}) while connecting to upstream"
                )),
                ..failed()
            };
            assert_eq!(classify(&o), Some(want), "unix {errno}");
        }
        // the same errnos over TCP
        for (errno, want) in [
            (2, Cause::ConnectError),
            (11, Cause::ConnectError),
            (13, Cause::ConnectError),
            (111, Cause::ConnectRefused),
            (113, Cause::ConnectUnreachable),
            (104, Cause::UpstreamReset),
        ] {
            let o = Observation {
                connection: false,
                message: msg(&format!(
                    "connect() to 127.0.0.1:9000 failed ({errno}: x) while connecting to upstream"
                )),
                ..failed()
            };
            assert_eq!(classify(&o), Some(want), "tcp {errno}");
        }
    }

    /// HTTP/2 and gRPC upstreams: nginx ends every one of these with
    /// NGX_HTTP_UPSTREAM_INVALID_HEADER, so the flags are those of an
    /// invalid header and the text decides. Texts as
    /// ngx_http_grpc_module.c and ngx_http_proxy_v2_module.c write them.
    #[test]
    fn http2_texts() {
        let h2 = |text: &str| Observation {
            connected: true,
            request_sent: true,
            header_bytes: 9,
            message: msg(&format!("{text} while reading response header from upstream")),
            ..failed()
        };
        for (text, want) in [
            ("upstream rejected request with error 7", Cause::StreamRefused),
            ("upstream rejected request with error 2", Cause::UpstreamReset),
            ("upstream rejected request with error 0", Cause::UpstreamReset),
            ("upstream rejected request with error 8", Cause::UpstreamReset),
            ("upstream rejected request with error 4294967295", Cause::UpstreamReset),
            (
                "upstream rejected request with error 99999999999999999999999",
                Cause::UpstreamReset,
            ),
            ("upstream sent goaway with error 0", Cause::StreamRefused),
            ("upstream sent goaway with error 2", Cause::StreamRefused),
            (
                "upstream sent goaway with error 18446744073709551615",
                Cause::StreamRefused,
            ),
            ("upstream prematurely closed stream", Cause::UpstreamPrematurelyClosed),
            (
                "upstream sent goaway frame with invalid length: 3",
                Cause::InvalidHeader,
            ),
            (
                "upstream sent rst stream frame with invalid length: 5",
                Cause::InvalidHeader,
            ),
            ("upstream sent unexpected :status \"103\"", Cause::InvalidHeader),
            ("upstream sent no :status header", Cause::InvalidHeader),
            ("upstream sent invalid :status \"2000\"", Cause::InvalidHeader),
            ("upstream sent duplicate :status header", Cause::InvalidHeader),
            ("upstream sent too large http2 frame: 16777215", Cause::InvalidHeader),
            ("upstream sent too short http2 frame", Cause::InvalidHeader),
            ("upstream sent unexpected http2 frame: 0", Cause::InvalidHeader),
            ("upstream sent unexpected push promise frame", Cause::InvalidHeader),
            ("upstream sent frame for unknown stream 3", Cause::InvalidHeader),
            ("upstream sent frame for closed stream 1", Cause::InvalidHeader),
            ("upstream sent invalid http2 table index: 70", Cause::InvalidHeader),
            (
                "upstream sent http2 table index with continuation flag",
                Cause::InvalidHeader,
            ),
            ("upstream sent invalid encoded header", Cause::InvalidHeader),
            ("upstream sent truncated http2 header", Cause::InvalidHeader),
            (
                "upstream sent zero http2 dynamic table size update: 0",
                Cause::InvalidHeader,
            ),
            ("upstream sent too large window update", Cause::InvalidHeader),
            (
                "upstream sent settings frame with too large initial window size: 2147483648",
                Cause::InvalidHeader,
            ),
            ("upstream sent too many settings frames", Cause::InvalidHeader),
            ("upstream sent too many ping frames", Cause::InvalidHeader),
            (
                "upstream violated stream flow control, received 70000 data frame with window 65535",
                Cause::InvalidHeader,
            ),
            (
                "upstream violated connection flow control, received 70000 data frame with window 65535",
                Cause::InvalidHeader,
            ),
        ] {
            assert_eq!(classify(&h2(text)), Some(want), "{text}");
        }
        // after the header went to the client, a reset or refused stream
        // truncated the body
        for text in [
            "upstream rejected request with error 2",
            "upstream sent goaway with error 0",
            "upstream prematurely closed stream",
        ] {
            let o = Observation {
                end: End::Finalized,
                header_received: true,
                header_sent: true,
                status: 200,
                message: msg(&format!("{text} while reading upstream")),
                ..h2(text)
            };
            assert_eq!(classify(&o), Some(Cause::ResponseTruncated), "{text}");
        }
    }

    #[test]
    fn saturation_is_not_death() {
        let busy = Observation {
            end: End::NoLivePeer,
            ..Default::default()
        };
        assert_eq!(classify(&busy), Some(Cause::NoLiveUpstreams));
        assert_eq!(
            classify(&Observation {
                saturated: true,
                ..busy
            }),
            Some(Cause::MaxConnsReached)
        );
        // the tap's "no live upstreams" line, recorded on the same attempt
        let heard = Observation {
            saturated: true,
            message: msg("no live upstreams while connecting to upstream"),
            ..busy
        };
        assert_eq!(classify(&heard), Some(Cause::MaxConnsReached));
    }

    /// A stream session's attempt as nginx's stream proxy leaves it in
    /// `peer.free`, with the line nginx logged (as the tap hears it).
    fn session(end: End, connected: bool, s: Session, line: Option<&str>) -> Observation {
        Observation {
            end,
            connection: true,
            connected,
            message: line.and_then(msg),
            session: Some(s),
            ..Default::default()
        }
    }

    const TCP_SENT: Session = Session {
        udp: false,
        client_sent: true,
        upstream_sent: false,
        client_ended: false,
        shutdown: false,
    };

    /// Every row of what nginx's stream proxy does with a failing backend,
    /// and the success paths around them.
    #[test]
    fn stream_sessions() {
        let udp = Session { udp: true, ..TCP_SENT };
        let rows: Vec<(Observation, Option<Cause>)> = vec![
            // nothing listens: refused connect, 502
            (
                session(End::Failed, false, TCP_SENT, Some("connect() failed (111: Connection refused) while connecting to upstream")),
                Some(Cause::ConnectRefused),
            ),
            (
                Observation { write_timedout: true, ..session(End::Failed, false, TCP_SENT, Some("upstream timed out (110: Connection timed out) while connecting to upstream")) },
                Some(Cause::ConnectTimeout),
            ),
            (
                session(End::Failed, false, TCP_SENT, Some("SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number) while SSL handshaking to upstream")),
                Some(Cause::TlsHandshakeFailed),
            ),
            (
                session(End::Failed, false, TCP_SENT, Some("upstream SSL certificate verify error: (18:self-signed certificate) while SSL handshaking to upstream")),
                Some(Cause::TlsVerifyFailed),
            ),
            // read the client's bytes, closed without one: 200, info only
            (
                Observation { read_eof: true, ..session(End::Finalized, true, TCP_SENT, None) },
                Some(Cause::UpstreamClosedSilent),
            ),
            // ... having answered: the session ended as it should
            (
                Observation { read_eof: true, ..session(End::Finalized, true, Session { upstream_sent: true, ..TCP_SENT }, None) },
                None,
            ),
            // ... before the client said anything (a server-speaks-first
            // protocol's backend that closes at once is not told apart)
            (
                Observation { read_eof: true, ..session(End::Finalized, true, Session { client_sent: false, ..TCP_SENT }, None) },
                None,
            ),
            // read, then reset: 200, an error line
            (
                Observation { read_eof: true, read_error: true, ..session(End::Finalized, true, TCP_SENT, Some("recv() failed (104: Connection reset by peer) while proxying and reading from upstream")) },
                Some(Cause::UpstreamReset),
            ),
            (
                Observation { write_error: true, ..session(End::Finalized, true, TCP_SENT, Some("send() failed (32: Broken pipe) while proxying and sending to upstream")) },
                Some(Cause::SendFailed),
            ),
            // read, then silence: proxy_timeout, 200, info only
            (session(End::Finalized, true, TCP_SENT, None), Some(Cause::IdleTimeout)),
            (session(End::Finalized, true, Session { client_sent: false, ..TCP_SENT }, None), Some(Cause::IdleTimeout)),
            // the client closed first, or left broken, or the worker exits
            (session(End::Finalized, true, Session { client_ended: true, ..TCP_SENT }, None), None),
            (Observation { client_error: true, ..session(End::Finalized, true, TCP_SENT, None) }, None),
            (session(End::Finalized, true, Session { shutdown: true, ..TCP_SENT }, None), None),
            // nginx's own error after the connect (its 500), not an idle end
            (Observation { status: 500, ..session(End::Finalized, true, TCP_SENT, None) }, None),
            (Observation { status: 200, ..session(End::Finalized, true, TCP_SENT, None) }, Some(Cause::IdleTimeout)),
            // two dead peers with max_fails=1, second session
            (
                Observation { end: End::NoLivePeer, session: Some(TCP_SENT), message: msg("no live upstreams while connecting to upstream"), ..Default::default() },
                Some(Cause::NoLiveUpstreams),
            ),
            (
                Observation { end: End::NoLivePeer, saturated: true, session: Some(TCP_SENT), ..Default::default() },
                Some(Cause::MaxConnsReached),
            ),
            (
                Observation { end: End::Open, session: Some(TCP_SENT), message: msg("db.test could not be resolved (3: Host not found)"), ..Default::default() },
                Some(Cause::ResolveFailed),
            ),
            // UDP to a closed port: ICMP, `udp done`, 200
            (
                Observation { read_eof: true, read_error: true, ..session(End::Failed, true, udp, Some("recv() failed (111: Connection refused) while proxying and reading from upstream")) },
                Some(Cause::ConnectRefused),
            ),
            (Observation { read_eof: true, read_error: true, ..session(End::Failed, true, udp, None) }, Some(Cause::ConnectRefused)),
            // UDP to a silent server with proxy_responses: 502
            (
                Observation { read_error: true, ..session(End::Failed, true, udp, Some("upstream timed out (110: Connection timed out) while proxying connection")) },
                Some(Cause::UdpNoResponse),
            ),
            (Observation { read_error: true, ..session(End::Failed, true, udp, None) }, Some(Cause::UdpNoResponse)),
            // UDP answered, or ended by its timeout with what it expected
            (session(End::Finalized, true, Session { upstream_sent: true, ..udp }, None), None),
            (session(End::Finalized, true, udp, None), None),
            // still open
            (session(End::Open, true, TCP_SENT, None), None),
        ];
        for (i, (o, want)) in rows.iter().enumerate() {
            assert_eq!(classify(o), *want, "row {i}: {o:?}");
        }
    }

    #[test]
    fn stream_actions_are_phases() {
        assert_eq!(
            Phase::from_action(b"proxying and reading from upstream"),
            Phase::ProxyRead
        );
        assert_eq!(
            Phase::from_action(b"proxying and sending to upstream"),
            Phase::ProxySend
        );
        assert_eq!(Phase::from_action(b"proxying connection"), Phase::Proxying);
        assert_eq!(Phase::from_action(b"proxying and reading from client"), Phase::Other);
        assert_eq!(Phase::from_action(b"proxying and sending to client"), Phase::Other);
    }

    #[test]
    fn final_cause_of_a_request() {
        assert_eq!(
            final_cause(Some(Cause::ConnectRefused), 502),
            Some(Cause::ConnectRefused)
        );
        assert_eq!(final_cause(Some(Cause::ConnectError), 500), Some(Cause::ConnectError));
        assert_eq!(final_cause(Some(Cause::ViaUpstream), 502), Some(Cause::ViaUpstream));
        assert_eq!(final_cause(Some(Cause::ViaUpstream), 200), None);
        assert_eq!(final_cause(None, 200), None);
    }
}
