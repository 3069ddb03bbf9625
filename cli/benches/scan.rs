//! The byte scan the core had (eight bytes at a time in plain Rust, kept
//! here as the baseline) against the `memchr` crate (SIMD) the core uses
//! now, on what each is used for: the module's per-line search in nginx's
//! messages (about 100 bytes) and the classifier's search in whole logs.
//!
//! `cargo bench -p upstream-cause --bench scan` (plain `main`: no nightly).

use std::hint::black_box;
use std::time::Instant;

use upstream_cause_core::scan::{word, zero_bytes, LO};

/// Index of the first `b` in `hay`, eight bytes at a time (this runs on
/// every captured line).
fn swar_memchr(b: u8, hay: &[u8]) -> Option<usize> {
    let pat = LO * u64::from(b);
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let z = zero_bytes(word(c) ^ pat);
        if z != 0 {
            return Some(base + (z.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks.remainder().iter().position(|&x| x == b).map(|i| base + i)
}

/// Index of the last `b` in `hay`.
fn swar_memrchr(b: u8, hay: &[u8]) -> Option<usize> {
    let pat = LO * u64::from(b);
    let mut chunks = hay.rchunks_exact(8);
    let mut end = hay.len();
    for c in &mut chunks {
        end -= 8;
        let z = zero_bytes(word(c) ^ pat);
        if z != 0 {
            return Some(end + 7 - (z.leading_zeros() / 8) as usize);
        }
    }
    chunks.remainder().iter().rposition(|&x| x == b)
}

fn time(name: &str, bytes: usize, reps: usize, mut f: impl FnMut() -> usize) {
    let mut best = f64::MAX;
    let mut sink = 0;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            sink += f();
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    black_box(sink);
    let ns = best * 1e9 / reps as f64;
    println!("{name:<48} {ns:>9.1} ns/call  {:>6.2} GB/s", bytes as f64 / ns);
}

fn main() {
    let msg: &[u8] = b"connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, \
        server: , request: \"GET /ping HTTP/1.1\", upstream: \"http://127.0.0.1:8081/ping\", host: \"localhost\"";
    let mut chunk = Vec::new();
    while chunk.len() < 1 << 20 {
        chunk.extend_from_slice(msg);
        chunk.push(b'\n');
    }
    for (what, hay, needle) in [("a line, '(' (early)", msg, b'('), ("a line, '~' (absent)", msg, b'~')] {
        let reps = 2_000_000;
        time(&format!("8 bytes at a time, memchr  {what}"), hay.len(), reps, || {
            swar_memchr(needle, black_box(hay)).unwrap_or(0)
        });
        time(&format!("memchr crate, memchr       {what}"), hay.len(), reps, || {
            memchr::memchr(needle, black_box(hay)).unwrap_or(0)
        });
        time(&format!("8 bytes at a time, memrchr {what}"), hay.len(), reps, || {
            swar_memrchr(needle, black_box(hay)).unwrap_or(0)
        });
        time(&format!("memchr crate, memrchr      {what}"), hay.len(), reps, || {
            memchr::memrchr(needle, black_box(hay)).unwrap_or(0)
        });
    }
    let reps = 200;
    time("8 bytes at a time, 1 MiB, count '\\n'", chunk.len(), reps, || {
        let (mut n, mut i) = (0, 0);
        while let Some(at) = swar_memchr(b'\n', &chunk[i..]) {
            n += 1;
            i += at + 1;
        }
        n
    });
    time("memchr crate, 1 MiB, count '\\n'", chunk.len(), reps, || {
        memchr::memchr_iter(b'\n', black_box(&chunk)).count()
    });
}
