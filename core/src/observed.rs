//! What the module observed of one request's upstream attempts, and the
//! only code that writes it.
//!
//! The shell hears two kinds of signal, in any order: an error line nginx
//! logged for the attempt nginx is on ([`Observed::hear`]), and how the
//! attempt ended, seen by the balancer wrapper ([`Observed::end`]). Both
//! land here, indexed like nginx's `r->upstream_states`. What the request
//! reports is worked out from this by [`crate::summary::summarize`].
//!
//! `U` is the shell's handle of an upstream group (the counters' label):
//! the core only stores it.

use crate::classify::{End, Observation};
use crate::text::{extract_message, parse_message, parse_split, Message, MessageKind, Phase};

/// Attempts recorded per request; later ones render from nginx's own
/// state only (`-` or `via_upstream`).
pub const MAX_ATTEMPTS: usize = 16;
/// Bytes of nginx error text kept for the latest failed attempt.
pub const DETAIL_MAX: usize = 480;
/// Appended to the detail of a failure on a connection from the keepalive
/// cache: its usual fix differs (the upstream's idle timeout is shorter
/// than nginx's reuse of the connection).
pub const REUSED_MARK: &[u8] = b" (reused keepalive connection)";

/// Where a failure belongs: an attempt (its index in nginx's upstream
/// states), or before any attempt was made (the resolver).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    BeforeAny,
    Attempt(usize),
}

/// An upstream error line, parsed, with the text it was parsed from.
#[derive(Clone, Copy, Debug)]
pub struct Heard<'a> {
    pub message: Message,
    pub text: &'a [u8],
}

/// The error line nginx wrote, if it is one the module listens to: a line
/// written while nginx works on an upstream (`action` is nginx's
/// `log->action`), or a resolver or "no live upstreams" failure, which
/// nginx logs outside those phases.
pub fn heard<'a>(line: &'a [u8], action: &[u8]) -> Option<Heard<'a>> {
    let text = extract_message(line, Some(action));
    let phase = Phase::from_action(action);
    // With an action, the text ends in the " while ACTION" nginx wrote
    // after the message: it is split there, the phase known already.
    const WHILE: &[u8] = b" while ";
    let message = match text.len().checked_sub(WHILE.len() + action.len()) {
        Some(cut) if !action.is_empty() && text[cut..].starts_with(WHILE) && text.ends_with(action) => {
            parse_split(&text[..cut], Some(phase))
        }
        _ => parse_message(text),
    };
    let upstream_phase = !matches!(phase, Phase::Other);
    let anywhere = matches!(message.kind, MessageKind::ResolveFailed | MessageKind::NoLiveUpstreams);
    (upstream_phase || anywhere).then_some(Heard { message, text })
}

/// One attempt, once anything was observed of it.
#[derive(Clone, Copy, Debug)]
pub struct Watched<U> {
    pub obs: Observation,
    /// The group the attempt was made to, if the balancer wrapper saw it.
    pub upstream: Option<U>,
}

/// The request's records: made at its first failure signal.
#[derive(Clone, Copy)]
pub struct Observed<U> {
    attempts: [Option<Watched<U>>; MAX_ATTEMPTS],
    /// A failure before any attempt (only the resolver's is kept).
    before_any: Option<Message>,
    detail: [u8; DETAIL_MAX],
    detail_len: usize,
    detail_at: At,
    /// Bumped by every write: a summary made from an older state is stale.
    changes: u32,
}

impl<U: Copy> Default for Observed<U> {
    fn default() -> Self {
        Self::new()
    }
}

impl<U: Copy> Observed<U> {
    pub const fn new() -> Self {
        Observed {
            attempts: [None; MAX_ATTEMPTS],
            before_any: None,
            detail: [0; DETAIL_MAX],
            detail_len: 0,
            detail_at: At::BeforeAny,
            changes: 0,
        }
    }

    /// An error line nginx logged while on attempt `at`.
    ///
    /// An attempt keeps its first recognised message (nginx may log more
    /// after the one that failed it), which also becomes the request's
    /// detail. Before any attempt, only a resolver failure counts.
    pub fn hear(&mut self, at: At, heard: Heard<'_>) {
        let kind = heard.message.kind;
        match at {
            At::BeforeAny => {
                if self.before_any.is_some() || kind != MessageKind::ResolveFailed {
                    return;
                }
                self.before_any = Some(heard.message);
            }
            At::Attempt(idx) => {
                let Some(slot) = self.attempts.get_mut(idx) else { return };
                let w = slot.get_or_insert(Watched {
                    obs: Observation::default(),
                    upstream: None,
                });
                if let Some(m) = w.obs.message {
                    if m.kind != MessageKind::Other || kind == MessageKind::Other {
                        return;
                    }
                }
                w.obs.message = Some(heard.message);
            }
        }
        self.keep_detail(at, heard.text);
        self.changes = self.changes.wrapping_add(1);
        self.mark_reused(at);
    }

    /// How attempt `idx` ended, with what the wrapper saw of it (`obs`,
    /// whose `message` is ignored: the one heard is kept).
    pub fn end(&mut self, idx: usize, end: End, obs: Observation, upstream: Option<U>) {
        let Some(slot) = self.attempts.get_mut(idx) else { return };
        let message = slot.and_then(|w| w.obs.message);
        *slot = Some(Watched {
            obs: Observation { end, message, ..obs },
            upstream,
        });
        self.changes = self.changes.wrapping_add(1);
        self.mark_reused(At::Attempt(idx));
    }

    /// What was observed of attempt `idx`, if anything.
    pub fn watched(&self, idx: usize) -> Option<&Watched<U>> {
        self.attempts.get(idx)?.as_ref()
    }

    /// The failure before any attempt, if one was heard.
    pub fn before_any(&self) -> Option<Message> {
        self.before_any
    }

    /// The parsed message of `at`'s failure, which refines the hint.
    pub fn message(&self, at: At) -> Option<Message> {
        match at {
            At::BeforeAny => self.before_any,
            At::Attempt(idx) => self.watched(idx)?.obs.message,
        }
    }

    /// nginx's text of `at`'s failure, if it is the one kept (the latest
    /// attempt whose text was heard).
    pub fn detail(&self, at: At) -> &[u8] {
        if self.detail_at == at {
            &self.detail[..self.detail_len]
        } else {
            &[]
        }
    }

    /// Changes so far: equal counts mean equal records.
    pub fn changes(&self) -> u32 {
        self.changes
    }

    fn keep_detail(&mut self, at: At, text: &[u8]) {
        let n = text.len().min(DETAIL_MAX);
        self.detail[..n].copy_from_slice(&text[..n]);
        self.detail_len = n;
        self.detail_at = at;
    }

    /// Marks the detail as a failure on a reused connection, if it is
    /// `at`'s and that attempt was on one.
    fn mark_reused(&mut self, at: At) {
        let reused = match at {
            At::Attempt(idx) => self.watched(idx).is_some_and(|w| w.obs.reused),
            At::BeforeAny => false,
        };
        let len = self.detail_len;
        if !reused || self.detail_at != at || len == 0 || self.detail[..len].ends_with(REUSED_MARK) {
            return;
        }
        let cut = len.min(DETAIL_MAX - REUSED_MARK.len());
        self.detail[cut..cut + REUSED_MARK.len()].copy_from_slice(REUSED_MARK);
        self.detail_len = cut + REUSED_MARK.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &[u8] = b"2026/11/25 10:00:00 [error] 1#1: *5 connect() failed (111: Connection refused) \
        while connecting to upstream, client: 127.0.0.1, server: , request: \"GET / HTTP/1.1\"";

    fn heard_ok(line: &[u8], action: &[u8]) -> Heard<'static> {
        let line: &'static [u8] = Box::leak(line.to_vec().into_boxed_slice());
        heard(line, action).expect("heard")
    }

    fn on_reused_connection() -> Observation {
        Observation {
            reused: true,
            ..Default::default()
        }
    }

    fn refused() -> Heard<'static> {
        heard_ok(REFUSED, b"connecting to upstream")
    }

    fn line(msg: &str) -> Vec<u8> {
        format!("2026/11/25 10:00:00 [error] 1#1: *5 {msg}, client: 127.0.0.1").into_bytes()
    }

    #[test]
    fn the_split_at_the_action_reads_as_the_whole_text_does() {
        let lines: [(&[u8], &[u8]); 6] = [
            (b"2026/11/25 10:00:00 [error] 1#0: *5 connect() failed (111: Connection refused) while connecting to upstream, client: 1.2.3.4, server: x, request: \"GET / HTTP/1.1\"", b"connecting to upstream"),
            (b"2026/11/25 10:00:00 [error] 1#0: *5 upstream sent \" while connecting to upstream\" while reading response header from upstream, client: 1.2.3.4", b"reading response header from upstream"),
            (b"2026/11/25 10:00:00 [error] 1#0: *5 upstream timed out (110: Connection timed out) while reading upstream, client: 1.2.3.4", b"reading upstream"),
            (b"2026/11/25 10:00:00 [error] 1#0: *5 no live upstreams while connecting to upstream, client: 1.2.3.4", b"connecting to upstream"),
            (b"2026/11/25 10:00:00 [error] 1#0: *5 recv() failed (104: Connection reset by peer), client: 1.2.3.4", b"reading upstream"),
            (b"2026/11/25 10:00:00 [error] 1#0: *5 upstream prematurely closed connection while sending to client, client: 1.2.3.4", b"sending to client"),
        ];
        for (line, action) in lines {
            let text = extract_message(line, Some(action));
            let whole = parse_message(text);
            match heard(line, action) {
                Some(h) => {
                    assert_eq!(h.message, whole, "{}", String::from_utf8_lossy(line));
                    assert_eq!(h.text, text);
                }
                None => assert!(matches!(Phase::from_action(action), Phase::Other)),
            }
        }
    }

    #[test]
    fn only_upstream_phases_and_the_two_anywhere_failures_are_heard() {
        assert!(heard(REFUSED, b"connecting to upstream").is_some());
        let other = line("open() \"/x\" failed (2: No such file or directory)");
        assert!(heard(&other, b"").is_none());
        assert!(heard(&other, b"sending to client").is_none());
        let nx = line("nosuch.test could not be resolved (3: Host not found)");
        assert_eq!(heard(&nx, b"").unwrap().message.kind, MessageKind::ResolveFailed);
        let none = line("no live upstreams while connecting to upstream");
        assert_eq!(heard(&none, b"").unwrap().message.kind, MessageKind::NoLiveUpstreams);
    }

    #[test]
    fn the_message_text_stops_at_the_action() {
        let h = refused();
        assert_eq!(
            h.text,
            &b"connect() failed (111: Connection refused) while connecting to upstream"[..]
        );
    }

    #[test]
    fn a_heard_line_records_the_attempt_and_its_detail() {
        let mut o = Observed::<u8>::new();
        o.hear(At::Attempt(0), refused());
        let w = o.watched(0).unwrap();
        assert_eq!(w.obs.end, End::Open);
        assert_eq!(w.obs.message.unwrap().errno, Some(111));
        assert_eq!(o.detail(At::Attempt(0)), refused().text);
        assert_eq!(o.detail(At::Attempt(1)), b"");
        assert_eq!(o.changes(), 1);
    }

    #[test]
    fn an_attempt_keeps_its_first_recognised_message() {
        let mut o = Observed::<u8>::new();
        let other = line("something odd while reading response header from upstream");
        o.hear(
            At::Attempt(0),
            heard_ok(&other, b"reading response header from upstream"),
        );
        assert_eq!(o.message(At::Attempt(0)).unwrap().kind, MessageKind::Other);
        o.hear(At::Attempt(0), refused());
        assert_eq!(o.message(At::Attempt(0)).unwrap().kind, MessageKind::ConnectFailed);
        let closed = line("upstream prematurely closed connection while reading response header from upstream");
        o.hear(
            At::Attempt(0),
            heard_ok(&closed, b"reading response header from upstream"),
        );
        assert_eq!(o.message(At::Attempt(0)).unwrap().kind, MessageKind::ConnectFailed);
        o.hear(
            At::Attempt(0),
            heard_ok(&other, b"reading response header from upstream"),
        );
        assert_eq!(o.message(At::Attempt(0)).unwrap().kind, MessageKind::ConnectFailed);
        assert_eq!(o.detail(At::Attempt(0)), refused().text);
        assert_eq!(o.changes(), 2);
    }

    #[test]
    fn before_any_attempt_only_the_resolver_counts_and_only_once() {
        let mut o = Observed::<u8>::new();
        let none = line("no live upstreams");
        o.hear(At::BeforeAny, heard_ok(&none, b""));
        assert_eq!(o.before_any(), None);
        let nx = line("a.test could not be resolved (3: Host not found)");
        let nx2 = line("b.test could not be resolved (2: Server failure)");
        o.hear(At::BeforeAny, heard_ok(&nx, b""));
        o.hear(At::BeforeAny, heard_ok(&nx2, b""));
        assert_eq!(o.before_any().unwrap().kind, MessageKind::ResolveFailed);
        assert_eq!(
            o.detail(At::BeforeAny),
            &b"a.test could not be resolved (3: Host not found)"[..]
        );
        assert_eq!(o.message(At::BeforeAny), o.before_any());
    }

    #[test]
    fn the_end_keeps_the_heard_message_and_replaces_the_rest() {
        let mut o = Observed::<u8>::new();
        o.hear(At::Attempt(1), refused());
        let seen = Observation {
            connection: true,
            message: None,
            ..Default::default()
        };
        o.end(1, End::Failed, seen, Some(7));
        let w = o.watched(1).unwrap();
        assert_eq!((w.obs.end, w.obs.connection, w.upstream), (End::Failed, true, Some(7)));
        assert_eq!(w.obs.message.unwrap().kind, MessageKind::ConnectFailed);
        o.end(1, End::Finalized, Observation::default(), None);
        let w = o.watched(1).unwrap();
        assert_eq!((w.obs.end, w.obs.connection, w.upstream), (End::Finalized, false, None));
        assert!(w.obs.message.is_some());
        assert!(o.watched(0).is_none());
    }

    #[test]
    fn attempts_past_the_table_are_not_recorded() {
        let mut o = Observed::<u8>::new();
        o.hear(At::Attempt(MAX_ATTEMPTS), refused());
        o.end(MAX_ATTEMPTS, End::Failed, Observation::default(), None);
        assert!(o.watched(MAX_ATTEMPTS).is_none());
        assert_eq!(o.changes(), 0);
        assert_eq!(o.detail(At::Attempt(MAX_ATTEMPTS)), b"");
    }

    #[test]
    fn a_failure_on_a_reused_connection_says_so_once_in_its_detail() {
        let mut o = Observed::<u8>::new();
        o.hear(At::Attempt(0), refused());
        let reused = on_reused_connection();
        o.end(0, End::Failed, reused, None);
        o.end(0, End::Failed, reused, None);
        let mut want = refused().text.to_vec();
        want.extend_from_slice(REUSED_MARK);
        assert_eq!(o.detail(At::Attempt(0)), &want[..]);
        // the end first, then the text: marked as well
        let mut o = Observed::<u8>::new();
        o.end(0, End::Failed, reused, None);
        o.hear(At::Attempt(0), refused());
        assert_eq!(o.detail(At::Attempt(0)), &want[..]);
        // a fresh connection's detail is left as it is
        let mut o = Observed::<u8>::new();
        o.hear(At::Attempt(0), refused());
        o.end(0, End::Failed, Observation::default(), None);
        assert_eq!(o.detail(At::Attempt(0)), refused().text);
    }

    #[test]
    fn a_long_detail_is_cut_to_make_room_for_the_mark() {
        let mut o = Observed::<u8>::new();
        let long = format!(
            "upstream timed out (110: Connection timed out) {} while reading response header from upstream",
            "x".repeat(600)
        );
        let l = line(&long);
        o.hear(At::Attempt(0), heard_ok(&l, b"reading response header from upstream"));
        assert_eq!(o.detail(At::Attempt(0)).len(), DETAIL_MAX);
        let reused = on_reused_connection();
        o.end(0, End::Failed, reused, None);
        let d = o.detail(At::Attempt(0));
        assert_eq!(d.len(), DETAIL_MAX);
        assert!(d.ends_with(REUSED_MARK));
    }

    #[test]
    fn the_detail_is_the_latest_failed_attempts() {
        let mut o = Observed::<u8>::new();
        o.hear(At::Attempt(0), refused());
        let closed = line("upstream prematurely closed connection while reading response header from upstream");
        o.hear(
            At::Attempt(1),
            heard_ok(&closed, b"reading response header from upstream"),
        );
        assert_eq!(o.detail(At::Attempt(0)), b"");
        assert!(o.detail(At::Attempt(1)).starts_with(b"upstream prematurely closed"));
    }
}
