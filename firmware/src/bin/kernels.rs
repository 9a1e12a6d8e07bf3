//! Kernel figures on the device: the int8 matrix-vector product (`kinglet::kernels::matvec_i8`,
//! the DSP kernel on Cortex-M4 / M33) checked bit for bit against the reference loop over
//! edge shapes and unaligned starts, then measured on 64×64, 128×128 and 256×256; and the ops
//! of two committed recurrent models, one `kinglet_mark()` between ops
//! (`Session::invoke_observed`), for the per-step cost of an LSTM (`models/mnist_lstm`,
//! LSTM 28→20 over 28 steps) and a GRU (`models/kws_gru`, GRU 40→64 over 49 steps).
//!
//! The m4cycles plugin (`check.sh`, `bench.sh`) reads exact counts between the marks, in this
//! order: matvec 64, 128, 256 (one interval each, between a pair of marks), then mnist_lstm's
//! ops LSTM, FC, SOFTMAX, then kws_gru's ops. SysTick counts are printed too.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use kinglet::kernels::matvec::{matvec_i8, reference_matvec_i8};
use kinglet::{Model, Session};
use kinglet_firmware::{self as fw, hprintln, kinglet_mark, Clock};

fw::handlers!();

static MNIST_LSTM: &[u8] = fw::include_aligned!("../../../models/mnist_lstm/model.kgl");
static KWS_GRU: &[u8] = fw::include_aligned!("../../../models/kws_gru/model.kgl");
static MNIST_LSTM16: &[u8] = fw::include_aligned!("../../../models/mnist_lstm_unit16/model.kgl");

/// The largest square product measured (64 on boards with little RAM, the microbit's 16 KiB).
const MAX: usize = if fw::board::RAM_BYTES < 64 * 1024 {
    64
} else {
    256
};
/// Arena for the models: `kws_gru` needs 6,079 bytes, `mnist_lstm` 1,599 (only `mnist_lstm`
/// runs on the microbit, whose 16 KiB must also hold the stack).
const ARENA_LEN: usize = if SMALL { 2048 } else { 8192 };
const SMALL: bool = fw::board::RAM_BYTES < 64 * 1024;
/// Extremes: 20 rows of 204 columns of -128.
static ONES: [i8; 4080] = [-128; 4080];

/// xorshift32, for deterministic operands.
struct Rng(u32);

impl Rng {
    fn i8(&mut self) -> i8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        (self.0 >> 24) as u8 as i8
    }
}

/// Runs every op of `bytes`'s model once on a fixed input, with a mark after each op; prints
/// the SysTick count of the whole invoke.
fn ops(clock: &Clock, name: &str, bytes: &[u8], arena: &mut [u8], rng: &mut Rng) {
    let model = fw::check(Model::parse(bytes), "model");
    let mut session = fw::check(Session::new(&model, arena), "session");
    for i in 0..model.n_inputs() {
        for x in fw::check(session.input_mut(i), "input") {
            *x = rng.i8();
        }
    }
    let t0 = clock.ticks();
    kinglet_mark();
    let r = session.invoke_observed(|_, _| kinglet_mark());
    let t1 = clock.ticks();
    fw::check(r, "invoke");
    hprintln!(
        "{}: {} ops, {} steps, {} {} per invoke",
        name,
        model.n_ops(),
        model.seq_len(),
        Clock::count(t1 - t0),
        Clock::UNIT
    );
}

#[entry]
fn main() -> ! {
    static mut M: [i8; MAX * MAX + 4] = [0; MAX * MAX + 4];
    static mut V: [i8; MAX + 4] = [0; MAX + 4];
    static mut ARENA: fw::Aligned<[u8; ARENA_LEN]> = fw::Aligned([0; ARENA_LEN]);
    fw::paint_stack();
    let cp = fw::check(cortex_m::Peripherals::take().ok_or(()), "peripherals");
    let clock = Clock::start(cp.SYST);
    hprintln!(
        "kernels on {}: matvec isa {}",
        fw::board::BOARD,
        kinglet::kernels::active_isa().name()
    );
    let mut rng = Rng(0x1234_5679);
    for x in M.iter_mut() {
        *x = rng.i8();
    }
    for x in V.iter_mut() {
        *x = rng.i8();
    }

    // Bit identity with the reference: every rows × cols below, starts offset by 0..3 bytes.
    let (mut shapes, mut bad) = (0, 0);
    let mut want = [0i32; 24];
    let mut got = [0i32; 24];
    for rows in 0..=9 {
        let big = [63, 64, 65, 255, 256, 257, 300, 520];
        for cols in (0..=36).chain(big).filter(|c| rows * c + 4 <= M.len()) {
            let off = (rows + cols) % 4;
            let m = &M[off..off + rows * cols];
            let v = &V[..cols.min(MAX)];
            if v.len() != cols {
                // Longer than the vector buffer: reuse the matrix as the vector.
                let v = &M[1..1 + cols];
                reference_matvec_i8(m, v, &mut want[..rows]);
                matvec_i8(m, v, &mut got[..rows]);
            } else {
                reference_matvec_i8(m, v, &mut want[..rows]);
                matvec_i8(m, v, &mut got[..rows]);
            }
            shapes += 1;
            if want[..rows] != got[..rows] {
                bad += 1;
                hprintln!("matvec MISMATCH rows {} cols {}", rows, cols);
            }
        }
    }
    // Extremes: every product -128 · -128, 20 rows of 204 columns.
    matvec_i8(&ONES, &ONES[..204], &mut got[..20]);
    reference_matvec_i8(&ONES, &ONES[..204], &mut want[..20]);
    bad += usize::from(want[..20] != got[..20]);
    hprintln!(
        "matvec vs reference: {} shapes, {} mismatches: {}",
        shapes + 1,
        bad,
        if bad == 0 { "OK" } else { "MISMATCH" }
    );
    // The requantized product (fused kernel on DSP targets) against the reference rows, every
    // shift from -31 to 33.
    let rq_bad = kinglet::kernels::reference::fixed::self_test_matvec_rq(0x2545_f491);
    bad += rq_bad;
    hprintln!(
        "matvec_rq vs reference: {} mismatching rows: {}",
        rq_bad,
        if rq_bad == 0 { "OK" } else { "MISMATCH" }
    );

    // The LSTM (both layouts) and GRU ops (the DSP sequence kernels on Cortex-M4 / M33) against
    // the reference path.
    // Not on the microbit: its 16 KiB would not hold the test's 7.5 KB of stack, and the M0 has
    // no DSP level to compare.
    if !SMALL {
        let lstm_bad = kinglet::kernels::reference::lstm::self_test_lstm(0x2545_f491);
        bad += lstm_bad;
        hprintln!(
            "lstm vs reference: {} mismatching values: {}",
            lstm_bad,
            if lstm_bad == 0 { "OK" } else { "MISMATCH" }
        );
        let lstm16_bad = kinglet::kernels::reference::lstm16::self_test_lstm16(0x2545_f491);
        bad += lstm16_bad;
        hprintln!(
            "lstm unit16 vs reference: {} mismatching values: {}",
            lstm16_bad,
            if lstm16_bad == 0 { "OK" } else { "MISMATCH" }
        );
        let gru_bad = kinglet::kernels::reference::gru::self_test_gru(0x2545_f491);
        bad += gru_bad;
        hprintln!(
            "gru vs reference: {} mismatching values: {}",
            gru_bad,
            if gru_bad == 0 { "OK" } else { "MISMATCH" }
        );
    }
    let mut acc = [0i32; MAX];
    for n in [64usize, 128, 256].into_iter().filter(|&n| n <= MAX) {
        let (m, v) = (&M[..n * n], &V[..n]);
        let ((), ticks) = clock.measure(|| matvec_i8(m, v, &mut acc[..n]));
        let mut check = [0i32; MAX];
        reference_matvec_i8(m, v, &mut check[..n]);
        let ok = check[..n] == acc[..n];
        bad += usize::from(!ok);
        hprintln!(
            "matvec {}x{}: {} {} ({} MACs), {}",
            n,
            n,
            Clock::count(ticks),
            Clock::UNIT,
            n * n,
            if ok { "OK" } else { "MISMATCH" }
        );
    }

    ops(&clock, "mnist_lstm", MNIST_LSTM, &mut ARENA.0, &mut rng);
    if !SMALL {
        ops(&clock, "kws_gru", KWS_GRU, &mut ARENA.0, &mut rng);
        ops(
            &clock,
            "mnist_lstm_unit16",
            MNIST_LSTM16,
            &mut ARENA.0,
            &mut rng,
        );
    }
    fw::exit(bad == 0)
}
