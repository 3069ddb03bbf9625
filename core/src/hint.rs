//! Hints refined by what the attempt's text tells beyond its code: the
//! errno and the kind of peer of a connect failure, the HTTP/2 frame that
//! refused or reset a stream.

use crate::cause::Cause;
use crate::errno::{EACCES, EADDRNOTAVAIL, ECONNREFUSED, ECONNRESET, EMFILE, ENFILE, ENOENT, EPERM};
use crate::text::{Message, MessageKind};

/// The hint for `cause`, refined by the message of the attempt it was
/// classified from; the cause's own hint when the text tells nothing more.
pub fn hint(cause: Cause, message: Option<&Message>) -> &'static str {
    let Some(m) = message else {
        return cause.hint();
    };
    let refined = match (cause, m.kind, m.errno, m.unix) {
        (Cause::ConnectRefused, _, Some(ENOENT), true) => Some(
            "no socket file at the upstream's unix path: the backend (PHP-FPM, a socket-activated service) is not running or listens elsewhere",
        ),
        (Cause::ConnectRefused, _, Some(ECONNREFUSED), true) => Some(
            "the unix socket file exists but nothing accepts on it: the backend died or was stopped and left its socket file behind",
        ),
        (Cause::ConnectError, _, Some(EACCES), true) => Some(
            "nginx's worker user may not open the unix socket: check the permissions of the socket and its directories against nginx's user",
        ),
        (Cause::ConnectError, _, Some(EACCES | EPERM), false) => Some(
            "the connect was denied on the nginx host: a security policy (SELinux httpd_can_network_connect) or a firewall rule blocks it",
        ),
        (Cause::ConnectError, _, Some(EMFILE | ENFILE), _) => {
            Some("nginx ran out of file descriptors: raise worker_rlimit_nofile and the system's open-file limits")
        }
        (Cause::ConnectError, _, Some(EADDRNOTAVAIL), false) => Some(
            "no free local port for the connection: too many connections to the upstream in TIME_WAIT; enable upstream keepalive",
        ),
        (Cause::ConnectError, MessageKind::NoConnections, ..) => Some(
            "nginx's worker had no free connection for the upstream: raise worker_connections, or find what holds connections open",
        ),
        (Cause::UpstreamReset, MessageKind::ConnectFailed, Some(ECONNRESET), _) => Some(
            "reset as it was made: the upstream's listener closed with the connection still in its accept queue (its process exited or restarted)",
        ),
        (Cause::StreamRefused, MessageKind::GoAway, ..) => Some(
            "the HTTP/2 upstream is closing the connection (GOAWAY) and did not process the request: it is restarting; safe to retry",
        ),
        (Cause::StreamRefused, MessageKind::StreamRefused, ..) => Some(
            "the HTTP/2 upstream refused the stream (REFUSED_STREAM) unprocessed: it is at its concurrent-stream limit; safe to retry",
        ),
        (Cause::UpstreamReset, MessageKind::StreamReset, ..) => Some(
            "the HTTP/2 upstream reset the stream (RST_STREAM) without answering: its handler failed; the error code is in the detail",
        ),
        _ => None,
    };
    refined.unwrap_or(cause.hint())
}

/// Every refined hint, for the tests that hold them to the rules of hints
/// and the documentation to the code.
pub const REFINED: usize = 11;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::parse_message;

    fn of(cause: Cause, text: &str) -> &'static str {
        hint(cause, Some(&parse_message(text.as_bytes())))
    }

    /// One message per refinement, with the cause it refines.
    pub(crate) fn cases() -> Vec<(Cause, &'static str)> {
        vec![
            (Cause::ConnectRefused, "connect() to unix:/run/php/fpm.sock failed (2: No such file or directory) while connecting to upstream"),
            (Cause::ConnectRefused, "connect() to unix:/run/php/fpm.sock failed (111: Connection refused) while connecting to upstream"),
            (Cause::ConnectError, "connect() to unix:/run/php/fpm.sock failed (13: Permission denied) while connecting to upstream"),
            (Cause::ConnectError, "connect() to 10.0.0.1:80 failed (13: Permission denied) while connecting to upstream"),
            (Cause::ConnectError, "connect() to 127.0.0.1:80 failed (24: Too many open files) while connecting to upstream"),
            (Cause::ConnectError, "connect() to 127.0.0.1:80 failed (99: Cannot assign requested address) while connecting to upstream"),
            (Cause::ConnectError, "512 worker_connections are not enough while connecting to upstream"),
            (Cause::UpstreamReset, "connect() failed (104: Connection reset by peer) while connecting to upstream"),
            (Cause::StreamRefused, "upstream sent goaway with error 0 while reading response header from upstream"),
            (Cause::StreamRefused, "upstream rejected request with error 7 while reading response header from upstream"),
            (Cause::UpstreamReset, "upstream rejected request with error 2 while reading response header from upstream"),
        ]
    }

    #[test]
    fn each_refinement_differs_and_follows_the_rules_of_hints() {
        let mut seen = std::collections::BTreeSet::new();
        let cases = cases();
        assert_eq!(cases.len(), REFINED);
        for (cause, text) in cases {
            let h = of(cause, text);
            assert_ne!(h, cause.hint(), "{text}");
            assert!(seen.insert(h), "{h}");
            assert!(h.len() > 30 && h.len() < 140, "{h}");
            assert!(
                h.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
                "{h}"
            );
            assert!(!h.ends_with('.') && h.contains(": "), "{h}");
        }
        assert!(of(
            Cause::ConnectError,
            "connect() to unix:/x failed (13: Permission denied)"
        )
        .contains("nginx's user"));
    }

    #[test]
    fn the_reference_lists_every_refined_hint_under_its_code() {
        let readme = include_str!("../../docs/reference.md");
        for (cause, text) in cases() {
            let h = of(cause, text);
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", cause.code())) && l.ends_with(&format!("| {h} |")));
            assert!(row.is_some(), "docs/reference.md has no row for {cause}: {h}");
        }
    }

    #[test]
    fn nothing_more_to_tell_keeps_the_code_hint() {
        for c in Cause::ALL {
            assert_eq!(hint(c, None), c.hint());
        }
        assert_eq!(
            of(
                Cause::ConnectRefused,
                "connect() failed (111: Connection refused) while connecting to upstream"
            ),
            Cause::ConnectRefused.hint()
        );
        assert_eq!(
            of(
                Cause::AcceptQueueFull,
                "connect() to unix:/x failed (11: Resource temporarily unavailable)"
            ),
            Cause::AcceptQueueFull.hint()
        );
        assert_eq!(
            of(Cause::ConnectError, "connect() to unix:/x failed (20: Not a directory)"),
            Cause::ConnectError.hint()
        );
        // the text must agree with the cause: a refined hint never lands on another code
        assert_eq!(
            of(Cause::ReadTimeout, "upstream sent goaway with error 0"),
            Cause::ReadTimeout.hint()
        );
    }
}
