//! The live view's HTML page: one self-contained document (its style
//! inline, no script, font or image), made from the same [`Doc`] as the
//! JSON. It refreshes itself (`<meta http-equiv="refresh">`), reads on a
//! phone (its tables become cards on a narrow screen) and follows the
//! reader's dark theme. It is served with [`CSP`], which allows nothing but
//! its own style.
//!
//! The peers that fail now come first, with since when and how; then those
//! that failed in the last 15 minutes and have stopped; then the rest.

use std::fmt::Write as _;

use super::doc::{Counts, Doc, PeerDoc};

/// The page's style, whose hash [`CSP`] allows (tests/test_status.py
/// computes it again, and the browser test fails if they differ: the
/// browser would not apply the style).
pub const STYLE: &str = ":root{color-scheme:light dark;--bg:#fff;--fg:#1b1f24;--muted:#59636e;--line:#d1d9e0;--bad:#c0392b;--badbg:#fdecea;--ok:#1a7f37;--okbg:#e6f4ea;--warn:#9a6700;--warnbg:#fff8c5;--chip:#eef1f4}\
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#30363d;--bad:#ff7b72;--badbg:#3d1714;--ok:#56d364;--okbg:#12261e;--warn:#e3b341;--warnbg:#2e2407;--chip:#21262d}}\
*{box-sizing:border-box}body{margin:0;padding:1rem;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,\"Segoe UI\",sans-serif}\
h1{font-size:1.3rem;margin:0 0 .25rem}h2{font-size:1.05rem;margin:1.5rem 0 .5rem}.meta{color:var(--muted);font-size:.85rem}\
.verdict{margin:1rem 0;padding:.6rem .8rem;border-radius:6px;font-weight:600}.verdict.bad{background:var(--badbg);color:var(--bad)}.verdict.ok{background:var(--okbg);color:var(--ok)}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;vertical-align:top;padding:.45rem .5rem;border-bottom:1px solid var(--line)}th{font-size:.8rem;color:var(--muted);font-weight:600}\
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}.muted{color:var(--muted)}\
.chip{display:inline-block;margin:0 .25rem .25rem 0;padding:.05rem .45rem;border-radius:999px;background:var(--chip);font-size:.8rem;white-space:nowrap}\
.now{font-weight:600}tr.failing .now,tr.recent .now{color:var(--bad)}tr.recovered .now{color:var(--ok)}.state-unavailable,.state-down{color:var(--bad);font-weight:600}.state-unknown{color:var(--muted)}\
.warn{background:var(--warnbg);color:var(--warn)}\
@media (max-width:700px){thead{display:none}table,tbody,tr,td{display:block;width:100%}tr{border:1px solid var(--line);border-radius:6px;margin-bottom:.6rem;padding:.3rem}td{border:0;padding:.2rem .4rem}td[data-label]::before{content:attr(data-label);display:block;font-size:.75rem;color:var(--muted)}}";

/// The page's `Content-Security-Policy`: nothing external, no script,
/// only [`STYLE`] (by its SHA-256).
pub const CSP: &str = "default-src 'none'; style-src 'sha256-Q4Zo1ztx8fTTg/NPCq2TFLAtkOjF6VbFFEiU1FtvVb0='; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Seconds between the page's refreshes.
pub const REFRESH_SECS: u32 = 5;

/// Text for HTML: `& < > " '` escaped.
fn esc(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn escaped(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    esc(&mut o, s);
    o
}

/// Milliseconds of an RFC 3339 time the document wrote.
fn ms_of(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() != 24 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<u64>().ok();
    let days = crate::errlog::days_from_civil(n(0..4)? as i64, n(5..7)? as u32, n(8..10)? as u32);
    let secs = u64::try_from(days).ok()? * 86_400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?;
    Some(secs * 1000 + n(20..23)?)
}

/// "12 s ago", "3 min ago", "2 h ago", "4 d ago" (or "in 8 s").
fn ago(now: u64, t: &str) -> String {
    let Some(then) = ms_of(t) else { return String::new() };
    let (d, future) = if then > now {
        (then - now, true)
    } else {
        (now - then, false)
    };
    let s = d / 1000;
    let span = match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// `<time>` with the relative time shown and the exact one as its title.
fn when(out: &mut String, now: u64, t: &str) {
    let _ = write!(
        out,
        "<time datetime=\"{0}\" title=\"{0}\">{1}</time>",
        escaped(t),
        ago(now, t)
    );
}

fn counts(out: &mut String, c: &Counts) {
    let _ = write!(out, "{} / {} / {} / {}", c.m1, c.m5, c.m15, c.total);
}

/// Where a peer stands now, for the order of the page and its first
/// column: failing now; failed in the last 15 minutes and stopped;
/// failed earlier; never failed.
fn standing(p: &PeerDoc) -> u8 {
    if p.failing == Some(true) {
        0
    } else if p.failures.m15 > 0 {
        1
    } else if p.failures.total > 0 {
        2
    } else {
        3
    }
}

/// The page.
pub fn render(doc: &Doc) -> String {
    let now = ms_of(&doc.time).unwrap_or(0);
    let mut peers: Vec<(&str, &str, &PeerDoc)> = doc
        .upstreams
        .iter()
        .flat_map(|g| g.peers.iter().map(move |p| (g.kind.name(), g.name.as_str(), p)))
        .collect();
    // failing now first, the longest failing first; then the most recent
    // failures; then by name
    peers.sort_by(|a, b| {
        let (pa, pb) = (a.2, b.2);
        standing(pa)
            .cmp(&standing(pb))
            .then_with(|| pa.failing_since.cmp(&pb.failing_since))
            .then_with(|| {
                let la = pa.last_failure.as_ref().map(|e| e.time.as_str());
                let lb = pb.last_failure.as_ref().map(|e| e.time.as_str());
                lb.cmp(&la)
            })
            .then_with(|| (a.0, a.1, &pa.name).cmp(&(b.0, b.1, &pb.name)))
    });
    let failing = peers.iter().filter(|p| p.2.failing == Some(true)).count();

    let mut o = String::with_capacity(16 * 1024);
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    if doc.source == "nginx" {
        let _ = write!(o, "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">");
    }
    let _ = write!(
        o,
        "<title>{}upstream causes</title><style>{STYLE}</style></head><body>",
        if failing > 0 {
            format!("{failing} failing: ")
        } else {
            String::new()
        }
    );
    o.push_str("<header><h1>Upstream causes</h1><p class=\"meta\">");
    let _ = write!(o, "At <time datetime=\"{0}\">{0}</time>", escaped(&doc.time));
    if let Some(s) = &doc.started {
        o.push_str(" · counts since ");
        when(&mut o, now, s);
    }
    let _ = write!(
        o,
        " · from {}{}</p></header>",
        if doc.source == "nginx" { "nginx's zones" } else { "logs" },
        if doc.source == "nginx" {
            format!(" · refreshes every {REFRESH_SECS} s")
        } else {
            String::new()
        }
    );

    let dropped: u64 = doc.zones.iter().map(|z| z.peers_dropped).sum();
    // from logs, whether a peer fails now is not known (a success leaves
    // no line): what the log's last 15 minutes had is said instead
    let logs = doc.source != super::doc::SOURCE_NGINX;
    let recent_peers = peers.iter().filter(|p| p.2.failures.m15 > 0).count();
    if logs {
        let _ = write!(
            o,
            "<p class=\"verdict bad\" id=\"verdict\">{recent_peers} peer{} failed in the log's last 15 minutes</p>",
            if recent_peers == 1 { "" } else { "s" }
        );
    } else if failing > 0 {
        let _ = write!(
            o,
            "<p class=\"verdict bad\" id=\"verdict\">{failing} peer{} failing now</p>",
            if failing == 1 { "" } else { "s" }
        );
    } else {
        o.push_str("<p class=\"verdict ok\" id=\"verdict\">No peer is failing now</p>");
    }
    if dropped > 0 {
        let _ = write!(
            o,
            "<p class=\"verdict warn\">{dropped} failures of peers the zone had no room for: they are in the counters and the recent failures only (a larger zone keeps them)</p>"
        );
    }

    o.push_str("<h2>Peers</h2><table id=\"peers\"><thead><tr><th>Now</th><th>Upstream / peer</th><th>nginx's state</th><th>Causes (1m / 5m / 15m / total)</th><th>Last failure</th></tr></thead><tbody>");
    for (kind, group, p) in &peers {
        let class = match (standing(p), logs) {
            (1, true) => "recent",
            (s, _) => ["failing", "recovered", "quiet", "ok"][usize::from(s)],
        };
        let _ = write!(
            o,
            "<tr class=\"peer {class}\" data-kind=\"{kind}\" data-upstream=\"{}\" data-peer=\"{}\" data-state=\"{}\">",
            escaped(group),
            escaped(&p.name),
            p.state
        );
        // now
        o.push_str("<td class=\"now\" data-label=\"Now\">");
        match standing(p) {
            0 => {
                let _ = write!(o, "failing, {} in a row", p.failures_in_a_row.unwrap_or(0));
                if let Some(s) = &p.failing_since {
                    o.push_str(", since ");
                    when(&mut o, now, s);
                }
            }
            1 if logs => o.push_str("failed in the last 15 minutes"),
            1 | 2 => {
                o.push_str(if standing(p) == 1 { "recovered" } else { "quiet" });
                if let Some(s) = &p.last_success {
                    o.push_str(": last success ");
                    when(&mut o, now, s);
                }
            }
            _ => o.push_str("no failure"),
        }
        o.push_str("</td>");
        // who
        let _ = write!(
            o,
            "<td data-label=\"Upstream / peer\"><span class=\"muted\">{kind}</span> {} / <code>{}</code>",
            escaped(group),
            escaped(&p.name)
        );
        if let Some(s) = p.server.as_deref().filter(|s| *s != p.name) {
            let _ = write!(o, " <span class=\"muted\">({})</span>", escaped(s));
        }
        if !p.configured {
            o.push_str(" <span class=\"muted\">(not in the configuration)</span>");
        }
        o.push_str("</td>");
        // nginx's state
        let _ = write!(
            o,
            "<td data-label=\"nginx's state\"><span class=\"state-{0}\">{0}</span>",
            p.state
        );
        if let Some(u) = &p.unavailable_until {
            o.push_str(" until ");
            when(&mut o, now, u);
        }
        if p.backup == Some(true) {
            o.push_str(" <span class=\"chip\">backup</span>");
        }
        if p.at_max_conns == Some(true) {
            let _ = write!(
                o,
                " <span class=\"chip\">at max_conns={}</span>",
                p.max_conns.unwrap_or(0)
            );
        }
        if let (Some(f), Some(m)) = (p.fails, p.max_fails) {
            // (with max_fails=0 nginx counts failures that never matter)
            if f > 0 && m > 0 {
                let _ = write!(o, " <span class=\"muted\">fails {f}/{m}</span>");
            }
        }
        o.push_str("</td>");
        // causes
        o.push_str("<td data-label=\"Causes (1m / 5m / 15m / total)\">");
        let mut causes: Vec<_> = p.causes.iter().collect();
        causes.sort_by(|a, b| b.1.m15.cmp(&a.1.m15).then(b.1.total.cmp(&a.1.total)).then(a.0.cmp(b.0)));
        for (cause, c) in causes {
            let _ = write!(o, "<span class=\"chip cause\" data-cause=\"{cause}\">{cause} ");
            counts(&mut o, c);
            o.push_str("</span>");
        }
        o.push_str("</td>");
        // last failure
        o.push_str("<td data-label=\"Last failure\">");
        if let Some(e) = &p.last_failure {
            when(&mut o, now, &e.time);
            let _ = write!(o, " <code>{}</code>", escaped(&e.detail));
        }
        o.push_str("</td></tr>");
    }
    o.push_str("</tbody></table>");

    o.push_str("<h2>Recent failures</h2><table id=\"recent\"><thead><tr><th>When</th><th>Upstream / peer</th><th>Cause</th><th>Status, attempt</th><th>Request</th></tr></thead><tbody>");
    for r in &doc.recent {
        let _ = write!(
            o,
            "<tr class=\"failure\" data-cause=\"{}\"><td data-label=\"When\">",
            r.cause
        );
        when(&mut o, now, &r.time);
        let _ = write!(
            o,
            "</td><td data-label=\"Upstream / peer\"><span class=\"muted\">{}</span> {} / <code>{}</code></td>",
            r.kind.name(),
            escaped(&r.upstream),
            escaped(&r.peer)
        );
        let _ = write!(
            o,
            "<td data-label=\"Cause\"><span class=\"chip\">{}</span> <code>{}</code></td>",
            r.cause,
            escaped(&r.detail)
        );
        let status = r.status.map_or_else(|| "-".to_string(), |s| s.to_string());
        let _ = write!(
            o,
            "<td data-label=\"Status, attempt\">{status}, attempt {}</td><td data-label=\"Request\"><code>{}</code></td></tr>",
            r.attempt,
            escaped(&r.request)
        );
    }
    if doc.recent.is_empty() {
        o.push_str("<tr><td colspan=\"5\" class=\"muted\">none</td></tr>");
    }
    o.push_str("</tbody></table></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::doc::{EventDoc, GroupDoc, RecentDoc, View};
    use crate::live::Kind;

    fn peer(name: &str, failing: bool, m15: u64, total: u64) -> PeerDoc {
        PeerDoc {
            name: name.into(),
            configured: true,
            server: Some(name.into()),
            state: "up",
            unavailable_until: None,
            backup: Some(false),
            weight: Some(1),
            max_conns: Some(0),
            conns: Some(0),
            at_max_conns: Some(false),
            fails: Some(0),
            max_fails: Some(1),
            fail_timeout: Some(10),
            failing: Some(failing),
            failures_in_a_row: Some(u64::from(failing)),
            failing_since: failing.then(|| "2026-12-06T10:00:00.000Z".into()),
            failures: Counts {
                total,
                m1: 0,
                m5: 0,
                m15,
            },
            causes: Default::default(),
            first_failure: None,
            last_failure: (total > 0).then(|| EventDoc {
                time: "2026-12-06T10:00:00.000Z".into(),
                cause: "connect_refused",
                detail: "<script>alert(1)</script>".into(),
                status: Some(502),
            }),
            last_success: None,
        }
    }

    fn doc(peers: Vec<PeerDoc>) -> Doc {
        Doc {
            version: 1,
            source: "nginx",
            time: "2026-12-06T10:05:00.000Z".into(),
            started: Some("2026-12-06T09:00:00.000Z".into()),
            zones: Vec::new(),
            upstreams: vec![GroupDoc {
                name: "backend".into(),
                kind: Kind::Http,
                configured: true,
                view: View::Zone,
                peers,
            }],
            recent: vec![RecentDoc {
                time: "2026-12-06T10:00:00.000Z".into(),
                kind: Kind::Http,
                upstream: "backend".into(),
                peer: "a:1".into(),
                cause: "connect_refused",
                detail: "x".into(),
                status: Some(502),
                attempt: 1,
                request: "GET /?q=<b> HTTP/1.1".into(),
            }],
        }
    }

    #[test]
    fn failing_peers_come_first_then_recovered_then_the_rest() {
        let page = render(&doc(vec![
            peer("ok:1", false, 0, 0),
            peer("old:1", false, 0, 5),
            peer("rec:1", false, 2, 2),
            peer("bad:1", true, 3, 3),
        ]));
        let at = |s: &str| page.find(&format!("data-peer=\"{s}\"")).unwrap();
        assert!(at("bad:1") < at("rec:1") && at("rec:1") < at("old:1") && at("old:1") < at("ok:1"));
        assert!(page.contains("1 peer failing now"));
        assert!(page.contains("<title>1 failing: upstream causes</title>"));
        let none = render(&doc(vec![peer("ok:1", false, 0, 0)]));
        assert!(none.contains("No peer is failing now"));
    }

    #[test]
    fn everything_from_nginx_or_the_upstream_is_escaped() {
        let page = render(&doc(vec![peer("a:1", true, 1, 1)]));
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("GET /?q=&lt;b&gt; HTTP/1.1"));
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = render(&doc(vec![peer("a:1", true, 1, 1)]));
        for external in ["<script", "<link", "src=", "@import", "url(", "http://", "https://"] {
            assert!(!page.contains(external), "{external}");
        }
        assert_eq!(page.matches("<style>").count(), 1);
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(CSP.starts_with("default-src 'none'; style-src 'sha256-"));
    }

    #[test]
    fn from_logs_it_says_what_failed_lately_not_what_fails_now() {
        let mut d = doc(vec![peer("a:1", false, 2, 2), peer("b:1", false, 0, 1)]);
        d.source = crate::live::doc::SOURCE_LOGS;
        for p in &mut d.upstreams[0].peers {
            p.failing = None;
        }
        let page = render(&d);
        assert!(page.contains("1 peer failed in the log's last 15 minutes"), "{page}");
        assert!(page.contains("<tr class=\"peer recent\"") && !page.contains("class=\"peer recovered"));
        assert!(!page.contains("http-equiv=\"refresh\""));
    }

    #[test]
    fn relative_times() {
        let now = ms_of("2026-12-06T10:05:00.000Z").unwrap();
        assert_eq!(ago(now, "2026-12-06T10:04:48.000Z"), "12 s ago");
        assert_eq!(ago(now, "2026-12-06T10:00:00.000Z"), "5 min ago");
        assert_eq!(ago(now, "2026-12-06T07:00:00.000Z"), "3 h ago");
        assert_eq!(ago(now, "2026-12-01T10:05:00.000Z"), "5 d ago");
        assert_eq!(ago(now, "2026-12-06T10:05:08.000Z"), "in 8 s");
        assert_eq!(ago(now, "garbage"), "");
    }
}
