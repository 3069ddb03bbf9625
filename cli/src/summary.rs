//! `summary`: per cause (or upstream, peer, server), the failures, their
//! share, the requests, first and last seen, the top upstreams and peers,
//! and a bar chart of the failures over time.
//!
//! Bounded: at most [`KEYS_MAX`] rows and as many keys per column (the
//! rest are counted under `other`), and at most [`BUCKETS_MAX`] time
//! buckets (they widen as the log's span grows).

use std::borrow::Cow;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use std::fmt::Write as _;

use upstream_cause_core::errlog::{format_time, Time};
use upstream_cause_core::Cause;

use crate::assemble::{Request, Source, Stats};
use crate::input::ReadStats;

pub const KEYS_MAX: usize = 10_000;
const BUCKETS_MAX: usize = 4096;
const TOP: usize = 3;
const ROWS: usize = 60;
const BAR: usize = 50;
/// Sources (prefixes' pods, containers, hosts) named in the summary.
const SOURCES: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Cause,
    Upstream,
    Peer,
    Server,
}

impl By {
    fn title(self) -> &'static str {
        match self {
            By::Cause => "cause",
            By::Upstream => "upstream",
            By::Peer => "peer",
            By::Server => "server",
        }
    }
}

/// Counts by key, bounded.
#[derive(Default)]
struct Tally(HashMap<String, u64>);

impl Tally {
    fn add(&mut self, k: &str, n: u64) {
        if let Some(v) = self.0.get_mut(k) {
            *v += n;
        } else if self.0.len() < KEYS_MAX {
            self.0.insert(k.to_owned(), n);
        } else {
            *self.0.entry("other".to_owned()).or_default() += n;
        }
    }

    fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.0.iter().map(|(k, &c)| (k.as_str(), c)).collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }
}

#[derive(Default)]
struct Row {
    failures: u64,
    requests: u64,
    first: Option<Time>,
    last: Option<Time>,
    /// The other columns: causes, upstreams, peers.
    cols: [Tally; 3],
}

impl Row {
    fn seen(&mut self, t: Time) {
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
    }
}

/// The summary, built request by request.
pub struct Summary {
    by: By,
    rows: HashMap<String, Row>,
    failures: u64,
    requests: u64,
    from_text: u64,
    /// Requests per origin (the pod, container or host of a prefix).
    origins: Tally,
    /// Seconds per bucket, and failures per bucket and cause.
    width: i64,
    buckets: BTreeMap<i64, [u64; Cause::ALL.len()]>,
    first: Option<Time>,
    last: Option<Time>,
}

fn text(b: &[u8]) -> Cow<'_, str> {
    if b.is_empty() {
        Cow::Borrowed("-")
    } else {
        String::from_utf8_lossy(b)
    }
}

fn cause_index(c: Cause) -> usize {
    Cause::ALL.iter().position(|&x| x == c).unwrap_or(0)
}

impl Summary {
    pub fn new(by: By) -> Self {
        Summary {
            by,
            rows: HashMap::default(),
            failures: 0,
            requests: 0,
            from_text: 0,
            origins: Tally::default(),
            width: 60,
            buckets: BTreeMap::new(),
            first: None,
            last: None,
        }
    }

    fn row(&mut self, key: &str) -> &mut Row {
        let key = if self.rows.contains_key(key) || self.rows.len() < KEYS_MAX {
            key
        } else {
            "other"
        };
        if !self.rows.contains_key(key) {
            self.rows.insert(key.to_owned(), Row::default());
        }
        self.rows
            .get_mut(key)
            .expect("the row is there: inserted above if it was not")
    }

    pub fn add(&mut self, r: &Request) {
        self.requests += 1;
        if r.source == Source::Nginx {
            self.from_text += 1;
        }
        if !r.origin.is_empty() {
            self.origins.add(&String::from_utf8_lossy(&r.origin), 1);
        }
        self.first = Some(self.first.map_or(r.time, |f| f.min(r.time)));
        self.last = Some(self.last.map_or(r.last, |l| l.max(r.last)));
        let server = text(&r.server);
        for a in &r.attempts {
            self.failures += 1;
            let (cause, upstream, peer) = (a.cause.code(), text(&a.upstream), text(&a.peer));
            let key = match self.by {
                By::Cause => cause,
                By::Upstream => &upstream,
                By::Peer => &peer,
                By::Server => &server,
            };
            let row = self.row(key);
            row.failures += 1;
            row.seen(r.time);
            row.seen(r.last);
            row.cols[0].add(cause, 1);
            row.cols[1].add(&upstream, 1);
            row.cols[2].add(&peer, 1);
            self.bucket(r.last, a.cause);
        }
        let key = match self.by {
            By::Cause => Cow::Borrowed(r.cause.code()),
            By::Upstream => text(r.attempts.last().map_or(&[][..], |a| &a.upstream)),
            By::Peer => text(r.attempts.last().map_or(&[][..], |a| &a.peer)),
            By::Server => server,
        };
        let row = self.row(&key);
        row.requests += 1;
        row.seen(r.time);
    }

    fn bucket(&mut self, t: Time, c: Cause) {
        self.buckets
            .entry(t.div_euclid(self.width))
            .or_insert([0; Cause::ALL.len()])[cause_index(c)] += 1;
        if self.buckets.len() > BUCKETS_MAX {
            self.width *= 2;
            let old = std::mem::take(&mut self.buckets);
            for (k, v) in old {
                let e = self.buckets.entry(k.div_euclid(2)).or_insert([0; Cause::ALL.len()]);
                for (a, b) in e.iter_mut().zip(v) {
                    *a += b;
                }
            }
        }
    }

    /// The report. `color`: ANSI colours for the chart.
    pub fn render(&self, stats: &Stats, read: &ReadStats, inputs: usize, color: bool) -> String {
        let mut o = String::new();
        let span = match (self.first, self.last) {
            (Some(f), Some(l)) => format!(", {} to {}", format_time(f), format_time(l)),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "upstream-cause: {} failed requests, {} failed attempts{span}",
            group(self.requests),
            group(self.failures)
        );
        let _ = writeln!(
            o,
            "read {} lines ({}) from {} input{}: {} upstream failure lines of nginx's, {} of the module's \
             ({} of nginx's folded into them)",
            group(read.lines),
            size(read.bytes),
            inputs,
            if inputs == 1 { "" } else { "s" },
            group(stats.attempt_lines),
            group(stats.module_lines),
            group(stats.folded)
        );
        let not_nginx = read.lines.saturating_sub(stats.nginx_lines + read.too_long);
        let _ = writeln!(
            o,
            "skipped: {} lines not in nginx's error-log format, {} longer than 64 KiB, {} upstream lines unreadable, \
             {} lines of other modules",
            group(not_nginx),
            group(read.too_long),
            group(stats.unreadable),
            group(stats.third_party)
        );
        if !self.origins.0.is_empty() {
            let top = self.origins.top(SOURCES);
            let listed: Vec<String> = top.iter().map(|(k, n)| format!("{k} ({})", group(*n))).collect();
            let more = self.origins.0.len().saturating_sub(top.len());
            let _ = writeln!(
                o,
                "failed requests by source: {}{}",
                listed.join(", "),
                if more > 0 {
                    format!(", and {} more", group(more as u64))
                } else {
                    String::new()
                }
            );
        }
        if stats.evicted > 0 {
            let _ = writeln!(
                o,
                "{} requests closed early: more were open at once than the classifier keeps",
                group(stats.evicted)
            );
        }
        o.push('\n');
        self.table(&mut o);
        o.push('\n');
        self.chart(&mut o, color);
        if self.from_text > 0 {
            let _ = writeln!(
                o,
                "\n{} of the requests are from nginx's lines alone, which do not tell: the status sent; whether a \
                 later attempt succeeded (it leaves no line); an upstream's own 5xx (no line either); whether a \
                 failed connection was a reused keepalive one; max_conns_reached from no_live_upstreams.",
                group(self.from_text)
            );
        }
        o
    }

    fn table(&self, o: &mut String) {
        let others: [(usize, &str); 2] = match self.by {
            By::Cause => [(1, "top upstreams"), (2, "top peers")],
            By::Upstream => [(0, "top causes"), (2, "top peers")],
            By::Peer | By::Server => [(0, "top causes"), (1, "top upstreams")],
        };
        let mut rows: Vec<(&String, &Row)> = self.rows.iter().collect();
        rows.sort_unstable_by(|a, b| {
            (b.1.failures, b.1.requests)
                .cmp(&(a.1.failures, a.1.requests))
                .then(a.0.cmp(b.0))
        });
        let cells: Vec<[String; 8]> = rows
            .iter()
            .map(|(k, r)| {
                let share = if self.failures == 0 {
                    0.0
                } else {
                    r.failures as f64 * 100.0 / self.failures as f64
                };
                let top = |i: usize| {
                    let t = r.cols[i].top(TOP);
                    if t.is_empty() {
                        "-".to_owned()
                    } else {
                        t.iter()
                            .map(|(k, n)| format!("{k} ({})", group(*n)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                };
                [
                    (*k).clone(),
                    group(r.failures),
                    format!("{share:.1}%"),
                    group(r.requests),
                    r.first.map_or("-".into(), format_time),
                    r.last.map_or("-".into(), format_time),
                    top(others[0].0),
                    top(others[1].0),
                ]
            })
            .collect();
        let head = [
            self.by.title(),
            "failures",
            "share",
            "requests",
            "first seen",
            "last seen",
            others[0].1,
            others[1].1,
        ];
        let mut w = head.map(str::len);
        for c in &cells {
            for (i, s) in c.iter().enumerate() {
                w[i] = w[i].max(s.chars().count());
            }
        }
        let line = |o: &mut String, c: [&str; 8]| {
            let mut s = String::new();
            for (i, v) in c.iter().enumerate() {
                let pad = w[i].saturating_sub(v.chars().count());
                let right = (1..4).contains(&i);
                if i > 0 {
                    s.push_str("  ");
                }
                if right {
                    s.push_str(&" ".repeat(pad));
                }
                s.push_str(v);
                if !right && i < 7 {
                    s.push_str(&" ".repeat(pad));
                }
            }
            let _ = writeln!(o, "{}", s.trim_end());
        };
        line(o, head);
        if cells.is_empty() {
            let _ = writeln!(o, "(no failed upstream attempts)");
        }
        for c in &cells {
            line(o, c.each_ref().map(String::as_str));
        }
    }

    fn chart(&self, o: &mut String, color: bool) {
        let (Some(&lo), Some(&hi)) = (self.buckets.keys().next(), self.buckets.keys().next_back()) else {
            return;
        };
        let n = (hi - lo + 1) as usize;
        let per = n.div_ceil(ROWS).max(1);
        let secs = self.width * per as i64;
        let unit = if secs % 3600 == 0 && secs >= 3600 {
            format!("{} hour{}", secs / 3600, if secs == 3600 { "" } else { "s" })
        } else {
            format!("{} minute{}", secs / 60, if secs == 60 { "" } else { "s" })
        };
        let unit = unit.strip_prefix("1 ").unwrap_or(&unit).to_owned();
        let _ = writeln!(o, "failed attempts per {unit}");
        let mut rows: Vec<(i64, [u64; Cause::ALL.len()])> = Vec::new();
        let mut b = lo;
        while b <= hi {
            let mut sum = [0u64; Cause::ALL.len()];
            for (_, v) in self.buckets.range(b..b + per as i64) {
                for (a, &x) in sum.iter_mut().zip(v) {
                    *a += x;
                }
            }
            rows.push((b * self.width, sum));
            b += per as i64;
        }
        let max = rows
            .iter()
            .map(|(_, s)| s.iter().sum::<u64>())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut used = [false; Cause::ALL.len()];
        for (t, s) in &rows {
            let total: u64 = s.iter().sum();
            let label = format_time(*t);
            let mut bar = String::new();
            if color {
                // stacked: each cause its share of the bar, in its colour
                let mut acc = 0u64;
                let mut drawn = 0usize;
                for (i, &x) in s.iter().enumerate() {
                    if x == 0 {
                        continue;
                    }
                    used[i] = true;
                    acc += x;
                    let upto = (acc * BAR as u64).div_ceil(max) as usize;
                    let len = upto.saturating_sub(drawn);
                    drawn = upto;
                    let _ = write!(bar, "\x1b[{}m{}\x1b[0m", colour(Cause::ALL[i]), "█".repeat(len));
                }
            } else {
                bar = "#".repeat((total * BAR as u64).div_ceil(max) as usize);
            }
            let _ = writeln!(o, "{}  {bar} {}", &label[..16], group(total));
        }
        if color {
            let legend: Vec<String> = Cause::ALL
                .iter()
                .zip(used)
                .filter(|(_, u)| *u)
                .map(|(c, _)| format!("\x1b[{}m█\x1b[0m {}", colour(*c), c.code()))
                .collect();
            let _ = writeln!(o, "{}", legend.join("  "));
        }
    }
}

/// An ANSI colour per family of causes.
fn colour(c: Cause) -> &'static str {
    use Cause::*;
    match c {
        ConnectRefused | ConnectUnreachable | ConnectError | AcceptQueueFull => "31",
        NoLiveUpstreams | MaxConnsReached => "91",
        ConnectTimeout | SendTimeout | ReadTimeout | IdleTimeout | UdpNoResponse => "33",
        UpstreamPrematurelyClosed
        | UpstreamReset
        | SendFailed
        | StreamRefused
        | ResponseTruncated
        | UpstreamClosedSilent => "35",
        InvalidHeader | HeaderTooBig => "36",
        TlsHandshakeFailed | TlsVerifyFailed => "34",
        ResolveFailed => "32",
        ViaUpstream | ClientClosed => "37",
    }
}

/// 1234567 -> "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut o = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            o.push(',');
        }
        o.push(ch);
    }
    o
}

fn size(b: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < 3 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::Attempt;

    fn req(t: Time, causes: &[Cause]) -> Request {
        let attempts = causes
            .iter()
            .map(|&cause| Attempt {
                cause,
                peer: b"127.0.0.1:1".to_vec(),
                upstream: b"http://127.0.0.1:1".to_vec(),
            })
            .collect();
        Request::sample(t, attempts)
    }

    #[test]
    fn rows_count_failures_and_requests_with_their_share() {
        let mut s = Summary::new(By::Cause);
        s.add(&req(0, &[Cause::ConnectRefused, Cause::ReadTimeout]));
        s.add(&req(60, &[Cause::ConnectRefused]));
        s.add(&req(125, &[Cause::ConnectRefused]));
        let out = s.render(&Stats::default(), &ReadStats::default(), 1, false);
        let row = out.lines().find(|l| l.starts_with("connect_refused")).expect(&out);
        let cells: Vec<&str> = row.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(&cells[..4], ["connect_refused", "3", "75.0%", "2"], "{out}");
        assert!(
            row.contains("http://127.0.0.1:1 (3)") && row.contains("127.0.0.1:1 (3)"),
            "{row}"
        );
        assert!(out.contains("failed attempts per minute"), "{out}");
        // three minutes, one bar each, the longest for the busiest
        let bars: Vec<&str> = out.lines().filter(|l| l.starts_with("1970/01/01 00:0")).collect();
        assert_eq!(bars.len(), 3, "{out}");
        assert!(bars[0].ends_with("# 2") && bars[1].ends_with("# 1"), "{bars:?}");
        assert!(!out.contains('\x1b'));
        assert!(s
            .render(&Stats::default(), &ReadStats::default(), 1, true)
            .contains("\x1b[31m"));
    }

    #[test]
    fn by_another_column_and_a_long_span_in_wider_buckets() {
        let mut s = Summary::new(By::Server);
        for i in 0..10_000 {
            s.add(&req(i * 600, &[Cause::ReadTimeout]));
        }
        assert!(s.buckets.len() <= BUCKETS_MAX);
        let out = s.render(&Stats::default(), &ReadStats::default(), 1, false);
        assert!(out.lines().any(|l| l.starts_with("api ")), "{out}");
        assert!(out.contains("top causes"));
        let bars = out.lines().filter(|l| l.contains('#')).count();
        assert!(bars <= ROWS, "{bars}");
    }

    #[test]
    fn more_keys_than_rows_go_to_other() {
        let mut s = Summary::new(By::Peer);
        for i in 0..(KEYS_MAX as u32 + 50) {
            let mut r = req(0, &[Cause::ConnectRefused]);
            r.attempts[0].peer = format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255).into_bytes();
            s.add(&r);
        }
        assert_eq!(s.rows.len(), KEYS_MAX + 1);
        assert_eq!(s.rows["other"].failures, 50);
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(1234), "1,234");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(size(1536), "1.50 KiB");
    }
}
