//! Generic benchmark: one inference of one model chosen at build time
//! (`KINGLET_BENCH_MODEL=path/to/model.kgl`, default `models/mnist_lstm/model.kgl`) on a fixed
//! input (the first sample of the `test.npy` beside the model, or a fixed pattern), with the
//! int8 outputs checked against the host's (computed by `build.rs` with `kinglet` on the host).
//! It prints the instructions of the inference (SysTick under `-icount`; `bench.sh` measures it
//! exactly with the m4cycles plugin between the two `kinglet_mark()` calls), and one
//! `bench:` line with the model, arena and peak stack bytes for `bench.sh`.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use kinglet::{Model, Session};
use kinglet_firmware::{self as fw, hprintln, Clock};

fw::handlers!();

/// The model file, read in place from flash (16-byte aligned).
static MODEL: &[u8] = fw::include_aligned!(concat!(env!("OUT_DIR"), "/bench_model.kgl"));
/// One fixed input per model input, quantized on the host, concatenated.
static INPUTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bench_inputs.bin"));
mod fixture {
    include!(concat!(env!("OUT_DIR"), "/bench.rs"));
}

#[entry]
fn main() -> ! {
    static mut ARENA: fw::Aligned<[u8; fw::ARENA_BYTES]> = fw::Aligned([0; fw::ARENA_BYTES]);
    fw::paint_stack();
    let cp = fw::check(cortex_m::Peripherals::take().ok_or(()), "peripherals");
    let clock = Clock::start(cp.SYST);

    let model = fw::check(Model::parse(MODEL), "model");
    hprintln!(
        "bench on {}: {} ({} ops, input {})",
        fw::board::BOARD,
        fixture::MODEL_NAME,
        model.n_ops(),
        fixture::INPUT_SOURCE
    );
    fw::check_arena(&model);
    let mut session = fw::check(Session::new(&model, &mut ARENA.0), "session");
    Clock::print_resolution();

    // Stack painted again right before the inference: the peak below is the inference's (plus
    // the frames above `main`'s call site), not the formatting's.
    fw::paint_stack();
    let (r, ticks) = clock.measure(|| {
        let mut rest = fw::as_i8(INPUTS);
        for i in 0..model.n_inputs() {
            let x = session.input_mut(i)?;
            let (now, later) = rest.split_at(x.len().min(rest.len()));
            x.copy_from_slice(now);
            rest = later;
        }
        session.invoke()
    });
    let peak_stack = fw::stack_peak();
    fw::check(r, "invoke");

    // Outputs compared in place with the host's, without a copy on the stack.
    let (mut hash, mut n, mut same) = (fw::FNV_START, 0, true);
    for i in 0..model.n_outputs() {
        let y = fw::check(session.output(i), "output");
        hash = fw::fnv1a32(hash, y);
        same &= fixture::HOST_OUTPUT.get(n..n + y.len()) == Some(y);
        if i == 0 {
            hprintln!("output 0 int8 {:?}", &y[..y.len().min(32)]);
        }
        n += y.len();
    }
    let ok = same && n == fixture::HOST_OUTPUT.len() && hash == fixture::HOST_HASH;
    hprintln!("{} per inference: {}", Clock::UNIT, Clock::count(ticks));
    hprintln!(
        "outputs fnv1a32 {:#010x}, host {:#010x}: {}",
        hash,
        fixture::HOST_HASH,
        if ok { "OK" } else { "MISMATCH" }
    );
    hprintln!(
        "bench: model_bytes={} input_bytes={} arena_bytes={} peak_stack_bytes={}",
        model.file_len(),
        INPUTS.len(),
        model.arena_bytes(),
        peak_stack
    );
    fw::exit(ok)
}
