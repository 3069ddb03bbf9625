//! Reading logs: files, rotated `.gz` files and standard input, in lines of
//! bounded length, and `--follow` across rotation (rename-and-create and
//! copytruncate).

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes read at a time.
const CHUNK: usize = 1 << 20;
/// The longest line taken; a longer one is skipped (nginx's own lines
/// hold at most 2,048 bytes).
pub const LINE_MAX: usize = 64 * 1024;

/// What the reader saw, besides lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub bytes: u64,
    pub lines: u64,
    /// Lines longer than [`LINE_MAX`], skipped.
    pub too_long: u64,
}

/// Splits a byte stream into lines (without their linefeed), whatever the
/// bytes; memory is one chunk plus one line at most.
pub struct Splitter {
    /// Allocated (and zeroed) once: `have` bytes of it hold input.
    buf: Vec<u8>,
    have: usize,
    /// Inside a line too long to keep: its bytes are dropped until its end.
    skipping: bool,
    pub stats: ReadStats,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Splitter {
    pub fn new() -> Self {
        Splitter {
            buf: vec![0; CHUNK + LINE_MAX + 1],
            have: 0,
            skipping: false,
            stats: ReadStats::default(),
        }
    }

    /// Reads `r` until it has nothing more now (its end, for a file);
    /// every whole line goes to `f`. Returns the bytes read.
    pub fn read_from<R: Read + ?Sized>(&mut self, r: &mut R, f: &mut impl FnMut(&[u8])) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            // what is kept between reads is at most LINE_MAX bytes: a
            // chunk's room is always there
            let start = self.have;
            let n = loop {
                match r.read(&mut self.buf[start..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                return Ok(total);
            }
            self.have += n;
            total += n as u64;
            self.stats.bytes += n as u64;
            self.split(start, f);
        }
    }

    /// Hands out the whole lines in the buffer; keeps the partial one.
    fn split(&mut self, fresh: usize, f: &mut impl FnMut(&[u8])) {
        let mut from = 0;
        // a partial line carried over has no newline before `fresh`
        for nl in memchr::memchr_iter(b'\n', &self.buf[fresh..self.have]) {
            let end = fresh + nl;
            self.stats.lines += 1;
            if self.skipping {
                self.skipping = false;
            } else if end - from > LINE_MAX {
                // as long a line is skipped whether it came in one read or several
                self.stats.too_long += 1;
            } else {
                f(&self.buf[from..end]);
            }
            from = end + 1;
        }
        let rest = self.have - from;
        if self.skipping || rest > LINE_MAX {
            if !self.skipping {
                self.skipping = true;
                self.stats.too_long += 1;
            }
            self.have = 0;
        } else {
            self.buf.copy_within(from..self.have, 0);
            self.have = rest;
        }
    }

    /// The end of the input: a last line without its linefeed is a line.
    pub fn finish(&mut self, f: &mut impl FnMut(&[u8])) {
        if self.have > 0 && !self.skipping {
            self.stats.lines += 1;
            if self.have > LINE_MAX {
                self.stats.too_long += 1;
            } else {
                f(&self.buf[..self.have]);
            }
        }
        self.have = 0;
        self.skipping = false;
    }
}

/// Opens a log, through gzip when it is compressed (by its first bytes, not
/// its name).
/// Any file: a pipe or FIFO too (`<(zcat ...)`), which cannot seek.
pub fn open(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut r = io::BufReader::with_capacity(CHUNK, File::open(path)?);
    let gz = loop {
        match r.fill_buf() {
            Ok(b) => break b.starts_with(&[0x1f, 0x8b]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if gz {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(r)))
    } else {
        Ok(Box::new(r))
    }
}

/// Whether a file starts as gzip does.
pub fn is_gzip(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; 2];
    let n = File::open(path)?.read(&mut magic)?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

/// A log followed as it grows, through rotation.
pub struct Followed {
    pub path: PathBuf,
    file: Option<File>,
    id: (u64, u64),
    offset: u64,
    /// The last bytes read, to tell a file truncated and written again.
    tail: Vec<u8>,
    splitter: Splitter,
    /// The file the name stood for before a rename: nginx writes to it
    /// until it reopens its logs, so it is read until quiet for a while.
    old: Option<(File, Splitter, Instant)>,
    /// What the splitters of earlier files read.
    done: ReadStats,
}

/// Bytes kept of what was read last.
const TAIL: usize = 64;
/// How long a renamed log is still read after its last new bytes.
const DRAIN: Duration = Duration::from_secs(5);

fn id_of(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

fn add(total: &mut ReadStats, s: &ReadStats) {
    total.bytes += s.bytes;
    total.lines += s.lines;
    total.too_long += s.too_long;
}

impl Followed {
    /// Starts at the file's beginning (as the other inputs are read whole).
    pub fn new(path: PathBuf) -> io::Result<Self> {
        let file = File::open(&path)?;
        let id = id_of(&file.metadata()?);
        Ok(Followed {
            path,
            file: Some(file),
            id,
            offset: 0,
            tail: Vec::new(),
            splitter: Splitter::new(),
            old: None,
            done: ReadStats::default(),
        })
    }

    /// What was read of this name, through its rotations.
    pub fn stats(&self) -> ReadStats {
        let mut s = self.done;
        add(&mut s, &self.splitter.stats);
        if let Some((_, sp, _)) = &self.old {
            add(&mut s, &sp.stats);
        }
        s
    }

    /// Reads what was added since the last call; after a rotation, the
    /// rest of the old file (for a while) and the new one from its start.
    pub fn poll(&mut self, f: &mut impl FnMut(&[u8])) -> io::Result<u64> {
        let mut got = 0;
        if let Some((file, sp, last)) = self.old.as_mut() {
            let n = sp.read_from(file, f)?;
            got += n;
            if n > 0 {
                *last = Instant::now();
            } else if last.elapsed() >= DRAIN {
                if let Some((_, mut sp, _)) = self.old.take() {
                    sp.finish(f);
                    add(&mut self.done, &sp.stats);
                }
            }
        }
        if let Some(file) = self.file.as_mut() {
            // copytruncate: the file is shorter than what was read of it,
            // or (written again past that length by then) its bytes before
            // that point are not the ones read
            let mut was = [0u8; TAIL];
            let k = self.tail.len();
            let rewritten = file.metadata()?.len() < self.offset
                || (k > 0 && (file.read_at(&mut was[..k], self.offset - k as u64)? < k || was[..k] != self.tail[..]));
            if rewritten {
                file.seek(SeekFrom::Start(0))?;
                self.offset = 0;
                self.tail.clear();
                self.splitter.finish(f);
            }
            let n = self.splitter.read_from(file, f)?;
            self.offset += n;
            got += n;
            if n > 0 {
                let k = self.offset.min(TAIL as u64) as usize;
                let mut t = [0u8; TAIL];
                let r = file.read_at(&mut t[..k], self.offset - k as u64)?;
                self.tail = t[..r].to_vec();
            }
        }
        // rename-and-create: the name now stands for another file
        if let Ok(m) = std::fs::metadata(&self.path) {
            if id_of(&m) != self.id {
                if let Ok(new) = File::open(&self.path) {
                    self.id = id_of(&new.metadata()?);
                    let old = self.file.replace(new);
                    let sp = std::mem::take(&mut self.splitter);
                    if let Some((_, mut earlier, _)) = self.old.take() {
                        earlier.finish(f);
                        add(&mut self.done, &earlier.stats);
                    }
                    if let Some(old) = old {
                        self.old = Some((old, sp, Instant::now()));
                    }
                    self.offset = 0;
                    self.tail.clear();
                    got += self.poll(f)?;
                }
            }
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8], chunk_reads: usize) -> (Vec<Vec<u8>>, ReadStats) {
        struct Slow<'a>(&'a [u8], usize);
        impl Read for Slow<'_> {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(b.len()).min(self.1);
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut s = Splitter::new();
        let mut got = Vec::new();
        s.read_from(&mut Slow(input, chunk_reads), &mut |l| got.push(l.to_vec()))
            .unwrap();
        s.finish(&mut |l| got.push(l.to_vec()));
        (got, s.stats)
    }

    #[test]
    fn lines_come_out_whole_whatever_the_reads() {
        let input = b"a\nbb\n\nccc";
        for step in [1, 2, 3, 100] {
            let (got, st) = lines_of(input, step);
            assert_eq!(got, [&b"a"[..], b"bb", b"", b"ccc"], "step {step}");
            assert_eq!((st.lines, st.bytes, st.too_long), (4, 9, 0));
        }
    }

    #[test]
    fn a_line_too_long_is_skipped_and_counted_without_being_kept() {
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * CHUNK));
        input.extend_from_slice(b"\nlast\n");
        let (got, st) = lines_of(&input, CHUNK / 3);
        assert_eq!(got, [&b"first"[..], b"last"]);
        assert_eq!((st.lines, st.too_long), (3, 1));
    }
}
