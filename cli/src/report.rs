//! `requests` (JSON lines) and `prometheus` (the module's metric names, in
//! node_exporter's textfile format).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use upstream_cause_core::errlog::format_time;
use upstream_cause_core::metrics::{
    self, escape_label, ATTEMPTS_HELP, OTHER, RESPONSES_HELP, STREAM_ATTEMPTS_HELP, STREAM_SESSIONS_HELP,
};
use upstream_cause_core::Cause;

use crate::assemble::{Request, Source};
use crate::summary::KEYS_MAX;

fn lossy(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

#[derive(Serialize)]
struct Failure<'a> {
    cause: &'static str,
    peer: Cow<'a, str>,
    upstream: Cow<'a, str>,
}

#[derive(Serialize)]
struct Json<'a> {
    time: String,
    last: String,
    /// The pod, container or host a prefix named; `null` for none.
    origin: Option<Cow<'a, str>>,
    pid: u32,
    connection: u64,
    client: Cow<'a, str>,
    server: Cow<'a, str>,
    host: Cow<'a, str>,
    request: Cow<'a, str>,
    subrequest: Option<Cow<'a, str>>,
    /// A stream session's transport (`tcp`, `udp`); `null` for HTTP.
    stream: Option<&'static str>,
    upstream: Cow<'a, str>,
    peer: Cow<'a, str>,
    cause: &'static str,
    causes: &'a str,
    detail: Cow<'a, str>,
    hint: &'a str,
    status: Option<u16>,
    attempts: Option<u32>,
    failures: Vec<Failure<'a>>,
    source: &'static str,
    unknown: Vec<&'static str>,
}

/// One failed request as a JSON object, on one line.
pub fn json_line(r: &Request) -> String {
    let j = Json {
        time: format_time(r.time),
        last: format_time(r.last),
        origin: (!r.origin.is_empty()).then(|| lossy(&r.origin)),
        pid: r.pid,
        connection: r.conn,
        client: lossy(&r.client),
        server: lossy(&r.server),
        host: lossy(&r.host),
        request: lossy(&r.request),
        subrequest: (!r.subrequest.is_empty()).then(|| lossy(&r.subrequest)),
        stream: r.stream.map(|t| t.name()),
        upstream: lossy(&r.upstream),
        peer: lossy(r.attempts.last().map_or(&[][..], |a| &a.peer)),
        cause: r.cause.code(),
        causes: &r.causes,
        detail: lossy(&r.detail),
        hint: &r.hint,
        status: r.status,
        attempts: r.attempts_made,
        failures: r
            .attempts
            .iter()
            .map(|a| Failure {
                cause: a.cause.code(),
                peer: lossy(&a.peer),
                upstream: lossy(&a.upstream),
            })
            .collect(),
        source: match r.source {
            Source::Nginx => "nginx",
            Source::Module => "module",
        },
        unknown: r.unknown(),
    };
    serde_json::to_string(&j).unwrap_or_default()
}

/// One family of attempts (`upstream`, `peer`, `cause`) and one of
/// final outcomes (`upstream`, `cause`, `status`): HTTP's or stream's.
#[derive(Default)]
struct Families {
    attempts: BTreeMap<(Vec<u8>, Vec<u8>, Cause), u64>,
    responses: BTreeMap<(Vec<u8>, Cause, u16), u64>,
    /// Requests or sessions from nginx's text alone whose status it does
    /// not say.
    unknown_status: u64,
}

/// The counters, as the module keeps them.
#[derive(Default)]
pub struct Counters {
    http: Families,
    stream: Families,
}

/// A label value as the module's scrape gives it: whole up to
/// [`metrics::LABEL_MAX`] bytes, else shortened with a hash of the whole (two long
/// values never merge); bytes that are not UTF-8 as U+FFFD.
fn label(v: &[u8]) -> Vec<u8> {
    if v.is_empty() {
        return b"-".to_vec();
    }
    let l = metrics::label(v);
    String::from_utf8_lossy(l.as_bytes()).into_owned().into_bytes()
}

/// Series a family holds; past it, new ones are counted under `peer="other"`
/// (responses: `upstream="other"`), then `upstream="other",peer="other"`, as
/// the module's zone does when it is full.
const SERIES_MAX: usize = KEYS_MAX;

impl Counters {
    pub fn add(&mut self, r: &Request) {
        match r.stream {
            Some(_) => self.stream.add(r),
            None => self.http.add(r),
        }
    }

    pub fn render(&self) -> Vec<u8> {
        let mut o = Vec::new();
        self.http.render(
            &mut o,
            (ATTEMPTS_HELP, b"nginx_upstream_cause_total"),
            (RESPONSES_HELP, b"nginx_upstream_cause_responses_total"),
            "failed requests",
        );
        // as the module's scrape: stream's families where there is stream
        if self.stream.seen() {
            self.stream.render(
                &mut o,
                (STREAM_ATTEMPTS_HELP, b"nginx_upstream_cause_stream_total"),
                (STREAM_SESSIONS_HELP, b"nginx_upstream_cause_stream_sessions_total"),
                "failed sessions",
            );
        }
        o
    }
}

impl Families {
    fn seen(&self) -> bool {
        !self.attempts.is_empty() || !self.responses.is_empty() || self.unknown_status > 0
    }

    fn add(&mut self, r: &Request) {
        // a resolver failure makes no attempt: the module counts it in the responses only
        for a in r.attempts.iter().filter(|a| a.cause != Cause::ResolveFailed) {
            let mut key = (label(&a.upstream), label(&a.peer), a.cause);
            if self.attempts.len() >= SERIES_MAX && !self.attempts.contains_key(&key) {
                key.1 = OTHER.to_vec();
                if !self.attempts.contains_key(&key) {
                    key.0 = OTHER.to_vec();
                }
            }
            *self.attempts.entry(key).or_default() += 1;
        }
        match r.status {
            Some(status) => {
                let upstream = r.attempts.last().map_or(&[][..], |a| &a.upstream);
                let mut key = (label(upstream), r.cause, status);
                if self.responses.len() >= SERIES_MAX && !self.responses.contains_key(&key) {
                    key.0 = OTHER.to_vec();
                }
                *self.responses.entry(key).or_default() += 1;
            }
            None => self.unknown_status += 1,
        }
    }

    fn render(&self, o: &mut Vec<u8>, attempts: (&[u8], &[u8]), outcomes: (&[u8], &[u8]), what: &str) {
        o.extend_from_slice(attempts.0);
        for ((u, p, c), n) in &self.attempts {
            o.extend_from_slice(attempts.1);
            o.extend_from_slice(b"{upstream=\"");
            escape_label(o, u);
            o.extend_from_slice(b"\",peer=\"");
            escape_label(o, p);
            o.extend_from_slice(format!("\",cause=\"{c}\"}} {n}\n").as_bytes());
        }
        o.extend_from_slice(outcomes.0);
        for ((u, c, s), n) in &self.responses {
            o.extend_from_slice(outcomes.1);
            o.extend_from_slice(b"{upstream=\"");
            escape_label(o, u);
            o.extend_from_slice(format!("\",cause=\"{c}\",status=\"{s}\"}} {n}\n").as_bytes());
        }
        if self.unknown_status > 0 {
            o.extend_from_slice(
                format!(
                    "# upstream-cause: {} {what} from nginx's lines alone are not in {}: nginx's text does not say \
                     their status\n",
                    self.unknown_status,
                    String::from_utf8_lossy(outcomes.1),
                )
                .as_bytes(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::Attempt;

    fn failed(upstream: Vec<u8>, peer: Vec<u8>) -> Request {
        let attempt = Attempt {
            cause: Cause::ConnectRefused,
            peer,
            upstream,
        };
        Request::sample(0, vec![attempt])
    }

    #[test]
    fn series_are_bounded_as_the_module_s_are() {
        let mut c = Counters::default();
        for i in 0..(SERIES_MAX + 100) {
            let peer = format!("10.0.{}.{}:80", i / 256, i % 256).into_bytes();
            c.add(&failed([b"http://".as_slice(), &peer].concat(), peer));
        }
        assert_eq!(c.http.attempts.len(), SERIES_MAX + 1);
        assert_eq!(
            c.http.attempts[&(OTHER.to_vec(), OTHER.to_vec(), Cause::ConnectRefused)],
            100
        );
    }

    #[test]
    fn labels_are_utf8_and_long_ones_keep_apart() {
        let mut c = Counters::default();
        let long = |tail: &str| format!("http://{}{tail}", "é".repeat(100)).into_bytes();
        c.add(&failed(long("a"), b"\xff\xfe:80".to_vec()));
        c.add(&failed(long("b"), b"p".to_vec()));
        let out = String::from_utf8(c.render()).expect("UTF-8");
        assert!(out.contains("peer=\"\u{fffd}\u{fffd}:80\""), "{out}");
        let ups: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("nginx_upstream_cause_total"))
            .collect();
        assert_eq!(ups.len(), 2, "{out}");
        assert!(ups.iter().all(|l| l.contains('~')), "{out}");
    }
}
