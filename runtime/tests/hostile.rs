//! Hostile model files: every committed fixture, mutated in every way we can name, must be
//! refused by `Model::parse` with a specific `Error` (never a panic), and whatever parse accepts
//! must then run (`Session::new`, `invoke`, `invoke_step`, `run`, `step`) without a panic or an
//! error (the format's promise: after a successful parse nothing in the file can make a session
//! fail).
//!
//! Most mutations recompute the CRC so that the structural validation, not the checksum, is
//! what refuses them. The byte-by-byte sweep (`every_byte_mutated_parses_or_runs`) samples
//! positions so that the suite stays well under a minute in a debug build; set
//! `KINGLET_HOSTILE_FULL=1` (best with `--release`) to mutate every byte of every fixture.
//! See `docs/robustness.md`.

mod common;

use kinglet::golden::InputGen;
use kinglet::{Error, Model, Session};
use std::ops::Range;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Sessions whose (mutated) arena would be larger than this are not created (the parse result
/// is still checked).
const MAX_ARENA: usize = 64 << 20;

// Header field offsets (docs/format.md).
const H_VMAJOR: usize = 4;
const H_VMINOR: usize = 6;
const H_FILE_LEN: usize = 8;
const H_CRC: usize = 12;
const H_FLAGS: usize = 16;
const H_ARENA: usize = 20;
const H_N_TENSORS: usize = 24;
const H_TENSORS_OFF: usize = 28;
const H_N_OPS: usize = 32;
const H_OPS_OFF: usize = 36;
const H_N_INPUTS: usize = 40;
const H_N_OUTPUTS: usize = 42;
const H_IO_OFF: usize = 44;
const H_DATA_OFF: usize = 48;
const H_DATA_LEN: usize = 52;
const H_SEQ_LEN: usize = 56;
const H_RESERVED: usize = 60;

const TENSOR_LEN: usize = 48;
const OP_LEN: usize = 24;

fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn wr32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn crc_of(b: &[u8]) -> u32 {
    let mut d = CRC.digest();
    d.update(&b[..H_CRC]);
    d.update(&b[H_CRC + 4..]);
    d.finalize()
}

/// Rewrites the checksum so that the buffer passes the CRC check.
fn fix_crc(b: &mut [u8]) {
    let c = crc_of(b);
    wr32(b, H_CRC, c);
}

/// Parses `b` after recomputing its CRC; if accepted, runs it (`exercise`) when `run`.
fn parse_fixed_with(b: &mut [u8], run: bool) -> Result<(), Error> {
    fix_crc(b);
    let m = Model::parse(b)?;
    if run {
        exercise(&m, true);
    }
    Ok(())
}

/// Parses `b` after recomputing its CRC and runs it if accepted.
fn parse_fixed(b: &mut [u8]) -> Result<(), Error> {
    parse_fixed_with(b, true)
}

/// Whether to mutate item `i` of `n` (tensors, ops) of a fixture: all of them in full mode or
/// for small tables, otherwise an even sample of about 24 (keeps debug runs short; the big
/// fixture's parse is quadratic in its 193 tensors).
fn sampled(i: usize, n: usize) -> bool {
    let cap = 24;
    full_mode() || n <= cap || i % n.div_ceil(cap) == 0 || i == n - 1
}

fn full_mode() -> bool {
    std::env::var_os("KINGLET_HOSTILE_FULL").is_some_and(|v| v != "0")
}

/// Runs every session entry point on a parsed model; any error or panic is a bug (a parsed
/// model's contents cannot make a session fail). `api` also drives `run` / `step`.
fn exercise(m: &Model<'_>, api: bool) {
    let need = m.arena_bytes();
    if need > MAX_ARENA {
        return;
    }
    let mut arena = vec![0u8; need];
    assert_eq!(
        Session::new(m, &mut arena[..need - 1]).err(),
        Some(Error::ArenaTooSmall {
            needed: need,
            got: need - 1
        })
    );
    let mut s = Session::new(m, &mut arena).expect("Session::new on a parsed model");
    let mut g = InputGen::new(0x5eed);
    for i in 0..m.n_inputs() {
        g.fill(s.input_mut(i).expect("input of a parsed model"));
    }
    s.invoke().expect("invoke on a parsed model");
    for i in 0..m.n_outputs() {
        s.output(i).expect("output of a parsed model");
    }
    let frames = if api { m.seq_len().min(3) } else { 1 };
    if m.is_streamable() {
        s.reset();
        for _ in 0..frames {
            for i in 0..m.n_inputs() {
                g.fill(s.input_frame_mut(i).expect("input frame of a parsed model"));
            }
            s.invoke_step().expect("invoke_step on a parsed model");
            for i in 0..m.n_outputs() {
                s.output_frame(i).expect("output frame of a parsed model");
            }
        }
    } else {
        assert_eq!(s.invoke_step(), Err(Error::NotStreamable));
    }
    if !api || m.n_inputs() != 1 || m.n_outputs() != 1 {
        return;
    }
    let (x, y) = (m.input(0).unwrap(), m.output(0).unwrap());
    let mut input = vec![0i8; x.nbytes()];
    g.fill(&mut input);
    let mut out = vec![0i8; y.nbytes()];
    s.run(&input, &mut out).expect("run on a parsed model");
    // Wrong caller lengths are the caller's error, reported as such.
    let mut short = vec![0i8; y.nbytes().saturating_sub(1)];
    assert!(matches!(
        s.run(&input, &mut short),
        Err(Error::OutputLen { .. })
    ));
    assert!(matches!(
        s.run(&input[1..], &mut out),
        Err(Error::InputLen { .. })
    ));
    if m.is_streamable() {
        let t = m.seq_len();
        let mut frame = vec![0i8; x.step_bytes(t)];
        let mut fo = vec![0i8; y.step_bytes(t)];
        s.reset();
        for _ in 0..frames {
            g.fill(&mut frame);
            s.step(&frame, &mut fo).expect("step on a parsed model");
        }
        let mut big = vec![0i8; frame.len() + 1];
        assert!(matches!(
            s.step(&big[..], &mut fo),
            Err(Error::InputLen { .. })
        ));
        big.clear();
    }
}

/// The committed fixtures and the one unit16-layout model (its LSTM decodes another operand
/// set), parsed once to check they are valid.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut f = common::fixtures();
    let unit16 = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/mnist_lstm_unit16/model.kgl");
    f.push((
        "mnist_lstm_unit16".to_string(),
        std::fs::read(&unit16).expect("models/mnist_lstm_unit16/model.kgl"),
    ));
    for (name, b) in &f {
        Model::parse(b).unwrap_or_else(|e| panic!("{name}: committed fixture: {e}"));
    }
    f
}

/// File ranges of a parsed model's pieces.
struct Layout {
    tensors: Range<usize>,
    ops: Range<usize>,
    io: Range<usize>,
    /// File ranges of every op's tensor list and parameter words.
    op_lists: Vec<Range<usize>>,
    /// `(file range, element size)` of every constant tensor.
    consts: Vec<(Range<usize>, usize)>,
}

fn layout(b: &[u8]) -> Layout {
    let m = Model::parse(b).unwrap();
    let t0 = rd32(b, H_TENSORS_OFF) as usize;
    let o0 = rd32(b, H_OPS_OFF) as usize;
    let i0 = rd32(b, H_IO_OFF) as usize;
    let d0 = rd32(b, H_DATA_OFF) as usize;
    let n_io = (rd16(b, H_N_INPUTS) + rd16(b, H_N_OUTPUTS)) as usize;
    let mut op_lists = Vec::new();
    for k in 0..m.n_ops() {
        let at = o0 + k * OP_LEN;
        let (nt, np) = (rd16(b, at + 4) as usize, rd16(b, at + 6) as usize);
        let (to, po) = (rd32(b, at + 8) as usize, rd32(b, at + 12) as usize);
        op_lists.push(d0 + to..d0 + to + 2 * nt);
        op_lists.push(d0 + po..d0 + po + 4 * np);
    }
    let mut consts = Vec::new();
    for i in 0..m.n_tensors() {
        let t = m.tensor(i).unwrap();
        if t.kind() == kinglet::TensorKind::Const {
            consts.push((
                d0 + t.offset()..d0 + t.offset() + t.nbytes(),
                t.dtype().size(),
            ));
        }
    }
    Layout {
        tensors: t0..t0 + m.n_tensors() * TENSOR_LEN,
        ops: o0..o0 + m.n_ops() * OP_LEN,
        io: i0..i0 + 2 * n_io,
        op_lists,
        consts,
    }
}

// ---------------------------------------------------------------------------------------------
// Lengths, checksum, version, magic.

#[test]
fn every_truncation_is_refused() {
    for (name, b) in fixtures() {
        for len in 0..b.len() {
            let got = Model::parse(&b[..len]).err();
            let want = if len < 64 {
                Error::Truncated {
                    needed: 64,
                    got: len,
                }
            } else {
                Error::Truncated {
                    needed: b.len(),
                    got: len,
                }
            };
            assert_eq!(got, Some(want), "{name}: truncated to {len}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(
            Model::parse(&long).err(),
            Some(Error::TrailingBytes {
                expected: b.len(),
                got: b.len() + 1
            }),
            "{name}"
        );
    }
}

/// What a change of the bytes at `at` must give when the CRC is *not* recomputed.
fn expect_unfixed(b: &[u8], m: &[u8], at: usize) -> Error {
    if at < 4 {
        Error::BadMagic
    } else if at < H_VMINOR {
        Error::UnsupportedVersion {
            major: rd16(m, H_VMAJOR),
            minor: rd16(m, H_VMINOR),
        }
    } else if (H_FILE_LEN..H_CRC).contains(&at) {
        let fl = rd32(m, H_FILE_LEN) as usize;
        if fl > b.len() {
            Error::Truncated {
                needed: fl,
                got: b.len(),
            }
        } else {
            Error::TrailingBytes {
                expected: fl,
                got: b.len(),
            }
        }
    } else {
        Error::Checksum {
            stored: rd32(m, H_CRC),
            computed: crc_of(m),
        }
    }
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn bit_flips_are_refused() {
    let mut rng = Rng(1);
    for (name, b) in fixtures() {
        // Every bit of the header (every bit of the tables too in full mode); random bits
        // elsewhere.
        let lay = layout(&b);
        let end = if full_mode() { lay.io.end } else { 64 };
        let mut bits: Vec<usize> = (0..end * 8).collect();
        for _ in 0..300 {
            bits.push(rng.below(b.len() * 8));
        }
        for bit in bits {
            let mut m = b.clone();
            m[bit / 8] ^= 1 << (bit % 8);
            let want = expect_unfixed(&b, &m, bit / 8);
            assert_eq!(Model::parse(&m).err(), Some(want), "{name}: bit {bit}");
        }
        // Several bits at once, anywhere after the length field: always the checksum.
        for n in 2..=40 {
            let mut m = b.clone();
            for _ in 0..n {
                let bit = 16 * 8 + rng.below((b.len() - 16) * 8);
                m[bit / 8] ^= 1 << (bit % 8);
            }
            if m == b {
                continue;
            }
            let want = Error::Checksum {
                stored: rd32(&m, H_CRC),
                computed: crc_of(&m),
            };
            assert_eq!(Model::parse(&m).err(), Some(want), "{name}: {n} bits");
        }
    }
}

#[test]
fn bad_checksum_magic_and_version() {
    for (name, b) in fixtures() {
        let mut m = b.clone();
        let stored = rd32(&b, H_CRC) ^ 0x8000_0001;
        wr32(&mut m, H_CRC, stored);
        assert_eq!(
            Model::parse(&m).err(),
            Some(Error::Checksum {
                stored,
                computed: rd32(&b, H_CRC)
            }),
            "{name}"
        );
        let mut m = b.clone();
        m[..4].copy_from_slice(b"KGLU");
        assert_eq!(parse_fixed(&mut m), Err(Error::BadMagic), "{name}");
        for major in [0u16, 2, 0xFFFF] {
            let mut m = b.clone();
            wr16(&mut m, H_VMAJOR, major);
            assert_eq!(
                parse_fixed(&mut m),
                Err(Error::UnsupportedVersion {
                    major,
                    minor: rd16(&b, H_VMAJOR + 2)
                }),
                "{name}"
            );
        }
        // Higher minor versions are read (they only add op codes and flags).
        for minor in [1u16, 0xFFFF] {
            let mut m = b.clone();
            wr16(&mut m, H_VMINOR, minor);
            assert_eq!(parse_fixed(&mut m), Ok(()), "{name}: minor {minor}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Header fields at extreme values, CRC recomputed.

#[test]
fn header_fields_at_extremes() {
    for (name, b) in fixtures() {
        let len = b.len() as u32;
        let fields32 = [
            H_FILE_LEN,
            H_FLAGS,
            H_ARENA,
            H_N_TENSORS,
            H_TENSORS_OFF,
            H_N_OPS,
            H_OPS_OFF,
            H_IO_OFF,
            H_DATA_OFF,
            H_DATA_LEN,
            H_SEQ_LEN,
            H_RESERVED,
        ];
        for at in fields32 {
            let orig = rd32(&b, at);
            let values = [
                0,
                1,
                2,
                16,
                u32::MAX,
                u32::MAX - 15,
                0x8000_0000,
                len - 1,
                len,
                len + 1,
                orig.wrapping_sub(1),
                orig.wrapping_add(1),
                orig.wrapping_sub(16),
                orig.wrapping_add(16),
            ];
            for v in values {
                if v == orig {
                    continue;
                }
                let mut m = b.clone();
                wr32(&mut m, at, v);
                let got = parse_fixed(&mut m);
                check_header_field(&name, &b, at, v, got);
            }
        }
        for at in [H_N_INPUTS, H_N_OUTPUTS] {
            let orig = rd16(&b, at);
            for v in [0u16, 2, 0xFFFF, orig.wrapping_add(1)] {
                if v == orig {
                    continue;
                }
                let mut m = b.clone();
                wr16(&mut m, at, v);
                let got = parse_fixed(&mut m);
                // Other counts can still describe a valid (if useless) model, which then runs:
                // 0 inputs, or an I/O list that runs into padding (zeros: tensor 0, often an
                // int8 activation) and names a tensor some op writes. Otherwise the I/O checks
                // refuse it, or the output checks (0 outputs: the last op writes none; an output
                // no op writes).
                assert!(
                    matches!(
                        got,
                        Ok(())
                            | Err(Error::Malformed { .. })
                            | Err(Error::BadOp {
                                what: "the last op writes no model output",
                                ..
                            })
                    ),
                    "{name}: field {at} = {v}: {got:?}"
                );
            }
        }
    }
}

/// The specific error a header field change must give (where determinable).
fn check_header_field(name: &str, b: &[u8], at: usize, v: u32, got: Result<(), Error>) {
    let ctx = format!("{name}: header field {at} = {v:#x}: {got:?}");
    let len = b.len();
    let malformed_at = |off: usize| {
        got == Err(Error::Malformed {
            offset: off,
            what: what(got),
        })
    };
    match at {
        H_FILE_LEN => {
            let want = if v as usize > len {
                Error::Truncated {
                    needed: v as usize,
                    got: len,
                }
            } else {
                Error::TrailingBytes {
                    expected: v as usize,
                    got: len,
                }
            };
            assert_eq!(got, Err(want), "{ctx}");
        }
        H_FLAGS => {
            if v & !1 != 0 {
                assert!(malformed_at(16), "{ctx}");
            } else {
                // 0 (not streamable) or 1 on a model with a sequence input: valid.
                assert!(got.is_ok() || malformed_at(16), "{ctx}");
            }
        }
        H_ARENA => {
            if v % 16 != 0 {
                assert!(malformed_at(20), "{ctx}");
            } else if v > rd32(b, H_ARENA) {
                assert_eq!(got, Ok(()), "{ctx}");
            } else {
                assert!(
                    matches!(got, Err(Error::Malformed { what, .. }) if what == "arena tensor outside arena_bytes"),
                    "{ctx}"
                );
            }
        }
        H_SEQ_LEN if v == 0 => assert!(malformed_at(56), "{ctx}"),
        // Fewer ops (a prefix of the program; none at all): an output is written by no op, or
        // the new last op writes no output (docs/format.md, "Validation on parse").
        H_N_OPS if v < rd32(b, H_N_OPS) => assert!(is_truncated_program(got), "{ctx}"),
        H_RESERVED => assert!(malformed_at(60), "{ctx}"),
        H_DATA_OFF if v % 16 != 0 => assert!(malformed_at(48), "{ctx}"),
        H_TENSORS_OFF | H_OPS_OFF if v % 16 != 0 => assert!(malformed_at(at), "{ctx}"),
        H_N_TENSORS | H_N_OPS | H_TENSORS_OFF | H_OPS_OFF | H_IO_OFF | H_DATA_OFF | H_DATA_LEN
        | H_SEQ_LEN => {
            // Every other structural change is refused by a structural check, or (moved I/O
            // list landing on other valid indices, longer tensor table ...) still describes a
            // valid model, which `parse_fixed` has then run.
            assert!(
                matches!(
                    got,
                    Ok(())
                        | Err(Error::Malformed { .. }
                            | Error::BadOp { .. }
                            | Error::UnknownOp { .. })
                ),
                "{ctx}"
            );
        }
        _ => unreachable!(),
    }
}

/// The two errors a prefix of a valid op table gives.
fn is_truncated_program(got: Result<(), Error>) -> bool {
    matches!(
        got,
        Err(Error::Malformed {
            what: "model output written by no op",
            ..
        }) | Err(Error::BadOp {
            what: "the last op writes no model output",
            ..
        })
    )
}

fn what(r: Result<(), Error>) -> &'static str {
    match r {
        Err(Error::Malformed { what, .. }) => what,
        _ => "",
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor entries.

#[test]
fn tensor_entries_at_extremes() {
    for (name, b) in fixtures() {
        let m0 = Model::parse(&b).unwrap();
        let t0 = rd32(&b, H_TENSORS_OFF) as usize;
        let arena = rd32(&b, H_ARENA);
        let data_len = rd32(&b, H_DATA_LEN);
        for i in 0..m0.n_tensors() {
            if !sampled(i, m0.n_tensors()) {
                continue;
            }
            let at = t0 + i * TENSOR_LEN;
            let info = m0.tensor(i).unwrap();
            let konst = info.kind() == kinglet::TensorKind::Const;
            let ctx = |what: &str, got: &Result<(), Error>| {
                format!("{name}: tensor {i} ({}) {what}: {got:?}", info.name())
            };
            let expect = |what: &str, mutate: &dyn Fn(&mut Vec<u8>), off: usize| {
                let mut m = b.clone();
                mutate(&mut m);
                let got = parse_fixed(&mut m);
                assert!(
                    matches!(got, Err(Error::Malformed { offset, .. }) if offset == off),
                    "{}",
                    ctx(what, &got)
                );
            };
            for dt in [0u8, 4, 0xFF] {
                expect("dtype", &|m| m[at] = dt, at);
            }
            for k in [3u8, 0xFF] {
                expect("kind", &|m| m[at + 1] = k, at + 1);
            }
            expect("rank 5", &|m| m[at + 2] = 5, at + 2);
            expect("zero dim", &|m| wr32(m, at + 4, 0), at + 4);
            // Dims whose product overflows usize (2^16 ^ 4 = 2^64).
            expect(
                "overflowing dims",
                &|m| {
                    m[at + 2] = 4;
                    m[at + 3] = 0xFF;
                    for d in 0..4 {
                        wr32(m, at + 4 + 4 * d, 0x1_0000);
                    }
                },
                at + 4,
            );
            expect(
                "u32::MAX dims",
                &|m| {
                    m[at + 2] = 4;
                    m[at + 3] = 0xFF;
                    for d in 0..4 {
                        wr32(m, at + 4 + 4 * d, u32::MAX);
                    }
                },
                at + 4,
            );
            expect(
                "nbytes",
                &|m| wr32(m, at + 24, info.nbytes() as u32 + 1),
                at + 24,
            );
            expect("nbytes 0", &|m| wr32(m, at + 24, 0), at + 24);
            expect("time axis 4", &|m| m[at + 3] = 4, at + 3);
            expect(
                "NaN scale",
                &|m| wr32(m, at + 28, f32::NAN.to_bits()),
                at + 28,
            );
            expect(
                "-1 scale",
                &|m| wr32(m, at + 28, (-1f32).to_bits()),
                at + 28,
            );
            expect(
                "inf scale",
                &|m| wr32(m, at + 28, f32::INFINITY.to_bits()),
                at + 28,
            );
            if info.dtype() == kinglet::DType::I8 {
                expect("zero point 128", &|m| wr32(m, at + 32, 128), at + 32);
            }
            expect("name outside", &|m| wr32(m, at + 36, data_len), at + 36);
            expect("name len", &|m| wr32(m, at + 40, u32::MAX), at + 36);
            expect("reserved", &|m| wr32(m, at + 44, 1), at + 44);
            // Offsets: misaligned, outside the file / arena, u32::MAX.
            expect(
                "misaligned offset",
                &|m| wr32(m, at + 20, info.offset() as u32 + 1),
                at + 20,
            );
            expect(
                "misaligned offset 8",
                &|m| wr32(m, at + 20, info.offset() as u32 + 8),
                at + 20,
            );
            expect("u32::MAX offset", &|m| wr32(m, at + 20, u32::MAX), at + 20);
            let outside = if konst { (data_len + 15) & !15 } else { arena };
            expect("offset at end", &|m| wr32(m, at + 20, outside), at + 20);
            expect(
                "offset past end",
                &|m| wr32(m, at + 20, (outside & !15) + 0x1000),
                at + 20,
            );
            expect("offset 2^31", &|m| wr32(m, at + 20, 0x8000_0000), at + 20);
        }
    }
}

/// An op's output placed on its input in the arena must be refused.
#[test]
fn op_output_overlapping_its_input() {
    let mut checked = 0;
    for (name, b) in fixtures() {
        let m0 = Model::parse(&b).unwrap();
        let t0 = rd32(&b, H_TENSORS_OFF) as usize;
        let arena = rd32(&b, H_ARENA) as usize;
        for k in 0..m0.n_ops() {
            if !sampled(k, m0.n_ops()) {
                continue;
            }
            let op = m0.op(k).unwrap();
            let out_slot = match op.name() {
                "FC" => 4,
                "LSTM" => 11,
                "GRU" => 10,
                "RNN" => 9,
                "LUT8" | "ADD" | "SOFTMAX" => 2,
                "COPY" | "SELECT_LAST" | "REQUANT" | "MEAN" => 1,
                "LAYERNORM" => 3,
                "ATTENTION" => 4,
                "CONCAT" => op.n_tensors() - 1,
                other => panic!("{other}"),
            };
            let (x, y) = (op.tensor(0).unwrap(), op.tensor(out_slot).unwrap());
            let (xi, yi) = (m0.tensor(x).unwrap(), m0.tensor(y).unwrap());
            if xi.kind() == kinglet::TensorKind::Const || xi.offset() + yi.nbytes() > arena {
                continue;
            }
            for shift in [0usize, 16] {
                let off = xi.offset() + shift.min(xi.nbytes().saturating_sub(1) & !15);
                if off + yi.nbytes() > arena || off == yi.offset() {
                    continue;
                }
                let mut m = b.clone();
                wr32(&mut m, t0 + y * TENSOR_LEN + 20, off as u32);
                let got = parse_fixed(&mut m);
                // The op itself, or an earlier check (state sharing, another op that reads or
                // writes the moved tensor), refuses it.
                assert!(
                    matches!(got, Err(Error::BadOp { .. } | Error::Malformed { .. })),
                    "{name}: op {k} {} output moved onto its input: {got:?}",
                    op.name()
                );
                if matches!(got, Err(Error::BadOp { op, .. }) if op == k) {
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked > 10,
        "only {checked} overlaps were refused by the op itself"
    );
}

// ---------------------------------------------------------------------------------------------
// Op entries, tensor lists, parameters.

#[test]
fn op_entries_at_extremes() {
    for (name, b) in fixtures() {
        let m0 = Model::parse(&b).unwrap();
        let o0 = rd32(&b, H_OPS_OFF) as usize;
        let d0 = rd32(&b, H_DATA_OFF) as usize;
        let nt = m0.n_tensors();
        for k in 0..m0.n_ops() {
            if !sampled(k, m0.n_ops()) {
                continue;
            }
            let at = o0 + k * OP_LEN;
            for opcode in [0u16, 15, 99, 0x8000, 0xFFFF] {
                let mut m = b.clone();
                wr16(&mut m, at, opcode);
                assert_eq!(
                    parse_fixed(&mut m),
                    Err(Error::UnknownOp { op: k, opcode }),
                    "{name}: op {k}"
                );
            }
            // Every known opcode in place of this one: refused by that op's checks.
            for opcode in 1u16..=14 {
                if opcode == rd16(&b, at) {
                    continue;
                }
                let mut m = b.clone();
                wr16(&mut m, at, opcode);
                let got = parse_fixed(&mut m);
                // A unit16 LSTM's flag is refused first on any other op.
                let unit16 = rd16(&b, at + 2) & kinglet::format::OP_FLAG_UNIT16 != 0;
                assert!(
                    matches!(got, Err(Error::BadOp { op, .. }) if op == k)
                        || unit16
                            && matches!(got, Err(Error::Malformed { offset, .. }) if offset == at + 2),
                    "{name}: op {k} as opcode {opcode}: {got:?}"
                );
            }
            let mal = |what: &str, f: &dyn Fn(&mut Vec<u8>), off: usize| {
                let mut m = b.clone();
                f(&mut m);
                let got = parse_fixed(&mut m);
                assert!(
                    matches!(got, Err(Error::Malformed { offset, .. }) if offset == off),
                    "{name}: op {k} {what}: {got:?}"
                );
            };
            mal("flags", &|m| wr16(m, at + 2, 4), at + 2);
            mal("flags", &|m| wr16(m, at + 2, 0xFFFF), at + 2);
            // The unit16 layout flag toggled: refused at the flags on any op but LSTM; on an
            // LSTM, by the other layout's operand checks (int8 vs int16 gate matrices).
            let mut m = b.clone();
            wr16(
                &mut m,
                at + 2,
                rd16(&b, at + 2) ^ kinglet::format::OP_FLAG_UNIT16,
            );
            let got = parse_fixed(&mut m);
            if rd16(&b, at) == kinglet::format::OP_LSTM {
                assert!(
                    matches!(got, Err(Error::BadOp { op, .. }) if op == k),
                    "{name}: op {k} unit16 toggled: {got:?}"
                );
            } else {
                assert!(
                    matches!(got, Err(Error::Malformed { offset, .. }) if offset == at + 2),
                    "{name}: op {k} unit16 flag: {got:?}"
                );
            }
            mal("reserved", &|m| wr32(m, at + 16, 1), at + 16);
            mal("reserved", &|m| wr32(m, at + 20, u32::MAX), at + 16);
            mal(
                "odd list",
                &|m| wr32(m, at + 8, rd32(&b, at + 8) + 1),
                at + 8,
            );
            mal(
                "params %4",
                &|m| wr32(m, at + 12, rd32(&b, at + 12) + 2),
                at + 8,
            );
            mal("list outside", &|m| wr32(m, at + 8, u32::MAX - 1), at + 8);
            mal(
                "params outside",
                &|m| wr32(m, at + 12, u32::MAX - 3),
                at + 12,
            );
            mal("n_tensors", &|m| wr16(m, at + 4, 0xFFFF), at + 8);
            mal("n_params", &|m| wr16(m, at + 6, 0xFFFF), at + 12);
            // Count changes that stay inside the data section: the op refuses them.
            let op = m0.op(k).unwrap();
            for (field, n) in [(at + 4, op.n_tensors()), (at + 6, op.n_params())] {
                for v in [0, n - 1, n + 1] {
                    let mut m = b.clone();
                    wr16(&mut m, field, v as u16);
                    let got = parse_fixed(&mut m);
                    assert!(
                        matches!(got, Err(Error::BadOp { .. } | Error::Malformed { .. })),
                        "{name}: op {k} count field {field} = {v}: {got:?}"
                    );
                }
            }
            // Tensor list entries out of range.
            let to = d0 + rd32(&b, at + 8) as usize;
            for slot in 0..op.n_tensors() {
                for v in [nt as u16, 0xFFFF] {
                    let mut m = b.clone();
                    wr16(&mut m, to + 2 * slot, v);
                    assert_eq!(
                        parse_fixed(&mut m),
                        Err(Error::BadOp {
                            op: k,
                            what: "tensor index out of range"
                        }),
                        "{name}: op {k} slot {slot}"
                    );
                }
                // Any other tensor in this slot: refused or harmless.
                for v in [
                    0u16,
                    1,
                    (nt - 1) as u16,
                    op.tensor(slot).unwrap() as u16 ^ 1,
                ] {
                    let mut m = b.clone();
                    wr16(&mut m, to + 2 * slot, v.min(nt as u16 - 1));
                    let _ = parse_fixed_with(&mut m, full_mode());
                }
            }
            // Parameter words at extremes: refused, or accepted and then safe to run.
            let po = d0 + rd32(&b, at + 12) as usize;
            for p in 0..op.n_params() {
                let orig = op.param(p).unwrap();
                for v in [
                    0,
                    1,
                    -1,
                    2,
                    31,
                    32,
                    -31,
                    127,
                    128,
                    -129,
                    0x7FFF,
                    0x8000,
                    0x1_0000,
                    i32::MAX,
                    i32::MIN,
                    orig.wrapping_add(1),
                    orig.wrapping_sub(1),
                    orig.wrapping_mul(2),
                ] {
                    if v == orig {
                        continue;
                    }
                    let mut m = b.clone();
                    wr32(&mut m, po + 4 * p, v as u32);
                    // Sessions (milliseconds each in debug) for the extreme values.
                    let run = full_mode() || matches!(v, i32::MAX | i32::MIN | -1 | 0x1_0000);
                    let got = parse_fixed_with(&mut m, run);
                    assert!(
                        matches!(got, Ok(()) | Err(Error::BadOp { .. })),
                        "{name}: op {k} param {p} = {v}: {got:?}"
                    );
                }
            }
        }
    }
}

/// A Miri-sized pass over parse and the session (the other tests cover the same ground
/// exhaustively but take hours under Miri): the smallest fixture and one with two recurrent
/// layers parsed and run (`exercise`: `Session::new`, `invoke`, `invoke_step`, `run`, `step`,
/// wrong lengths), and one mutation of each kind with the CRC recomputed. Run under Miri with
/// `MIRIFLAGS=-Zmiri-disable-isolation cargo +nightly miri test -p kinglet --test hostile --
/// miri_smoke` (docs/robustness.md).
#[test]
fn miri_smoke() {
    let all = common::fixtures();
    let smallest = all.iter().min_by_key(|(_, b)| b.len()).unwrap();
    let two_layers = all
        .iter()
        .find(|(n, _)| n.starts_with("lstm2"))
        .unwrap_or(smallest);
    for (name, b) in [smallest, two_layers] {
        let m = Model::parse(b).unwrap();
        exercise(&m, true);
        let ctx = |what: &str| format!("{name}: {what}");
        let n = b.len();
        assert_eq!(
            Model::parse(&b[..n - 1]).err(),
            Some(Error::Truncated {
                needed: n,
                got: n - 1
            }),
            "{}",
            ctx("truncated")
        );
        let mut t = b.clone();
        wr32(&mut t, H_N_OPS, rd32(b, H_N_OPS) - 1);
        assert!(
            is_truncated_program(parse_fixed(&mut t)),
            "{}",
            ctx("n_ops")
        );
        let mut t = b.clone();
        wr32(&mut t, H_ARENA, rd32(b, H_ARENA) + 16);
        assert_eq!(parse_fixed(&mut t), Ok(()), "{}", ctx("arena + 16"));
        let t0 = rd32(b, H_TENSORS_OFF) as usize;
        let mut t = b.clone();
        wr32(&mut t, t0 + 20, rd32(b, t0 + 20) + 1);
        assert!(
            matches!(parse_fixed(&mut t), Err(Error::Malformed { .. })),
            "{}",
            ctx("misaligned offset")
        );
        let mut t = b.clone();
        t[20] ^= 0x40;
        assert!(
            matches!(Model::parse(&t), Err(Error::Checksum { .. })),
            "{}",
            ctx("bit flip")
        );
    }
}

/// The parse-time state check (sorted states, binary search: O(N log S)) against the pairwise
/// definition: for every fixture with state, every state tensor moved onto the offset of every
/// other arena tensor (and every activation moved onto every state) is refused with "state
/// tensor shares arena bytes" exactly when some state then overlaps another arena tensor.
#[test]
fn state_overlap_matches_pairwise_oracle() {
    const SHARED: &str = "state tensor shares arena bytes with another tensor";
    let mut refused = 0;
    for (name, b) in fixtures() {
        let m0 = Model::parse(&b).unwrap();
        let t0 = rd32(&b, H_TENSORS_OFF) as usize;
        let arena = rd32(&b, H_ARENA) as usize;
        // (offset, nbytes, is_state) of every arena tensor.
        let tensors: Vec<(usize, usize, bool)> = (0..m0.n_tensors())
            .map(|i| m0.tensor(i).unwrap())
            .map(|t| {
                let arena_kind = t.kind() != kinglet::TensorKind::Const;
                let state = t.kind() == kinglet::TensorKind::State;
                (
                    if arena_kind { t.offset() } else { usize::MAX },
                    t.nbytes(),
                    state,
                )
            })
            .collect();
        let n_states = tensors.iter().filter(|t| t.2).count();
        if n_states == 0 {
            continue;
        }
        for i in 0..tensors.len() {
            for j in 0..tensors.len() {
                let (oi, ni, si) = tensors[i];
                let (oj, _, sj) = tensors[j];
                if i == j || oi == usize::MAX || oj == usize::MAX || !(si || sj) || oj + ni > arena
                {
                    continue;
                }
                let mut moved = tensors.clone();
                moved[i].0 = oj;
                let overlap = (0..moved.len()).any(|p| {
                    (0..moved.len()).any(|q| {
                        let ((op, np, sp), (oq, nq, _)) = (moved[p], moved[q]);
                        p != q
                            && sp
                            && op != usize::MAX
                            && oq != usize::MAX
                            && op < oq + nq
                            && oq < op + np
                    })
                });
                let mut m = b.clone();
                wr32(&mut m, t0 + i * TENSOR_LEN + 20, oj as u32);
                let got = parse_fixed(&mut m);
                let shared = matches!(got, Err(Error::Malformed { what, .. }) if what == SHARED);
                assert_eq!(
                    shared, overlap,
                    "{name}: tensor {i} moved onto {j}: {got:?}"
                );
                refused += shared as usize;
            }
        }
    }
    assert!(refused > 100, "only {refused} state overlaps were made");
}

/// More than `MAX_STATE_TENSORS` (64) state tensors are refused at the 65th, before any pairwise
/// work: activations of the 193-tensor fixture turned into state.
#[test]
fn too_many_state_tensors() {
    let mut tried = false;
    for (name, b) in fixtures() {
        let m0 = Model::parse(&b).unwrap();
        let t0 = rd32(&b, H_TENSORS_OFF) as usize;
        let arena: Vec<usize> = (0..m0.n_tensors())
            .filter(|&i| m0.tensor(i).unwrap().kind() != kinglet::TensorKind::Const)
            .collect();
        if arena.len() <= kinglet::format::MAX_STATE_TENSORS {
            continue;
        }
        let mut m = b.clone();
        for &i in &arena {
            m[t0 + i * TENSOR_LEN + 1] = kinglet::TensorKind::State as u8;
        }
        let i = arena[kinglet::format::MAX_STATE_TENSORS];
        assert_eq!(
            parse_fixed(&mut m),
            Err(Error::Malformed {
                offset: t0 + i * TENSOR_LEN + 1,
                what: "more than 64 state tensors"
            }),
            "{name}"
        );
        tried = true;
    }
    assert!(tried, "no fixture has more than 64 arena tensors");
}

/// Every prefix of every fixture's op table (`n_ops` lowered, CRC recomputed) is refused with
/// one of the two truncated-program errors, never accepted (finding R1 of docs/robustness.md).
#[test]
fn truncated_op_table_is_refused() {
    for (name, b) in fixtures() {
        let n = rd32(&b, H_N_OPS);
        for v in 0..n {
            let mut m = b.clone();
            wr32(&mut m, H_N_OPS, v);
            let got = parse_fixed(&mut m);
            assert!(is_truncated_program(got), "{name}: {v} of {n} ops: {got:?}");
        }
    }
}

/// Every model output of every fixture pointed at another int8 activation that no op writes
/// (a model input, typically) is refused; one that some op does write is accepted and run.
#[test]
fn outputs_must_be_written() {
    let mut refused = 0;
    for (name, b) in fixtures() {
        let m0 = Model::parse(&b).unwrap();
        let i0 = rd32(&b, H_IO_OFF) as usize;
        let Some(x) = m0.input_index(0) else { continue };
        for k in 0..m0.n_outputs() {
            let at = i0 + 2 * (m0.n_inputs() + k);
            let mut m = b.clone();
            wr16(&mut m, at, x as u16);
            let got = parse_fixed(&mut m);
            // The input may share its bytes with an op's output (a reshape alias): then an op
            // does write it. Otherwise: refused at the output's I/O entry.
            let want = Err(Error::Malformed {
                offset: at,
                what: "model output written by no op",
            });
            assert!(
                got == want || got.is_ok(),
                "{name}: output {k} := input: {got:?}"
            );
            refused += (got == want) as usize;
        }
    }
    assert!(
        refused >= 10,
        "only {refused} unwritten outputs were refused"
    );
}

#[test]
fn io_list_entries() {
    for (name, b) in fixtures() {
        let m0 = Model::parse(&b).unwrap();
        let i0 = rd32(&b, H_IO_OFF) as usize;
        let n_io = m0.n_inputs() + m0.n_outputs();
        for k in 0..n_io {
            for v in [m0.n_tensors() as u16, 0xFFFF] {
                let mut m = b.clone();
                wr16(&mut m, i0 + 2 * k, v);
                assert_eq!(
                    parse_fixed(&mut m),
                    Err(Error::Malformed {
                        offset: i0 + 2 * k,
                        what: "I/O tensor index out of range"
                    }),
                    "{name}"
                );
            }
            // A constant (or non-int8) tensor as model input or output.
            for t in 0..m0.n_tensors() {
                let info = m0.tensor(t).unwrap();
                if info.kind() == kinglet::TensorKind::Activation
                    && info.dtype() == kinglet::DType::I8
                {
                    continue;
                }
                let mut m = b.clone();
                wr16(&mut m, i0 + 2 * k, t as u16);
                assert_eq!(
                    parse_fixed(&mut m),
                    Err(Error::Malformed {
                        offset: i0 + 2 * k,
                        what: "model inputs and outputs must be int8 activations"
                    }),
                    "{name}: tensor {t}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sweep: every byte (sampled in debug), three values each, CRC recomputed.

/// Patches CRCs after a one-byte change in O(32) instead of rehashing the file: the CRC is
/// linear, so the change `d` at stream position `q` flips the CRC by `Z^n(T[d])`, where `T` is
/// the byte table, `Z` one zero byte and `n` the bytes after `q`.
struct CrcPatch {
    table: [u32; 256],
    /// `zn[n * 32 + i] = Z^n(1 << i)`.
    zn: Vec<u32>,
    stream_len: usize,
}

impl CrcPatch {
    fn new(file_len: usize) -> Self {
        let mut table = [0u32; 256];
        for (i, t) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *t = c;
        }
        let stream_len = file_len - 4;
        let mut zn = vec![0u32; stream_len * 32];
        for (i, z) in zn.iter_mut().take(32).enumerate() {
            *z = 1 << i;
        }
        for n in 1..stream_len {
            for i in 0..32 {
                let s = zn[(n - 1) * 32 + i];
                zn[n * 32 + i] = table[(s & 0xFF) as usize] ^ (s >> 8);
            }
        }
        CrcPatch {
            table,
            zn,
            stream_len,
        }
    }

    /// The CRC after XOR-ing `d` into file byte `at` (not in the CRC field).
    fn patch(&self, crc: u32, at: usize, d: u8) -> u32 {
        let q = if at < H_CRC { at } else { at - 4 };
        let n = self.stream_len - 1 - q;
        let v = self.table[d as usize];
        let mut out = crc;
        for i in 0..32 {
            if v >> i & 1 != 0 {
                out ^= self.zn[n * 32 + i];
            }
        }
        out
    }
}

#[test]
fn crc_patch_matches_rehash() {
    let (_, b) = &fixtures()[0];
    let p = CrcPatch::new(b.len());
    let crc = rd32(b, H_CRC);
    for at in [0, 5, 11, 16, 17, 100, b.len() / 2, b.len() - 1] {
        let mut m = b.clone();
        m[at] ^= 0x5A;
        assert_eq!(p.patch(crc, at, 0x5A), crc_of(&m), "byte {at}");
    }
}

#[derive(Default, Debug)]
#[allow(dead_code)] // printed
struct SweepStats {
    positions: usize,
    mutations: usize,
    refused: usize,
    accepted: usize,
    ran: usize,
}

/// The three mutations of byte `at`: `0x00`, `0xFF`, `b[at] + 1` (those that change it).
fn byte_values(orig: u8) -> impl Iterator<Item = u8> {
    [0x00, 0xFF, orig.wrapping_add(1)]
        .into_iter()
        .filter(move |&v| v != orig)
}

/// Byte positions to mutate, structure first: the header, tables, I/O list, op lists and
/// parameters, and the wide (i16 / i32) constants (requantization pairs, activation and exp
/// tables, biases) are all taken, then an even sample of the rest (int8 weights, names,
/// padding), within `budget` positions (all of them in full mode).
fn sweep_positions(b: &[u8], lay: &Layout, budget: usize) -> Vec<usize> {
    let in_any = |rs: &[Range<usize>], at: usize| rs.iter().any(|r| r.contains(&at));
    let wide: Vec<_> = lay
        .consts
        .iter()
        .filter(|(_, s)| *s > 1)
        .map(|(r, _)| r.clone())
        .collect();
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for at in (0..b.len()).filter(|at| !(H_CRC..H_CRC + 4).contains(at)) {
        let structural = at < 64
            || lay.tensors.contains(&at)
            || lay.ops.contains(&at)
            || lay.io.contains(&at)
            || in_any(&lay.op_lists, at)
            || in_any(&wide, at);
        if structural {
            first.push(at);
        } else {
            rest.push(at);
        }
    }
    if full_mode() {
        first.extend(rest);
        return first;
    }
    let thin = |v: Vec<usize>, n: usize| -> Vec<usize> {
        if v.len() <= n {
            return v;
        }
        let step = v.len().div_ceil(n.max(1));
        v.into_iter().step_by(step).collect()
    };
    let first = thin(first, budget * 3 / 4);
    let left = budget - first.len();
    let mut out = first;
    out.extend(thin(rest, left));
    out
}

#[test]
fn every_byte_mutated_parses_or_runs() {
    let files = fixtures();
    let work = |files: &[(String, Vec<u8>)]| {
        for (name, b) in files {
            let lay = layout(b);
            let p = CrcPatch::new(b.len());
            let crc = rd32(b, H_CRC);
            let n_tensors = lay.tensors.len() / TENSOR_LEN;
            // Debug budget: parses cost ~0.1 ms (more for the 193-tensor fixture: the state
            // overlap check is quadratic), sessions a few ms each.
            let (budget, max_runs) = if n_tensors > 100 {
                (400, 15)
            } else {
                (1500, 60)
            };
            let positions = sweep_positions(b, &lay, budget);
            let mut st = SweepStats {
                positions: positions.len(),
                ..SweepStats::default()
            };
            let mut accepted = Vec::new();
            let mut m = b.clone();
            for &at in &positions {
                let orig = b[at];
                for v in byte_values(orig) {
                    m[at] = v;
                    wr32(&mut m, H_CRC, p.patch(crc, at, orig ^ v));
                    st.mutations += 1;
                    match Model::parse(&m) {
                        Ok(_) => accepted.push((at, v)),
                        Err(_) => st.refused += 1,
                    }
                    wr32(&mut m, H_CRC, crc);
                }
                m[at] = orig;
            }
            st.accepted = accepted.len();
            // Run an even sample of the accepted mutations (all of them in full mode).
            let every = if full_mode() {
                1
            } else {
                accepted.len().div_ceil(max_runs).max(1)
            };
            for &(at, v) in accepted.iter().step_by(every) {
                m[at] = v;
                wr32(&mut m, H_CRC, p.patch(crc, at, b[at] ^ v));
                let model = Model::parse(&m).expect("accepted before");
                exercise(&model, false);
                st.ran += 1;
                m.copy_from_slice(b);
            }
            println!("{name}: {st:?}");
        }
    };
    let (a, b): (Vec<_>, Vec<_>) = files.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let a: Vec<_> = a.into_iter().map(|(_, f)| f).collect();
    let b: Vec<_> = b.into_iter().map(|(_, f)| f).collect();
    std::thread::scope(|s| {
        let h = s.spawn(|| work(&a));
        work(&b);
        h.join().unwrap();
    });
}
