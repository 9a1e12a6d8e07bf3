//! Time-series forecasting: a GRU(1→16) → Linear(16→4) forecaster
//! (`models/fixtures/gru_forecast_legacy_o17`) replays committed test windows (24 steps each,
//! quantized on the host by `build.rs`) with `Session::run`, and prints the int8 forecasts, the
//! instructions per inference, the output hash checked against the host's, and the memory used.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use kinglet::{Model, Session};
use kinglet_firmware::{self as fw, hprintln, Clock};

fw::handlers!();

/// The model file, read in place from flash (16-byte aligned).
static MODEL: &[u8] =
    fw::include_aligned!("../../../models/fixtures/gru_forecast_legacy_o17/model.kgl");
/// `fixture::SAMPLES` windows, already quantized with the model's input scale / zero point.
static INPUTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/forecast_inputs.bin"));
mod fixture {
    include!(concat!(env!("OUT_DIR"), "/forecast.rs"));
}

#[entry]
fn main() -> ! {
    static mut ARENA: fw::Aligned<[u8; fw::ARENA_BYTES]> = fw::Aligned([0; fw::ARENA_BYTES]);
    fw::paint_stack();
    let cp = fw::check(cortex_m::Peripherals::take().ok_or(()), "peripherals");
    let clock = Clock::start(cp.SYST);

    hprintln!("forecast on {}: gru_forecast_legacy_o17", fw::board::BOARD);
    let model = fw::check(Model::parse(MODEL), "model");
    fw::check_arena(&model);
    let mut session = fw::check(Session::new(&model, &mut ARENA.0), "session");
    let (x, y) = (
        fw::check(model.input(0).ok_or(()), "input"),
        fw::check(model.output(0).ok_or(()), "output"),
    );
    hprintln!(
        "input {} x int8 (zero point {}), output {} x int8 (zero point {}), {} ops",
        x.len(),
        x.zero_point(),
        y.len(),
        y.zero_point(),
        model.n_ops()
    );
    Clock::print_resolution();

    let mut out = [0i8; 4];
    let mut milli = [0i32; 4];
    let (mut hash, mut total, mut lo, mut hi) = (fw::FNV_START, 0u64, u64::MAX, 0u64);
    for (s, window) in fw::as_i8(INPUTS).chunks_exact(x.nbytes()).enumerate() {
        let (r, ticks) = clock.measure(|| session.run(window, &mut out));
        fw::check(r, "run");
        hash = fw::fnv1a32(hash, &out);
        let n = Clock::count(ticks);
        (total, lo, hi) = (total + n, lo.min(n), hi.max(n));
        let mut f = [0f32; 4];
        y.dequantize(&out, &mut f);
        for (m, v) in milli.iter_mut().zip(f) {
            *m = (v * 1000.0) as i32;
        }
        hprintln!(
            "window {}: int8 {:?} = x1000 {:?}, {} {}",
            s,
            out,
            milli,
            n,
            Clock::UNIT
        );
    }
    let ok = hash == fixture::HOST_HASH;
    hprintln!(
        "outputs fnv1a32 {:#010x}, host {:#010x}: {}",
        hash,
        fixture::HOST_HASH,
        if ok { "OK" } else { "MISMATCH" }
    );
    hprintln!(
        "{} per inference: mean {} min {} max {} over {} windows",
        Clock::UNIT,
        total / fixture::SAMPLES as u64,
        lo,
        hi,
        fixture::SAMPLES
    );
    fw::print_memory(&model);
    fw::exit(ok)
}
