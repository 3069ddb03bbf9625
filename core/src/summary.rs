//! A request's outcome, worked out once: what the variables, the header,
//! the enriched line and the counters all report.
//!
//! In go what the module observed ([`Observed`], or nothing for a request
//! where no failure signal arrived), nginx's upstream states in order
//! ([`State`], one per `r->upstream_states` entry), the group nginx is on
//! now and the status nginx answered with. Out comes a [`Summary`].

use crate::cause::Cause;
use crate::classify::{classify, final_cause, End, Observation};
use crate::observed::{At, Observed};
use crate::render::Entry;

/// Entries listed per request (`$upstream_cause_list`, `causes=`).
pub const LIST_MAX: usize = 64;

/// What nginx recorded of one attempt: an entry of `r->upstream_states`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// `state->status`, 0 if none yet.
    pub status: u16,
    /// A whole response header arrived (`state->header_time` is set).
    pub header_received: bool,
    /// The state names a peer; the empty state nginx inserts when a
    /// request moves to another upstream has none.
    pub has_peer: bool,
}

/// The cause the request reports, and where it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome<U> {
    pub cause: Cause,
    pub at: At,
    /// The group to count it under (`None`: the shell's fallback label).
    pub upstream: Option<U>,
}

/// Everything a request reports.
#[derive(Clone, Copy, Debug)]
pub struct Summary<U> {
    entries: [Entry; LIST_MAX],
    len: usize,
    outcome: Option<Outcome<U>>,
    attempts: usize,
    current: Option<U>,
}

impl<U: Copy> Summary<U> {
    fn empty(current: Option<U>) -> Self {
        Summary {
            entries: [Entry::Separator; LIST_MAX],
            len: 0,
            outcome: None,
            attempts: 0,
            current,
        }
    }

    /// One entry per upstream state, at most [`LIST_MAX`]; empty when
    /// there is nothing to list.
    pub fn entries(&self) -> &[Entry] {
        &self.entries[..self.len]
    }

    /// The request's cause: its last attempt's, if that made the response,
    /// or a failure before any attempt.
    pub fn outcome(&self) -> Option<Outcome<U>> {
        self.outcome
    }

    /// The cause code of `$upstream_cause` and the cause header.
    pub fn cause(&self) -> Option<Cause> {
        self.outcome.map(|o| o.cause)
    }

    /// Where `$upstream_cause_detail`'s text comes from: the outcome's, if
    /// it is a failure of the gateway (an upstream's own 5xx has none).
    pub fn detail_at(&self) -> Option<At> {
        self.outcome.filter(|o| o.cause.is_gateway_failure()).map(|o| o.at)
    }

    /// Attempts made (the listed ones; none for a failure before any).
    pub fn attempts(&self) -> usize {
        self.attempts
    }

    /// Listed attempts that failed, each with its index and cause (a
    /// failure before any attempt is listed, but is not an attempt).
    pub fn failures(&self) -> impl Iterator<Item = (usize, Cause)> + '_ {
        let attempts = match self.outcome {
            Some(Outcome { at: At::BeforeAny, .. }) => &[][..],
            _ => self.entries(),
        };
        attempts.iter().enumerate().filter_map(|(i, e)| match *e {
            Entry::Attempt(Some(c)) => Some((i, c)),
            _ => None,
        })
    }

    /// The group attempt `idx` was made to: the one its balancer wrapper
    /// saw (in `observed`, what the summary was made from), else the one
    /// the request is on.
    pub fn upstream(&self, idx: usize, observed: Option<&Observed<U>>) -> Option<U> {
        upstream_of(observed, idx, self.current)
    }

    /// Whether there is anything to count.
    pub fn counts(&self) -> bool {
        self.outcome.is_some() || self.failures().next().is_some()
    }
}

fn upstream_of<U: Copy>(observed: Option<&Observed<U>>, idx: usize, current: Option<U>) -> Option<U> {
    observed
        .and_then(|o| o.watched(idx))
        .and_then(|w| w.upstream)
        .or(current)
}

/// An attempt's observation completed with what nginx knows of it by now.
fn completed(obs: &Observation, st: &State) -> Observation {
    // An attempt seen only through its log line (no balancer wrapper:
    // `proxy_pass http://$var` to an address) ends when nginx stores the
    // status it failed with.
    let end = match obs.end {
        End::Open if st.status >= 500 && !st.header_received => End::Failed,
        end => end,
    };
    Observation {
        end,
        header_received: obs.header_received || st.header_received,
        status: st.status,
        ..*obs
    }
}

/// The cause of attempt `idx`: classified from what was observed of it,
/// else an upstream's own 5xx, else none.
fn cause_of<U: Copy>(observed: Option<&Observed<U>>, idx: usize, st: &State) -> Option<Cause> {
    match observed.and_then(|o| o.watched(idx)) {
        Some(w) => classify(&completed(&w.obs, st)),
        None => (st.header_received && st.status >= 500).then_some(Cause::ViaUpstream),
    }
}

/// Works out what the request reports. `states` are nginx's upstream
/// states in order; `current` is the group nginx is on now; `status` is
/// the response status nginx sends.
pub fn summarize<U: Copy>(
    observed: Option<&Observed<U>>,
    states: impl ExactSizeIterator<Item = State>,
    current: Option<U>,
    status: u16,
) -> Summary<U> {
    let mut s = Summary::empty(current);
    let n = states.len();
    if n == 0 {
        // Before any attempt: the one failure there can be (the resolver).
        let pre = observed.and_then(Observed::before_any);
        let cause = pre.and_then(|m| {
            classify(&Observation {
                end: End::Failed,
                message: Some(m),
                ..Default::default()
            })
        });
        if let Some(cause) = cause {
            s.entries[0] = Entry::Attempt(Some(cause));
            s.len = 1;
            s.outcome = Some(Outcome {
                cause,
                at: At::BeforeAny,
                upstream: current,
            });
        }
        return s;
    }
    let mut unwatched_failure = false;
    let mut last = None;
    for (i, st) in states.enumerate() {
        let cause = cause_of(observed, i, &st);
        let watched = observed.is_some_and(|o| o.watched(i).is_some());
        unwatched_failure |= st.status >= 500 && !st.header_received;
        if i < LIST_MAX {
            s.entries[i] = if !st.has_peer && !watched {
                Entry::Separator
            } else {
                Entry::Attempt(cause)
            };
        }
        if i + 1 == n {
            last = cause;
        }
    }
    // Failed attempts and nothing observed: nobody watched them (they were
    // made where `upstream_cause` is off): nothing to list.
    s.len = if observed.is_none() && unwatched_failure {
        0
    } else {
        n.min(LIST_MAX)
    };
    s.attempts = s.entries().iter().filter(|e| matches!(e, Entry::Attempt(_))).count();
    s.outcome = final_cause(last, status).map(|cause| Outcome {
        cause,
        at: At::Attempt(n - 1),
        upstream: upstream_of(observed, n - 1, current),
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{heard, MAX_ATTEMPTS};
    use crate::render::render_list;

    fn st(status: u16, header_received: bool) -> State {
        State {
            status,
            header_received,
            has_peer: true,
        }
    }

    const SEPARATOR: State = State {
        status: 0,
        header_received: false,
        has_peer: false,
    };

    fn list<U: Copy>(s: &Summary<U>) -> String {
        let mut out = Vec::new();
        render_list(&mut out, s.entries());
        String::from_utf8(out).unwrap()
    }

    fn line(msg: &str) -> Vec<u8> {
        format!("2026/11/25 10:00:00 [error] 1#1: *5 {msg}, client: 127.0.0.1").into_bytes()
    }

    const ACTION: &[u8] = b"connecting to upstream";

    /// An observed request with a refused connect on attempt 0.
    fn refused_first() -> Observed<u8> {
        let mut o = Observed::new();
        let l = line("connect() failed (111: Connection refused) while connecting to upstream");
        o.hear(At::Attempt(0), heard(&l, ACTION).unwrap());
        o.end(0, End::Failed, Observation::default(), Some(1));
        o
    }

    #[test]
    fn a_request_that_made_no_attempt_and_heard_nothing_reports_nothing() {
        let s = summarize::<u8>(None, [].into_iter(), None, 200);
        assert_eq!(
            (s.entries(), s.outcome(), s.attempts(), s.counts()),
            (&[][..], None, 0, false)
        );
    }

    #[test]
    fn a_success_lists_a_dash_and_has_no_cause() {
        let s = summarize::<u8>(None, [st(200, true)].into_iter(), None, 200);
        assert_eq!(list(&s), "-");
        assert_eq!(s.outcome(), None);
        assert_eq!(s.attempts(), 1);
        assert!(!s.counts());
    }

    #[test]
    fn an_upstreams_own_5xx_is_via_upstream_without_a_detail() {
        let s = summarize::<u8>(None, [st(503, true)].into_iter(), Some(3), 503);
        assert_eq!(list(&s), "via_upstream");
        let o = s.outcome().unwrap();
        assert_eq!(
            (o.cause, o.at, o.upstream),
            (Cause::ViaUpstream, At::Attempt(0), Some(3))
        );
        assert_eq!(s.detail_at(), None);
        // turned into a success by error_page: listed, not the outcome
        let s = summarize::<u8>(None, [st(503, true)].into_iter(), None, 200);
        assert_eq!(list(&s), "via_upstream");
        assert_eq!(s.outcome(), None);
        assert!(s.counts());
    }

    #[test]
    fn a_refused_then_successful_retry() {
        let o = refused_first();
        let s = summarize(Some(&o), [st(502, false), st(200, true)].into_iter(), Some(2), 200);
        assert_eq!(list(&s), "connect_refused, -");
        assert_eq!(s.outcome(), None);
        assert_eq!(s.failures().collect::<Vec<_>>(), vec![(0, Cause::ConnectRefused)]);
        assert_eq!((s.upstream(0, Some(&o)), s.upstream(1, Some(&o))), (Some(1), Some(2)));
        assert_eq!(s.attempts(), 2);
    }

    #[test]
    fn the_last_failed_attempt_is_the_outcome_with_its_detail() {
        let o = refused_first();
        let s = summarize(Some(&o), [st(502, false)].into_iter(), Some(2), 502);
        let out = s.outcome().unwrap();
        assert_eq!(
            (out.cause, out.at, out.upstream),
            (Cause::ConnectRefused, At::Attempt(0), Some(1))
        );
        assert_eq!(s.detail_at(), Some(At::Attempt(0)));
        assert_eq!(s.cause(), Some(Cause::ConnectRefused));
    }

    #[test]
    fn a_gateway_failure_is_reported_whatever_status_nginx_sent() {
        let o = refused_first();
        let s = summarize(Some(&o), [st(502, false)].into_iter(), None, 200);
        assert_eq!(s.cause(), Some(Cause::ConnectRefused));
    }

    #[test]
    fn an_attempt_heard_only_in_the_log_fails_when_nginx_stores_its_status() {
        let mut o = Observed::<u8>::new();
        let l = line("connect() failed (111: Connection refused) while connecting to upstream");
        o.hear(At::Attempt(0), heard(&l, ACTION).unwrap());
        // still open: no status yet
        let s = summarize(Some(&o), [st(0, false)].into_iter(), None, 0);
        assert_eq!(list(&s), "-");
        // nginx stored 502: failed
        let s = summarize(Some(&o), [st(502, false)].into_iter(), None, 502);
        assert_eq!(s.cause(), Some(Cause::ConnectRefused));
        // the fallback group of an attempt no wrapper saw
        assert_eq!(s.outcome().unwrap().upstream, None);
    }

    #[test]
    fn attempts_made_where_the_module_is_off_are_not_listed() {
        let s = summarize::<u8>(None, [st(502, false), st(502, false)].into_iter(), None, 502);
        assert_eq!(s.entries(), &[][..]);
        assert_eq!((s.outcome(), s.attempts(), s.counts()), (None, 0, false));
        // an observed request lists them, unclassified
        let o = Observed::<u8>::new();
        let s = summarize(Some(&o), [st(502, false)].into_iter(), None, 502);
        assert_eq!(list(&s), "-");
    }

    #[test]
    fn a_move_to_another_upstream_is_a_separator() {
        let o = refused_first();
        let s = summarize(
            Some(&o),
            [st(502, false), SEPARATOR, st(200, true)].into_iter(),
            None,
            200,
        );
        assert_eq!(list(&s), "connect_refused : -");
        assert_eq!(s.attempts(), 2);
    }

    #[test]
    fn the_resolver_failing_before_any_attempt() {
        let mut o = Observed::<u8>::new();
        let l = line("nosuch.test could not be resolved (3: Host not found)");
        o.hear(At::BeforeAny, heard(&l, b"").unwrap());
        let s = summarize(Some(&o), [].into_iter(), Some(4), 502);
        assert_eq!(list(&s), "resolve_failed");
        let out = s.outcome().unwrap();
        assert_eq!(
            (out.cause, out.at, out.upstream),
            (Cause::ResolveFailed, At::BeforeAny, Some(4))
        );
        assert_eq!(s.attempts(), 0);
        assert_eq!(s.failures().count(), 0);
        assert!(s.counts());
        assert_eq!(s.detail_at(), Some(At::BeforeAny));
        // once an attempt exists, its states speak
        let s = summarize(Some(&o), [st(200, true)].into_iter(), None, 200);
        assert_eq!((list(&s), s.outcome()), ("-".to_string(), None));
    }

    #[test]
    fn no_live_peer_and_saturation() {
        let mut o = Observed::<u8>::new();
        o.end(0, End::NoLivePeer, Observation::default(), None);
        let s = summarize(Some(&o), [st(502, false)].into_iter(), None, 502);
        assert_eq!(s.cause(), Some(Cause::NoLiveUpstreams));
        let full = Observation {
            saturated: true,
            ..Default::default()
        };
        o.end(0, End::NoLivePeer, full, None);
        let s = summarize(Some(&o), [st(502, false)].into_iter(), None, 502);
        assert_eq!(s.cause(), Some(Cause::MaxConnsReached));
    }

    #[test]
    fn the_list_stops_at_its_limit_and_the_outcome_is_still_the_last_attempt() {
        let o = refused_first();
        let mut states = vec![st(502, false); LIST_MAX + 6];
        *states.last_mut().unwrap() = st(504, true);
        let s = summarize(Some(&o), states.into_iter(), Some(9), 504);
        assert_eq!(s.entries().len(), LIST_MAX);
        assert_eq!(s.attempts(), LIST_MAX);
        let out = s.outcome().unwrap();
        assert_eq!(
            (out.cause, out.at, out.upstream),
            (Cause::ViaUpstream, At::Attempt(LIST_MAX + 5), Some(9))
        );
        // unobserved attempts past the first one are not classified
        assert_eq!(s.failures().count(), 1);
    }

    #[test]
    fn only_recorded_attempts_keep_their_own_group() {
        let mut o = Observed::<u8>::new();
        for i in 0..MAX_ATTEMPTS {
            o.end(i, End::Failed, Observation::default(), Some(i as u8));
        }
        let mut states = vec![st(502, false); MAX_ATTEMPTS + 2];
        *states.last_mut().unwrap() = st(503, true);
        let s = summarize(Some(&o), states.into_iter(), Some(100), 503);
        assert_eq!(s.upstream(3, Some(&o)), Some(3));
        assert_eq!(s.upstream(MAX_ATTEMPTS, Some(&o)), Some(100));
        assert_eq!(s.outcome().unwrap().upstream, Some(100));
    }
}
