//! The live view's document (`upstream_cause_status`'s JSON, version 1,
//! and the page's content): nginx's own view of each peer joined with what
//! the zone recorded of its failures.
//!
//! The module gathers [`Inputs`] from its zones and nginx's upstream
//! groups; the offline classifier gathers them from logs. [`build`] joins
//! them; serde writes the JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Kind, PeerRecord, Recent, Window, WINDOWS};
use crate::cause::Cause;
use crate::errlog::civil_from_days;
use crate::metrics::{label, Family, Series};
use crate::peers::Peer;

/// The schema's version: a change that breaks a reader gets a new one.
pub const VERSION: u32 = 1;

/// The document's `source`: a running nginx's zones, or logs.
pub const SOURCE_NGINX: &str = "nginx";
pub const SOURCE_LOGS: &str = "logs";

/// Where a group's peer states come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// The group's shared zone (`zone` in its `upstream` block): what
    /// every worker's balancer sees.
    Zone,
    /// The answering worker's own copy: each worker counts its own
    /// `fails` and `conns`.
    Worker,
    /// Not known: the document is made from logs, or the group is not in
    /// the running configuration (a peer named by a variable, a group
    /// since removed).
    Unknown,
}

/// One peer as nginx's balancer holds it now (round robin's data, which
/// `hash`, `ip_hash`, `least_conn`, `random` and `keepalive` share).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerConf {
    /// The address (`$upstream_addr`'s form).
    pub name: Vec<u8>,
    /// The `server` line's address, as written (a host name, say).
    pub server: Vec<u8>,
    pub backup: bool,
    pub weight: u64,
    /// Its counters and limits (`down`, `fails`, `checked`, `conns`, ...).
    pub peer: Peer,
}

impl PeerConf {
    /// nginx's rule ([`Peer::failed`]): a peer with `max_fails` failures
    /// counted is skipped until `fail_timeout` has passed since the last;
    /// then it is tried again. `Some(until)` while skipped.
    pub fn unavailable_until(&self, now_s: u64) -> Option<u64> {
        let p = &self.peer;
        p.failed(now_s as i64)
            .then(|| u64::try_from(p.checked.saturating_add(p.fail_timeout).saturating_add(1)).unwrap_or(0))
    }
}

/// One upstream group as the running configuration has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConf {
    pub kind: Kind,
    /// The counters' `upstream` label: the group's name, or `host:port` of
    /// an implicit one.
    pub name: Vec<u8>,
    pub view: View,
    pub peers: Vec<PeerConf>,
}

/// A zone the document reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZoneDoc {
    pub name: String,
    pub kind: Kind,
    /// Its size in bytes.
    pub size: u64,
    /// When its counts began.
    pub started: String,
    /// Failing peers it can keep, holds, and failures of peers it had no
    /// room for.
    pub peers_capacity: u64,
    pub peers_used: u64,
    pub peers_dropped: u64,
    /// How many recent failures it keeps.
    pub recent_capacity: u64,
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Counts over the zone's life and the last 1, 5 and 15 minutes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub total: u64,
    #[serde(rename = "1m")]
    pub m1: u64,
    #[serde(rename = "5m")]
    pub m5: u64,
    #[serde(rename = "15m")]
    pub m15: u64,
}

impl Counts {
    fn of(total: u64, w: &Window, now_s: u64) -> Counts {
        let [a, b, c] = WINDOWS.map(|(_, secs)| w.sum(now_s, secs));
        Counts {
            total,
            m1: a,
            m5: b,
            m15: c,
        }
    }
    fn add(&mut self, o: &Counts) {
        self.total += o.total;
        self.m1 += o.m1;
        self.m5 += o.m5;
        self.m15 += o.m15;
    }
}

/// A failure as the document gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventDoc {
    pub time: String,
    pub cause: &'static str,
    pub detail: String,
    /// The status its request or session ended with (null: not known).
    pub status: Option<u16>,
}

/// One peer: nginx's view of it and its failures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerDoc {
    pub name: String,
    /// Whether the running configuration has it (else it is known only by
    /// its failures).
    pub configured: bool,
    pub server: Option<String>,
    /// `up`, `down` (marked so), `unavailable` (skipped after `max_fails`
    /// until `unavailable_until`) or `unknown`.
    pub state: &'static str,
    pub unavailable_until: Option<String>,
    pub backup: Option<bool>,
    pub weight: Option<u64>,
    pub max_conns: Option<u64>,
    pub conns: Option<u64>,
    pub at_max_conns: Option<bool>,
    pub fails: Option<u64>,
    pub max_fails: Option<u64>,
    pub fail_timeout: Option<i64>,
    /// Failing now: its last attempt failed (null from logs: a success
    /// leaves no line).
    pub failing: Option<bool>,
    pub failures_in_a_row: Option<u64>,
    /// When the current row of failures began.
    pub failing_since: Option<String>,
    pub failures: Counts,
    /// Per cause, the causes it failed with.
    pub causes: BTreeMap<&'static str, Counts>,
    pub first_failure: Option<EventDoc>,
    pub last_failure: Option<EventDoc>,
    pub last_success: Option<String>,
}

/// One upstream group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupDoc {
    pub name: String,
    pub kind: Kind,
    /// Whether the running configuration has it.
    pub configured: bool,
    /// Where the peers' states come from: `zone`, `worker` or `unknown`.
    pub view: View,
    pub peers: Vec<PeerDoc>,
}

/// One of the zone's recent failures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecentDoc {
    pub time: String,
    pub kind: Kind,
    pub upstream: String,
    pub peer: String,
    pub cause: &'static str,
    pub detail: String,
    pub status: Option<u16>,
    pub attempt: u16,
    /// The request line, or the stream session.
    pub request: String,
}

/// The document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Doc {
    pub version: u32,
    /// `nginx` (a running nginx's zones) or `logs` (the offline
    /// classifier).
    pub source: &'static str,
    /// The document's own time.
    pub time: String,
    /// Since when every total is complete: the latest of the zones' starts.
    pub started: Option<String>,
    pub zones: Vec<ZoneDoc>,
    pub upstreams: Vec<GroupDoc>,
    /// The most recent failures, newest first.
    pub recent: Vec<RecentDoc>,
}

/// What the document is made of.
pub struct Inputs<'a> {
    pub source: &'static str,
    pub now_ms: u64,
    pub zones: Vec<ZoneDoc>,
    /// The latest of the zones' starts.
    pub started_ms: Option<u64>,
    pub groups: Vec<GroupConf>,
    /// The counters' series with their windows (those of the attempt
    /// families are read).
    pub series: &'a [(Series, Window)],
    pub peers: &'a [PeerRecord],
    /// Newest first.
    pub recent: &'a [Recent],
}

/// RFC 3339, UTC, milliseconds: `2026-12-06T10:00:00.123Z`.
pub fn rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn event(e: &super::Event) -> Option<EventDoc> {
    (e.ms != 0).then(|| EventDoc {
        time: rfc3339(e.ms),
        cause: e.cause().map_or("", Cause::code),
        detail: text(e.detail()),
        status: (e.status != 0).then_some(e.status),
    })
}

fn family_kind(f: Family) -> Option<Kind> {
    match f {
        Family::Attempts => Some(Kind::Http),
        Family::StreamAttempts => Some(Kind::Stream),
        _ => None,
    }
}

type PeerKey = (Kind, Vec<u8>, Vec<u8>);

/// Joins nginx's groups with the zone's records. Groups are in the
/// configuration's order, then those known only by their failures (by
/// name); peers likewise.
pub fn build(i: &Inputs<'_>) -> Doc {
    let now_s = i.now_ms / 1000;
    // per (kind, upstream, peer): counts per cause
    let mut causes: BTreeMap<PeerKey, BTreeMap<&'static str, Counts>> = BTreeMap::new();
    for (s, w) in i.series {
        let (Some(kind), Some(cause)) = (s.family().and_then(family_kind), s.cause()) else {
            continue;
        };
        let key = (kind, s.upstream().to_vec(), s.peer().to_vec());
        let c = Counts::of(s.count, w, now_s);
        causes.entry(key).or_default().entry(cause.code()).or_default().add(&c);
    }
    let mut records: BTreeMap<PeerKey, &PeerRecord> = BTreeMap::new();
    for p in i.peers {
        if let Some(kind) = p.kind() {
            records.insert((kind, p.upstream().to_vec(), p.peer().to_vec()), p);
        }
    }

    let peer_doc = |kind: Kind, group: &[u8], name: &[u8], conf: Option<&PeerConf>| -> PeerDoc {
        // the zone keeps labels as the counters shorten them
        let key = (kind, label(group).as_bytes().to_vec(), label(name).as_bytes().to_vec());
        let by_cause = causes.get(&key).cloned().unwrap_or_default();
        let mut failures = Counts::default();
        for c in by_cause.values() {
            failures.add(c);
        }
        let rec = records.get(&key);
        let until = conf.and_then(|c| c.unavailable_until(now_s));
        let state = match conf {
            None => "unknown",
            Some(c) if c.peer.down => "down",
            Some(_) if until.is_some() => "unavailable",
            Some(_) => "up",
        };
        // from logs, successes are not seen: what they end is not known
        let live = i.source == SOURCE_NGINX;
        let in_a_row = rec.map_or(0, |r| u64::from(r.in_a_row));
        PeerDoc {
            name: text(name),
            configured: conf.is_some(),
            server: conf.map(|c| text(&c.server)).filter(|s| !s.is_empty()),
            state,
            unavailable_until: until.map(|u| rfc3339(u * 1000)),
            backup: conf.map(|c| c.backup),
            weight: conf.map(|c| c.weight),
            max_conns: conf.map(|c| c.peer.max_conns),
            conns: conf.map(|c| c.peer.conns),
            at_max_conns: conf.map(|c| c.peer.full()),
            fails: conf.map(|c| c.peer.fails),
            max_fails: conf.map(|c| c.peer.max_fails),
            fail_timeout: conf.map(|c| c.peer.fail_timeout),
            failing: live.then_some(in_a_row > 0),
            failures_in_a_row: live.then_some(in_a_row),
            failing_since: rec.filter(|r| live && r.in_a_row > 0).map(|r| rfc3339(r.row_since_ms)),
            failures,
            causes: by_cause,
            first_failure: rec.and_then(|r| event(&r.first)),
            last_failure: rec.and_then(|r| event(&r.last)),
            last_success: rec
                .filter(|r| live && r.last_success_ms != 0)
                .map(|r| rfc3339(r.last_success_ms)),
        }
    };

    let mut upstreams = Vec::new();
    let mut shown: std::collections::BTreeSet<PeerKey> = Default::default();
    for g in &i.groups {
        let mut peers = Vec::new();
        for p in &g.peers {
            let key = (
                g.kind,
                label(&g.name).as_bytes().to_vec(),
                label(&p.name).as_bytes().to_vec(),
            );
            if shown.insert(key) {
                peers.push(peer_doc(g.kind, &g.name, &p.name, Some(p)));
            }
        }
        upstreams.push(GroupDoc {
            name: text(&g.name),
            kind: g.kind,
            configured: true,
            view: g.view,
            peers,
        });
    }
    // peers known only by their failures: in their group if it is
    // configured, else in a group of their own
    let known: BTreeMap<PeerKey, ()> = causes
        .keys()
        .chain(records.keys())
        .filter(|k| !shown.contains(*k))
        .map(|k| (k.clone(), ()))
        .collect();
    for (kind, group, peer) in known.into_keys() {
        let at = upstreams
            .iter()
            .position(|g| g.kind == kind && label(g.name.as_bytes()).as_bytes() == group.as_slice());
        let at = at.unwrap_or_else(|| {
            upstreams.push(GroupDoc {
                name: text(&group),
                kind,
                configured: false,
                view: View::Unknown,
                peers: Vec::new(),
            });
            upstreams.len() - 1
        });
        let doc = peer_doc(kind, &group, &peer, None);
        upstreams[at].peers.push(doc);
    }

    let recent = i
        .recent
        .iter()
        .map(|r| RecentDoc {
            time: rfc3339(r.ms),
            kind: r.kind().unwrap_or(Kind::Http),
            upstream: text(r.upstream()),
            peer: text(r.peer()),
            cause: r.cause().map_or("", Cause::code),
            detail: text(r.detail()),
            status: (r.status != 0).then_some(r.status),
            attempt: r.attempt,
            request: text(r.request()),
        })
        .collect();
    Doc {
        version: VERSION,
        source: i.source,
        time: rfc3339(i.now_ms),
        started: i.started_ms.map(rfc3339),
        zones: i.zones.clone(),
        upstreams,
        recent,
    }
}

/// The document as JSON (one line, then a newline).
pub fn to_json(doc: &Doc) -> Vec<u8> {
    let mut out = serde_json::to_vec(doc).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{Failure, Live, LiveHeader};
    use crate::metrics::{count_slot, Header, Key};

    const T0: u64 = 1_765_000_000_000; // ms, a multiple of 10 s

    struct Zone {
        series: Vec<Series>,
        windows: Vec<Window>,
        header: Header,
        live: LiveHeader,
        peers: Vec<PeerRecord>,
        ring: Vec<Recent>,
    }

    impl Zone {
        fn new() -> Zone {
            Zone {
                series: vec![Series::EMPTY; 64],
                windows: vec![Window::EMPTY; 64],
                header: Header::default(),
                live: LiveHeader {
                    started_ms: T0,
                    ..LiveHeader::default()
                },
                peers: vec![PeerRecord::EMPTY; 8],
                ring: vec![Recent::EMPTY; 4],
            }
        }
        /// What the module does for a failed attempt, under one lock.
        fn fail(&mut self, kind: Kind, upstream: &str, peer: &str, cause: Cause, ms: u64) {
            let key = match kind {
                Kind::Http => Key::attempt(upstream.as_bytes(), peer.as_bytes(), cause),
                Kind::Stream => Key::stream_attempt(upstream.as_bytes(), peer.as_bytes(), cause),
            };
            if let (_, Some(at)) = count_slot(&mut self.header, &mut self.series, &key, 1) {
                self.windows[at].add(ms / 1000, 1);
            }
            let f = Failure {
                kind,
                upstream: upstream.as_bytes(),
                peer: peer.as_bytes(),
                cause,
                detail: b"connect() failed (111: Connection refused) while connecting to upstream",
                status: 502,
                attempt: 1,
                request: b"GET /x HTTP/1.1",
                ms,
            };
            self.live().failure(&f);
        }
        fn live(&mut self) -> Live<'_> {
            Live {
                header: &mut self.live,
                peers: &mut self.peers,
                ring: &mut self.ring,
            }
        }
        fn doc(&mut self, now_ms: u64, groups: Vec<GroupConf>) -> Doc {
            let series: Vec<(Series, Window)> = self
                .series
                .iter()
                .zip(&self.windows)
                .filter(|(s, _)| s.family().is_some())
                .map(|(s, w)| (*s, *w))
                .collect();
            let l = self.live();
            let recent: Vec<Recent> = l.recent().copied().collect();
            build(&Inputs {
                source: "nginx",
                now_ms,
                zones: Vec::new(),
                started_ms: Some(T0),
                groups,
                series: &series,
                peers: &self.peers,
                recent: &recent,
            })
        }
    }

    fn conf(name: &str) -> PeerConf {
        PeerConf {
            name: name.into(),
            server: name.into(),
            weight: 1,
            peer: Peer {
                max_fails: 1,
                fail_timeout: 10,
                ..Peer::default()
            },
            ..PeerConf::default()
        }
    }

    fn with(c: PeerConf, f: impl FnOnce(&mut Peer)) -> PeerConf {
        let mut c = c;
        f(&mut c.peer);
        c
    }

    fn group(name: &str, peers: Vec<PeerConf>) -> GroupConf {
        GroupConf {
            kind: Kind::Http,
            name: name.into(),
            view: View::Zone,
            peers,
        }
    }

    #[test]
    fn nginx_s_rule_for_an_unavailable_peer() {
        let p = with(conf("a:1"), |p| {
            p.fails = 1;
            p.checked = 100;
        });
        assert_eq!(p.unavailable_until(100), Some(111));
        assert_eq!(p.unavailable_until(110), Some(111));
        assert_eq!(p.unavailable_until(111), None);
        assert_eq!(with(p.clone(), |p| p.fails = 0).unavailable_until(100), None);
        assert_eq!(with(p, |p| p.max_fails = 0).unavailable_until(100), None);
    }

    #[test]
    fn a_group_s_peers_with_their_states_counts_and_times() {
        let mut z = Zone::new();
        z.fail(Kind::Http, "backend", "10.0.0.1:80", Cause::ConnectRefused, T0 + 1_000);
        z.fail(Kind::Http, "backend", "10.0.0.1:80", Cause::ConnectRefused, T0 + 2_000);
        z.fail(Kind::Http, "backend", "10.0.0.1:80", Cause::ReadTimeout, T0 + 400_000);
        z.live().success(Kind::Http, b"backend", b"10.0.0.2:80", T0 + 400_500);
        let a = with(conf("10.0.0.1:80"), |p| {
            p.fails = 1;
            p.checked = ((T0 + 400_000) / 1000) as i64;
        });
        let b = with(
            PeerConf {
                backup: true,
                ..conf("10.0.0.2:80")
            },
            |p| {
                p.max_conns = 2;
                p.conns = 2;
            },
        );
        let doc = z.doc(T0 + 401_000, vec![group("backend", vec![a, b])]);
        let g = &doc.upstreams[0];
        assert_eq!(
            (g.name.as_str(), g.configured, g.view, g.peers.len()),
            ("backend", true, View::Zone, 2)
        );
        let p = &g.peers[0];
        assert_eq!(
            (p.state, p.failing, p.failures_in_a_row),
            ("unavailable", Some(true), Some(3))
        );
        assert_eq!(p.unavailable_until.as_deref(), Some("2025-12-06T05:53:31.000Z"));
        assert_eq!(
            p.failures,
            Counts {
                total: 3,
                m1: 1,
                m5: 1,
                m15: 3
            }
        );
        assert_eq!(p.causes["connect_refused"].total, 2);
        assert_eq!(p.causes["connect_refused"].m5, 0);
        assert_eq!(p.causes["read_timeout"].m1, 1);
        assert_eq!(p.first_failure.as_ref().unwrap().time, rfc3339(T0 + 1_000));
        assert_eq!(p.last_failure.as_ref().unwrap().cause, "read_timeout");
        assert_eq!(p.failing_since.as_deref(), Some(rfc3339(T0 + 1_000).as_str()));
        assert_eq!(p.last_success, None);
        let q = &g.peers[1];
        assert_eq!(
            (q.state, q.backup, q.at_max_conns, q.failing),
            ("up", Some(true), Some(true), Some(false))
        );
        assert_eq!(
            (q.failures.total, q.first_failure.is_none(), q.last_success.is_none()),
            (0, true, true)
        );
        // the ring, newest first
        let times: Vec<&str> = doc.recent.iter().map(|r| r.time.as_str()).collect();
        assert_eq!(times, [rfc3339(T0 + 400_000), rfc3339(T0 + 2_000), rfc3339(T0 + 1_000)]);
    }

    #[test]
    fn a_success_ends_the_row_and_is_kept() {
        let mut z = Zone::new();
        z.fail(Kind::Http, "backend", "10.0.0.1:80", Cause::UpstreamReset, T0 + 1_000);
        z.live().success(Kind::Http, b"backend", b"10.0.0.1:80", T0 + 5_000);
        let doc = z.doc(T0 + 6_000, vec![group("backend", vec![conf("10.0.0.1:80")])]);
        let p = &doc.upstreams[0].peers[0];
        assert_eq!(
            (p.failing, p.failures_in_a_row, p.failing_since.is_none()),
            (Some(false), Some(0), true)
        );
        assert_eq!(p.last_success.as_deref(), Some(rfc3339(T0 + 5_000).as_str()));
        assert_eq!(p.state, "up");
    }

    #[test]
    fn peers_and_groups_known_only_by_their_failures_are_listed_unknown() {
        let mut z = Zone::new();
        z.fail(Kind::Http, "backend", "10.0.0.9:80", Cause::ConnectRefused, T0);
        z.fail(Kind::Stream, "db", "10.0.0.5:5432", Cause::ConnectTimeout, T0);
        z.fail(Kind::Http, "gone", "10.0.0.7:80", Cause::ConnectRefused, T0);
        let doc = z.doc(T0 + 1_000, vec![group("backend", vec![conf("10.0.0.1:80")])]);
        let names: Vec<(&str, &str, bool)> = doc
            .upstreams
            .iter()
            .map(|g| (g.kind.name(), g.name.as_str(), g.configured))
            .collect();
        assert_eq!(
            names,
            [
                ("http", "backend", true),
                ("http", "gone", false),
                ("stream", "db", false)
            ]
        );
        let extra = &doc.upstreams[0].peers[1];
        assert_eq!(
            (extra.name.as_str(), extra.configured, extra.state),
            ("10.0.0.9:80", false, "unknown")
        );
        assert_eq!(doc.upstreams[2].view, View::Unknown);
    }

    #[test]
    fn the_json_has_its_version_and_every_field_documented() {
        let mut z = Zone::new();
        z.fail(Kind::Http, "backend", "10.0.0.1:80", Cause::ConnectRefused, T0);
        let doc = z.doc(T0 + 1_000, vec![group("backend", vec![conf("10.0.0.1:80")])]);
        let json: serde_json::Value = serde_json::from_slice(&to_json(&doc)).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["upstreams"][0]["peers"][0]["failures"]["1m"], 1);
        assert_eq!(json["recent"][0]["request"], "GET /x HTTP/1.1");
        // every key the document has is in docs/status.md's field list
        let status_md = include_str!("../../../docs/status.md");
        let mut missing = Vec::new();
        keys(&json, "", &mut missing, status_md);
        assert!(missing.is_empty(), "not in docs/status.md: {missing:?}");
    }

    fn keys(v: &serde_json::Value, path: &str, missing: &mut Vec<String>, doc: &str) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    // a cause's counts are keyed by its code
                    let name = if Cause::from_code(k).is_some() { "CAUSE" } else { k };
                    let p = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}.{name}")
                    };
                    if !doc.contains(&format!("`{p}`")) {
                        missing.push(p.clone());
                    }
                    keys(v, &p, missing, doc);
                }
            }
            serde_json::Value::Array(a) => {
                for v in a {
                    keys(v, &format!("{path}[]"), missing, doc);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_765_000_000_123), "2025-12-06T05:46:40.123Z");
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters_in_valid_json() {
        let mut z = Zone::new();
        let f = Failure {
            kind: Kind::Http,
            upstream: b"b\xffad\"\n",
            peer: b"p:1",
            cause: Cause::InvalidHeader,
            detail: b"upstream sent invalid header: \"\x01\xfe\" while reading response header from upstream",
            status: 502,
            attempt: 2,
            request: b"GET /\xc3 HTTP/1.1",
            ms: T0,
        };
        z.live().failure(&f);
        let doc = z.doc(T0, Vec::new());
        let out = to_json(&doc);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["recent"][0]["upstream"], "b\u{fffd}ad\"\n");
        assert_eq!(v["recent"][0]["attempt"], 2);
    }
}
