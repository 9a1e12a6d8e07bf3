//! End to end: every committed fixture model gives the same output bytes with the SIMD kernels
//! as with the reference loop forced, over whole sequences and, for streamable models, step by
//! step; with the SIMD kernels both in a plain arena and in one with room for the prepared
//! operands (`Model::prepared_bytes`).
//!
//! One test function only: `force_reference` is process-wide.

mod common;

use kinglet::golden::InputGen;
use kinglet::kernels::{best_isa, force_reference, Isa};
use kinglet::{Model, Session};

/// Output bytes of `invoke` for three input seeds, then of `step` over every frame of seed 7;
/// with `prepared`, in an arena with room for the prepared operands.
fn outputs(model: &Model<'_>, prepared: bool) -> Vec<Vec<i8>> {
    let extra = if prepared { model.prepared_bytes() } else { 0 };
    let mut arena = vec![0u8; model.arena_bytes() + extra];
    let mut s = Session::new(model, &mut arena).expect("session");
    let mut out = Vec::new();
    for seed in [1, 2, 3] {
        let mut gen = InputGen::new(seed);
        for i in 0..model.n_inputs() {
            gen.fill(s.input_mut(i).expect("input"));
        }
        s.invoke().expect("invoke");
        for i in 0..model.n_outputs() {
            out.push(s.output(i).expect("output").to_vec());
        }
    }
    if model.is_streamable() {
        s.reset();
        let mut gen = InputGen::new(7);
        for _ in 0..model.seq_len() {
            for i in 0..model.n_inputs() {
                gen.fill(s.input_frame_mut(i).expect("frame"));
            }
            s.invoke_step().expect("step");
            for i in 0..model.n_outputs() {
                out.push(s.output_frame(i).expect("output frame").to_vec());
            }
        }
    }
    out
}

#[test]
fn fixtures_are_bit_identical_with_simd_and_reference() {
    let isa = best_isa();
    eprintln!("SIMD level on this CPU: {}", isa.name());
    // scripts/cross-test.sh pins the QEMU CPU and says which kernel it must select.
    if let Ok(want) = std::env::var("KINGLET_EXPECT_ISA") {
        assert_eq!(isa.name(), want, "selected kernel");
    }
    let (mut checked, mut prepared) = (0, 0);
    for (name, bytes) in common::fixtures() {
        let model = Model::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        force_reference(false);
        let simd = outputs(&model, false);
        let simd_prep = outputs(&model, true);
        prepared += usize::from(model.prepared_bytes() > 0);
        force_reference(true);
        assert_eq!(kinglet::kernels::active_isa(), Isa::Reference);
        let reference = outputs(&model, false);
        force_reference(false);
        assert_eq!(simd.len(), reference.len());
        assert_eq!(simd_prep.len(), reference.len());
        for (k, ((a, p), b)) in simd.iter().zip(&simd_prep).zip(&reference).enumerate() {
            assert_eq!(
                a,
                b,
                "{name}: output block {k} differs ({} vs reference)",
                isa.name()
            );
            assert_eq!(
                p,
                b,
                "{name}: output block {k} differs ({}, prepared operands, vs reference)",
                isa.name()
            );
        }
        checked += 1;
    }
    // The recurrent fixtures prepare their operands where the level keeps them.
    if isa == Isa::Avx512Vnni {
        assert!(prepared >= 10, "{prepared} fixtures with prepared operands");
    } else {
        assert_eq!(prepared, 0, "{} keeps no prepared operands", isa.name());
    }
    eprintln!(
        "{checked} fixtures bit-identical ({} vs reference)",
        isa.name()
    );
}
