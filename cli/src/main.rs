//! `upstream-cause`: why nginx answered 502 or 504, from its error logs
//! alone, for an nginx that cannot load the module. The same parser,
//! classifier, codes and hints as the module (`upstream-cause-core`).

mod assemble;
mod input;
mod report;
mod status;
mod summary;
mod when;

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use memchr::memmem;
use upstream_cause_core::errlog::{self, Time};
use upstream_cause_core::prefix;

use assemble::{Assembler, Request};
use input::{Followed, Splitter};
use summary::{By, Summary};

/// Why nginx answered 502 or 504, from its error logs: every failed
/// upstream attempt classified into the module's cause codes.
#[derive(Parser)]
#[command(name = "upstream-cause", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand)]
enum Command {
    /// Per cause: failures, share, requests, first and last seen, top
    /// upstreams and peers, and failures per minute (the default)
    Summary(Opts),
    /// One JSON object per failed request, a line each
    Requests(Opts),
    /// The module's counters, in node_exporter's textfile format
    Prometheus(Opts),
    /// The live view's document (the module's upstream_cause_status), as
    /// JSON or its HTML page: per peer, failures by cause in total and
    /// over the log's last 1, 5 and 15 minutes, first and last failure,
    /// and the last failures
    Status(StatusOpts),
}

#[derive(Args, Clone)]
struct StatusOpts {
    /// `json`, or `html`: the page, to open from a file
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// The last failures the document lists
    #[arg(long, value_name = "N", default_value_t = status::RECENT)]
    recent: usize,
    #[command(flatten)]
    opts: Opts,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Html,
}

#[derive(Args, Clone)]
struct Opts {
    /// Only lines at or after T: nginx's "2026/11/25 10:00:00", ISO
    /// 8601 ("2026-11-25T10:00"), a time of today ("10:00") or an age
    /// ("90s", "15m", "2h", "7d" ago), all in the log's local time
    #[arg(long, value_name = "T", value_parser = when::parse)]
    since: Option<Time>,
    /// Only lines before T (as --since)
    #[arg(long, value_name = "T", value_parser = when::parse)]
    until: Option<Time>,
    /// The summary's rows
    #[arg(long, value_enum, default_value_t = By::Cause)]
    by: By,
    /// Keep reading the files as they grow, through rotation (renamed and
    /// recreated, or copied and truncated)
    #[arg(short, long)]
    follow: bool,
    /// Seconds between two lines of one request at most: a later line on
    /// the same connection starts another request (set it above your
    /// longest proxy timeout)
    #[arg(long, value_name = "SECONDS", default_value_t = 65)]
    window: u32,
    /// With --follow: seconds between two summaries or expositions
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    interval: u32,
    /// Write the report to FILE (summary and prometheus: a temporary file
    /// renamed over it, as a textfile collector wants it)
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// nginx error logs, plain or gzip-compressed; "-" or none: standard input
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Summary,
    Requests,
    Prometheus,
    /// The live view's document; `true`: its page.
    Status(bool),
}

/// Open requests kept at once (and at most 64 MiB of them: assemble.rs).
const OPEN_MAX: usize = 100_000;

/// Everything the lines go through.
struct Run {
    kind: Kind,
    since: Option<Time>,
    until: Option<Time>,
    assembler: Assembler,
    summary: Summary,
    counters: report::Counters,
    status: status::StatusView,
    upstream: memmem::Finder<'static>,
    resolve: memmem::Finder<'static>,
    module_key: memmem::Finder<'static>,
    prematurely: memmem::Finder<'static>,
    /// Failure texts: a line at error and above with one of them is read
    /// even without "upstream" (cut short, it is counted).
    failure: [memmem::Finder<'static>; 2],
    out: Box<dyn Write>,
    failed: Option<io::Error>,
    /// The timestamp of the last line, as written ([`stamp_of`]).
    stamp: (u64, u64, u32),
}

impl Run {
    fn on_request(&mut self, r: Request) {
        match self.kind {
            Kind::Summary => self.summary.add(&r),
            Kind::Prometheus => self.counters.add(&r),
            Kind::Status(_) => self.status.add(&r),
            Kind::Requests => {
                if self.failed.is_none() {
                    let mut l = report::json_line(&r);
                    l.push('\n');
                    if let Err(e) = self.out.write_all(l.as_bytes()) {
                        self.failed = Some(e);
                    }
                }
            }
        }
    }

    fn line(&mut self, raw: &[u8]) {
        // the cheap tests first: most of a log is other lines; nginx's may
        // come after a prefix (docker, kubectl, compose, journald, syslog)
        let Some((start, origin)) = prefix::find(raw) else {
            return;
        };
        let line = &raw[start..];
        self.assembler.stats.nginx_lines += 1;
        // the log's clock moves with every line (a request nginx's lines
        // alone tell is closed once the window has passed)
        let stamp = stamp_of(line);
        if stamp != self.stamp {
            self.stamp = stamp;
            if let Some(t) = errlog::parse_time(&line[..19]) {
                self.with_closed(|a, out| a.tick(t, &mut |r| out(r)));
            }
        }
        // nginx logs upstream failures at [error] and above ([crit] for some
        // connects), a client that left at [info], and its resolver failures
        // at [error]; the module's own line is at its configured level
        // stream writes a session's start, its peer, its end and its idle
        // timeout at [info] too
        let level = line[21];
        let mut session = false;
        if !matches!(level, b'e' | b'c' | b'a') {
            let ours = self.module_key.find(line).is_some();
            let info = level == b'i';
            let client_left = info && self.prematurely.find(line).is_some();
            session = info && errlog::may_be_session_line(line);
            if !(ours || client_left || session) {
                return;
            }
        }
        let resolver = level == b'e' && self.resolve.find(line).is_some();
        // a failure's line cut before "upstream" (and its suffix, whose
        // last value is quoted) is counted as unreadable
        let failure = || {
            matches!(level, b'e' | b'c' | b'a')
                && !line.trim_ascii_end().ends_with(b"\"")
                && self.failure.iter().any(|f| f.find(line).is_some())
        };
        if !resolver && !session && self.upstream.find(line).is_none() && !failure() {
            return;
        }
        let Some(mut l) = errlog::parse_line(line) else {
            self.assembler.stats.unreadable += 1;
            return;
        };
        l.origin = origin;
        if self.since.is_some_and(|s| l.time < s) || self.until.is_some_and(|u| l.time >= u) {
            return;
        }
        let mut done = Vec::new();
        self.assembler.line(&l, &mut |r| done.push(r));
        for r in done {
            self.on_request(r);
        }
    }

    fn with_closed(&mut self, f: impl FnOnce(&mut Assembler, &mut dyn FnMut(Request))) {
        let mut done = Vec::new();
        f(&mut self.assembler, &mut |r| done.push(r));
        for r in done {
            self.on_request(r);
        }
    }

    fn report(&mut self, read: &input::ReadStats, inputs: usize, color: bool) -> Vec<u8> {
        match self.kind {
            Kind::Summary => self
                .summary
                .render(&self.assembler.stats, read, inputs, color)
                .into_bytes(),
            Kind::Prometheus => self.counters.render(),
            Kind::Status(html) => self.status.render(html),
            Kind::Requests => Vec::new(),
        }
    }
}

/// A line's 19 bytes of timestamp as three words: compared per line,
/// cheaper than a slice comparison (`looks_like_nginx` has checked the
/// line is longer).
fn stamp_of(line: &[u8]) -> (u64, u64, u32) {
    let w = |at: usize| u64::from_le_bytes(line[at..at + 8].try_into().unwrap_or_default());
    (
        w(0),
        w(8),
        u32::from_le_bytes(line[15..19].try_into().unwrap_or_default()),
    )
}

/// Writes `bytes` to `path` through a temporary file in its directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn color_wanted(to_file: bool) -> bool {
    // https://no-color.org: any non-empty NO_COLOR turns colour off
    !to_file && io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut recent = status::RECENT;
    let (kind, opts) = match cli.command {
        None => (Kind::Summary, cli.opts),
        Some(Command::Summary(o)) => (Kind::Summary, o),
        Some(Command::Requests(o)) => (Kind::Requests, o),
        Some(Command::Prometheus(o)) => (Kind::Prometheus, o),
        Some(Command::Status(s)) => {
            recent = s.recent;
            (Kind::Status(s.format == Format::Html), s.opts)
        }
    };
    match run(kind, opts, recent) {
        Ok(code) => code,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upstream-cause: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(kind: Kind, opts: Opts, recent: usize) -> io::Result<ExitCode> {
    let stdin_only = opts.files.is_empty() || opts.files.iter().all(|f| f.as_os_str() == "-");
    if stdin_only && io::stdin().is_terminal() {
        eprintln!("upstream-cause: no input: name nginx's error log (e.g. /var/log/nginx/error.log) or pipe it in");
        return Ok(ExitCode::from(2));
    }
    if opts.follow && stdin_only {
        eprintln!("upstream-cause: --follow needs a FILE (standard input is read to its end anyway)");
        return Ok(ExitCode::from(2));
    }
    if opts.follow {
        for f in &opts.files {
            if input::is_gzip(f).unwrap_or(false) {
                eprintln!(
                    "upstream-cause: {}: --follow reads a live log, not a compressed one",
                    f.display()
                );
                return Ok(ExitCode::from(2));
            }
        }
    }
    if opts.follow && kind == Kind::Prometheus && opts.output.is_none() {
        eprintln!("upstream-cause: prometheus --follow needs --output FILE (the textfile it rewrites)");
        return Ok(ExitCode::from(2));
    }
    let out: Box<dyn Write> = match (&opts.output, kind) {
        (Some(p), Kind::Requests) => Box::new(io::BufWriter::new(std::fs::File::create(p)?)),
        _ => Box::new(io::BufWriter::new(io::stdout().lock())),
    };
    let mut run = Run {
        kind,
        since: opts.since,
        until: opts.until,
        assembler: Assembler::new(i64::from(opts.window), OPEN_MAX),
        summary: Summary::new(opts.by),
        counters: report::Counters::default(),
        status: status::StatusView::new(recent),
        upstream: memmem::Finder::new(b"upstream").into_owned(),
        resolve: memmem::Finder::new(b"resolve").into_owned(),
        module_key: memmem::Finder::new(errlog::MODULE_KEY).into_owned(),
        prematurely: memmem::Finder::new(b"prematurely closed").into_owned(),
        failure: [&b"failed ("[..], b"timed out ("].map(|f| memmem::Finder::new(f).into_owned()),
        out,
        failed: None,
        stamp: (0, 0, 0),
    };
    let color = color_wanted(opts.output.is_some());
    let files: Vec<PathBuf> = if opts.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        opts.files.clone()
    };
    let mut read = input::ReadStats::default();
    let mut bad_inputs = 0;
    let mut followed = Vec::new();
    for path in &files {
        let mut s = Splitter::new();
        let res = if path.as_os_str() == "-" {
            s.read_from(&mut io::stdin().lock(), &mut |l| run.line(l))
        } else if opts.follow {
            match Followed::new(path.clone()) {
                Ok(mut f) => {
                    let r = f.poll(&mut |l| run.line(l));
                    followed.push(f);
                    r
                }
                Err(e) => Err(e),
            }
        } else {
            input::open(path).and_then(|mut r| s.read_from(&mut *r, &mut |l| run.line(l)))
        };
        s.finish(&mut |l| run.line(l));
        add(&mut read, &s.stats);
        if let Err(e) = res {
            eprintln!("upstream-cause: {}: {e}", path.display());
            bad_inputs += 1;
        }
    }
    if opts.follow {
        if followed.is_empty() {
            eprintln!("upstream-cause: --follow: none of the files could be opened");
            return Ok(ExitCode::from(1));
        }
        follow(&mut run, &mut followed, &opts, &mut read, files.len(), color)?;
    }
    run.with_closed(|a, out| a.finish(&mut |r| out(r)));
    for f in &followed {
        add(&mut read, &f.stats());
    }
    if let Some(e) = run.failed.take() {
        return Err(e);
    }
    let bytes = run.report(&read, files.len(), color);
    match (&opts.output, kind) {
        (Some(p), Kind::Summary | Kind::Prometheus | Kind::Status(_)) => write_atomically(p, &bytes)?,
        _ => run.out.write_all(&bytes)?,
    }
    run.out.flush()?;
    Ok(if bad_inputs > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn add(total: &mut input::ReadStats, s: &input::ReadStats) {
    total.bytes += s.bytes;
    total.lines += s.lines;
    total.too_long += s.too_long;
}

/// `--follow`: polls the files until killed; closes the requests the log
/// has gone quiet on, and rewrites the report every `interval`.
fn follow(
    run: &mut Run,
    files: &mut [Followed],
    opts: &Opts,
    read: &mut input::ReadStats,
    inputs: usize,
    color: bool,
) -> io::Result<()> {
    let interval = Duration::from_secs(u64::from(opts.interval.max(1)));
    let mut last_report = Instant::now();
    let mut last_line = Instant::now();
    loop {
        let mut got = 0;
        for f in files.iter_mut() {
            match f.poll(&mut |l| run.line(l)) {
                Ok(n) => got += n,
                Err(e) => eprintln!("upstream-cause: {}: {e}", f.path.display()),
            }
        }
        if got > 0 {
            last_line = Instant::now();
        } else {
            // the log is quiet: its clock moves with ours
            let quiet = last_line.elapsed().as_secs() as i64;
            let log_now = run.assembler.now();
            if log_now != Time::MIN && quiet > 0 {
                run.with_closed(|a, out| a.sweep(log_now + quiet, &mut |r| out(r)));
            }
        }
        if let Some(e) = run.failed.take() {
            return Err(e);
        }
        if run.kind == Kind::Requests {
            run.out.flush()?;
        } else if last_report.elapsed() >= interval {
            last_report = Instant::now();
            let mut now = *read;
            for f in files.iter() {
                add(&mut now, &f.stats());
            }
            let bytes = run.report(&now, inputs, color);
            match &opts.output {
                Some(p) => write_atomically(p, &bytes)?,
                None => {
                    if color {
                        // redraw in place on a terminal
                        run.out.write_all(b"\x1b[H\x1b[2J")?;
                    }
                    run.out.write_all(&bytes)?;
                    run.out.write_all(b"\n")?;
                    run.out.flush()?;
                }
            }
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
