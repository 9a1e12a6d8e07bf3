//! Property tests of the session API on every committed fixture: any int8 input gives `Ok`
//! from `run` (and `step`), never a panic, and on streamable models `T` calls of `step` after a
//! reset give exactly the bytes of `run`.

mod common;

use kinglet::{Model, Session};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Cases per fixture (each is a debug-build `run` plus `T` steps: milliseconds).
const CASES: u32 = 12;

/// Runs `f` on `CASES` random byte vectors of length `len` (and the all -128 / all 127 ones).
fn for_inputs(name: &str, len: usize, mut f: impl FnMut(&[i8]) -> Result<(), TestCaseError>) {
    for edge in [-128i8, 127, 0] {
        f(&vec![edge; len]).unwrap_or_else(|e| panic!("{name}: constant {edge}: {e}"));
    }
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    // `TestRunner::run` takes an `Fn`; the session inside `f` needs `&mut`.
    let f = std::cell::RefCell::new(f);
    runner
        .run(&proptest::collection::vec(any::<i8>(), len), |x| {
            (f.borrow_mut())(&x)
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn run_accepts_any_input() {
    for (name, bytes) in common::fixtures() {
        let m = Model::parse(&bytes).unwrap();
        let mut arena = vec![0u8; m.arena_bytes()];
        let mut s = Session::new(&m, &mut arena).unwrap();
        let (x, y) = (m.input(0).unwrap(), m.output(0).unwrap());
        let mut out = vec![0i8; y.nbytes()];
        for_inputs(&name, x.nbytes(), |input| {
            prop_assert_eq!(s.run(input, &mut out), Ok(()));
            // Deterministic: the same input gives the same bytes.
            let first = out.clone();
            prop_assert_eq!(s.run(input, &mut out), Ok(()));
            prop_assert_eq!(&first, &out);
            Ok(())
        });
    }
}

#[test]
fn step_by_step_equals_run() {
    let mut streamable = 0;
    for (name, bytes) in common::fixtures() {
        let m = Model::parse(&bytes).unwrap();
        if !m.is_streamable() {
            continue;
        }
        streamable += 1;
        let mut arena = vec![0u8; m.arena_bytes()];
        let mut s = Session::new(&m, &mut arena).unwrap();
        let (x, y) = (m.input(0).unwrap(), m.output(0).unwrap());
        let t = m.seq_len();
        let (fx, fy) = (x.step_bytes(t), y.step_bytes(t));
        let per_step_out = y.time_axis().is_some();
        let mut whole = vec![0i8; y.nbytes()];
        for_inputs(&name, x.nbytes(), |input| {
            prop_assert_eq!(s.run(input, &mut whole), Ok(()));
            s.reset();
            let mut frame_out = vec![0i8; fy];
            let mut streamed = Vec::with_capacity(y.nbytes());
            for k in 0..t {
                prop_assert_eq!(s.step(&input[k * fx..(k + 1) * fx], &mut frame_out), Ok(()));
                if per_step_out {
                    streamed.extend_from_slice(&frame_out);
                }
            }
            if !per_step_out {
                // An output without a time axis (the last step, a pooled vector): the last
                // step's output is the whole output of `run`.
                streamed = frame_out.clone();
            }
            prop_assert_eq!(&streamed, &whole, "step-by-step differs from run");
            Ok(())
        });
    }
    assert!(streamable >= 8, "only {streamable} streamable fixtures");
}
