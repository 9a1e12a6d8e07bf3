//! Golden-output hashing, shared by the host tests and the firmware so that every target can
//! prove it computes the same bytes (`runtime/tests/golden.txt`).
//!
//! The recipe, for a model and a seed:
//!
//! 1. `Session::new` on the model (any arena of at least `arena_bytes()`).
//! 2. Fill the model's inputs `0, 1, …` in order, each whole, from one [`InputGen`] stream
//!    seeded with `seed`: a SplitMix64 generator whose 64-bit outputs are used as 8 bytes,
//!    little-endian, each byte an `i8`.
//! 3. `Session::invoke` (the whole sequence; state reset first).
//! 4. FNV-1a 64 ([`Fnv1a64`]) over the bytes of outputs `0, 1, …` in order, concatenated.
//!
//! [`hash_model`] does all four. `golden.txt` holds one line per fixture,
//! `<fixture-dir-name> <seed> <hash as 16 lowercase hex digits>`; `#` starts a comment.

use crate::{Error, Model, Session};

/// FNV-1a, 64-bit (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`).
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv1a64 {
    /// The empty hash.
    pub const fn new() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    /// Hashes `bytes` after what came before.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Hashes int8 values as their two's-complement bytes.
    pub fn update_i8(&mut self, values: &[i8]) {
        for &v in values {
            self.update(&[v as u8]);
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a64::new();
    h.update(bytes);
    h.finish()
}

/// Deterministic golden inputs: SplitMix64, each output used as 8 little-endian bytes.
#[derive(Debug, Clone)]
pub struct InputGen {
    state: u64,
    buf: [u8; 8],
    used: usize,
}

impl InputGen {
    /// A stream seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        InputGen {
            state: seed,
            buf: [0; 8],
            used: 8,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `out` with the next bytes of the stream.
    pub fn fill(&mut self, out: &mut [i8]) {
        for o in out {
            if self.used == 8 {
                self.buf = self.next_u64().to_le_bytes();
                self.used = 0;
            }
            *o = self.buf[self.used] as i8;
            self.used += 1;
        }
    }
}

/// Runs the golden recipe (module doc) on `session`: fills every input from `seed`, invokes,
/// and returns the FNV-1a 64 of all outputs.
pub fn hash_session(session: &mut Session<'_, '_>, seed: u64) -> Result<u64, Error> {
    let mut gen = InputGen::new(seed);
    for i in 0..session.model().n_inputs() {
        gen.fill(session.input_mut(i)?);
    }
    session.invoke()?;
    hash_outputs(session)
}

/// FNV-1a 64 of the bytes of every output of `session`, in order, as they are now.
pub fn hash_outputs(session: &Session<'_, '_>) -> Result<u64, Error> {
    let mut h = Fnv1a64::new();
    for i in 0..session.model().n_outputs() {
        h.update_i8(session.output(i)?);
    }
    Ok(h.finish())
}

/// [`hash_session`] on a fresh session of `model` in `arena`.
pub fn hash_model(model: &Model<'_>, arena: &mut [u8], seed: u64) -> Result<u64, Error> {
    let mut s = Session::new(model, arena)?;
    hash_session(&mut s, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_known_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        let mut h = Fnv1a64::new();
        h.update(b"foo");
        h.update_i8(&[b'b' as i8, b'a' as i8, b'r' as i8]);
        assert_eq!(h.finish(), 0x85944171f73967e8);
    }

    #[test]
    fn input_stream_is_splitmix64_bytes() {
        // SplitMix64 from seed 0 starts 0xe220a8397b1dcdaf (Vigna's reference).
        let mut g = InputGen::new(0);
        let mut b = [0i8; 10];
        g.fill(&mut b[..3]);
        g.fill(&mut b[3..]);
        let first = 0xe220a8397b1dcdafu64.to_le_bytes();
        for i in 0..8 {
            assert_eq!(b[i] as u8, first[i]);
        }
    }
}
