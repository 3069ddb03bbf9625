//! `status`: the live view's document (the module's
//! `upstream_cause_status`, docs/status.md) made from logs: each failed
//! attempt counted per peer and cause, with its windows ending at the
//! log's last line, each peer's first and last failure, and the last
//! failures. What logs cannot tell is `null`: nginx's peer states, and
//! whatever a success would have changed (successes leave no line).

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::TimeZone;
use upstream_cause_core::errlog::Time;
use upstream_cause_core::live::doc::{build, to_json, Inputs, SOURCE_LOGS};
use upstream_cause_core::live::{page, session_text, Failure, Kind, PeerRecord, Recent, Window};
use upstream_cause_core::metrics::{Key, Series};
use upstream_cause_core::Cause;

use crate::assemble::{Request, Transport};

/// The recent failures the document keeps by default: as many as a `1m`
/// zone keeps.
pub const RECENT: usize = 198;

type PeerKey = (Kind, Vec<u8>, Vec<u8>);
/// A series: its peer's key and the cause.
type SeriesKey = (Kind, Vec<u8>, Vec<u8>, Cause);

pub struct StatusView {
    series: BTreeMap<SeriesKey, (u64, Window)>,
    peers: HashMap<PeerKey, PeerRecord>,
    recent: VecDeque<Recent>,
    keep: usize,
    first_ms: Option<u64>,
    last_ms: u64,
}

/// A time of the log (nginx writes its local time, without a zone) in
/// milliseconds since the epoch, on this machine's zone (`TZ`).
fn utc_ms(t: Time) -> u64 {
    let Some(naive) = chrono::DateTime::from_timestamp(t, 0).map(|d| d.naive_utc()) else {
        return 0;
    };
    let utc = chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .map_or(t, |d| d.timestamp());
    u64::try_from(utc).unwrap_or(0) * 1000
}

fn or_dash(v: &[u8]) -> &[u8] {
    if v.is_empty() {
        b"-"
    } else {
        v
    }
}

impl StatusView {
    pub fn new(keep: usize) -> StatusView {
        StatusView {
            series: BTreeMap::new(),
            peers: HashMap::new(),
            recent: VecDeque::new(),
            keep,
            first_ms: None,
            last_ms: 0,
        }
    }

    pub fn add(&mut self, r: &Request) {
        let kind = if r.stream.is_some() { Kind::Stream } else { Kind::Http };
        let mut session = Vec::new();
        let request: &[u8] = match r.stream {
            Some(t) => {
                // as the module says it: `TCP from 127.0.0.1 to port 5432`
                let port = r.server.rsplit(|&b| b == b':').next().unwrap_or_default();
                session_text(&mut session, t == Transport::Udp, &r.client, Some(port));
                &session
            }
            None => &r.request,
        };
        let n = r.attempts.len();
        // a resolver failure makes no attempt (as the counters)
        for (i, a) in r
            .attempts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.cause != Cause::ResolveFailed)
        {
            // (the log times the request's first and last lines)
            let ms = utc_ms(if i == 0 { r.time } else { r.last });
            self.first_ms = Some(self.first_ms.map_or(ms, |f| f.min(ms)));
            self.last_ms = self.last_ms.max(ms);
            let (upstream, peer) = (or_dash(&a.upstream), or_dash(&a.peer));
            let f = Failure {
                kind,
                upstream,
                peer,
                cause: a.cause,
                // nginx's text is the request's last failure's
                detail: if i + 1 == n { &r.detail } else { &[] },
                status: r.status.unwrap_or(0),
                attempt: u16::try_from(i + 1).unwrap_or(u16::MAX),
                request,
                ms,
            };
            let s = self
                .series
                .entry((kind, upstream.to_vec(), peer.to_vec(), a.cause))
                .or_insert((0, Window::EMPTY));
            s.0 += 1;
            s.1.add(ms / 1000, 1);
            self.peers
                .entry((kind, upstream.to_vec(), peer.to_vec()))
                .or_insert_with(|| PeerRecord::new(kind, upstream, peer))
                .fail(&f);
            if self.keep > 0 {
                if self.recent.len() == self.keep {
                    self.recent.pop_front();
                }
                self.recent.push_back(Recent::of(&f));
            }
        }
    }

    /// The document, as JSON or the page.
    pub fn render(&self, html: bool) -> Vec<u8> {
        let series: Vec<(Series, Window)> = self
            .series
            .iter()
            .map(|((kind, up, peer, cause), (n, w))| {
                let key = match kind {
                    Kind::Http => Key::attempt(up, peer, *cause),
                    Kind::Stream => Key::stream_attempt(up, peer, *cause),
                };
                (Series::of(&key, *n), *w)
            })
            .collect();
        let peers: Vec<PeerRecord> = self.peers.values().copied().collect();
        let mut recent: Vec<Recent> = self.recent.iter().copied().collect();
        // newest first, by time (several files may interleave)
        recent.reverse();
        recent.sort_by_key(|r| std::cmp::Reverse(r.ms));
        let doc = build(&Inputs {
            source: SOURCE_LOGS,
            now_ms: self.last_ms,
            zones: Vec::new(),
            started_ms: self.first_ms,
            groups: Vec::new(),
            series: &series,
            peers: &peers,
            recent: &recent,
        });
        if html {
            page::render(&doc).into_bytes()
        } else {
            to_json(&doc)
        }
    }
}
