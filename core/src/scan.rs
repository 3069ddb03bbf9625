//! Scanning bytes: for a byte, the `memchr` crate; for the bytes that may
//! stand in a quoted log value, eight at a time (the renderers run on every
//! failed request; a byte-at-a-time loop was most of their cost). Plain
//! shifts and masks on `u64` words, no `unsafe`.

/// 0x01 in every byte of a word.
pub const LO: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// High bit set in exactly the bytes of `x` that are zero (public for
/// the scan bench's baseline, the byte search this file had).
pub fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// Eight bytes as a little-endian word.
pub fn word(c: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(c);
    u64::from_le_bytes(a)
}

/// Index of the first `b` in `hay`, and of the last: the `memchr` crate's
/// (SIMD; `cargo bench -p upstream-cause --bench scan` measured it 2 to 4
/// times faster than the eight-bytes-at-a-time loop this file had, on
/// nginx's messages and on whole logs).
pub use memchr::{memchr, memrchr};

const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in the bytes of `x` that may stand as they are inside a
/// double-quoted log value: printable ASCII but `"` and `\\`.
fn plain_bytes(x: u64) -> u64 {
    let x7 = x & LOW7;
    // per byte, no carry: a 7-bit value plus at most 0x60 stays below 0x100
    let ge_space = x7.wrapping_add(0x60 * LO);
    let ge_del = x7.wrapping_add(LO);
    let printable = ge_space & !ge_del & !x & HI;
    printable & !zero_bytes(x ^ (u64::from(b'"') * LO)) & !zero_bytes(x ^ (u64::from(b'\\') * LO))
}

/// Whether a byte may stand as it is inside a double-quoted log value.
pub fn is_plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// How many bytes at the start of `bytes` are plain (see [`is_plain`]).
pub fn plain_prefix(bytes: &[u8]) -> usize {
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let bad = !plain_bytes(word(c)) & HI;
        if bad != 0 {
            return base + (bad.trailing_zeros() / 8) as usize;
        }
        base += 8;
    }
    let rest = chunks.remainder();
    base + rest.iter().position(|&b| !is_plain(b)).unwrap_or(rest.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_prefix_stops_at_every_byte_that_is_not_plain() {
        for b in 0..=255u8 {
            for at in 0..17 {
                let mut v = vec![b'a'; 17];
                v[at] = b;
                let want = if is_plain(b) { 17 } else { at };
                assert_eq!(plain_prefix(&v), want, "byte {b:#x} at {at}");
            }
        }
        assert_eq!(plain_prefix(b""), 0);
    }
}
