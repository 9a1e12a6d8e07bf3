//! Keyword spotting, streaming: the Speech Commands keyword model (`models/kws_gru`,
//! GRU(40→64) → Linear(64→12) over 49 log-mel frames of 40 bands) is fed one frame at a time
//! with `Session::step`, as audio frames would arrive; the frames are real held-out clips'
//! features from the on-device front-end, quantized at build time. At the end of each clip it prints the argmax class and its int8 score,
//! the instructions per step and per clip, and checks on the device that streaming gave the
//! same bytes as `Session::run` over the whole clip (exits non-zero on a mismatch).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use kinglet::{Model, Session};
use kinglet_firmware::{self as fw, hprintln, Clock};

fw::handlers!();

/// The model file, read in place from flash (16-byte aligned).
static MODEL: &[u8] = fw::include_aligned!("../../../models/kws_gru/model.kgl");
/// `fixture::SAMPLES` clips, already quantized with the model's input scale / zero point.
static INPUTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kws_inputs.bin"));
mod fixture {
    include!(concat!(env!("OUT_DIR"), "/kws.rs"));
}

const CLASSES: usize = 12;

fn argmax(v: &[i8]) -> (usize, i8) {
    v.iter().enumerate().fold(
        (0, i8::MIN),
        |best, (i, &s)| if s > best.1 { (i, s) } else { best },
    )
}

#[entry]
fn main() -> ! {
    static mut ARENA: fw::Aligned<[u8; fw::ARENA_BYTES]> = fw::Aligned([0; fw::ARENA_BYTES]);
    fw::paint_stack();
    let cp = fw::check(cortex_m::Peripherals::take().ok_or(()), "peripherals");
    let clock = Clock::start(cp.SYST);

    hprintln!(
        "kws on {}: models/kws_gru (GRU-64, 12 classes)",
        fw::board::BOARD
    );
    let model = fw::check(Model::parse(MODEL), "model");
    fw::check_arena(&model);
    let mut session = fw::check(Session::new(&model, &mut ARENA.0), "session");
    let (x, y) = (
        fw::check(model.input(0).ok_or(()), "input"),
        fw::check(model.output(0).ok_or(()), "output"),
    );
    let frames = model.seq_len();
    let frame_len = x.step_bytes(frames);
    hprintln!(
        "clip {} frames x {} int8 features, {} classes, streamable {}, {} ops",
        frames,
        frame_len,
        y.len(),
        model.is_streamable(),
        model.n_ops()
    );
    Clock::print_resolution();

    let mut streamed = [0i8; CLASSES];
    let mut whole = [0i8; CLASSES];
    let (mut hash, mut all_match) = (fw::FNV_START, true);
    let (mut step_total, mut step_lo, mut step_hi, mut run_total) = (0u64, u64::MAX, 0u64, 0u64);
    for (c, clip) in fw::as_i8(INPUTS).chunks_exact(x.nbytes()).enumerate() {
        // Streaming: state reset at the start of the clip, then one frame per call.
        session.reset();
        let mut clip_count = 0;
        for frame in clip.chunks_exact(frame_len) {
            let (r, ticks) = clock.measure(|| session.step(frame, &mut streamed));
            fw::check(r, "step");
            let n = Clock::count(ticks);
            (clip_count, step_lo, step_hi) = (clip_count + n, step_lo.min(n), step_hi.max(n));
        }
        step_total += clip_count;
        // The whole clip at once must give the same bytes.
        let (r, ticks) = clock.measure(|| session.run(clip, &mut whole));
        fw::check(r, "run");
        let run_count = Clock::count(ticks);
        run_total += run_count;
        let same = streamed == whole;
        all_match &= same;
        hash = fw::fnv1a32(hash, &whole);
        let (class, score) = argmax(&streamed);
        hprintln!(
            "clip {}: class {} score {} (label {}) int8 {:?}, step==run {}, {} per clip: streamed {} run {}",
            c,
            class,
            score,
            fixture::LABELS[c],
            streamed,
            if same { "OK" } else { "MISMATCH" },
            Clock::UNIT,
            clip_count,
            run_count
        );
    }
    let steps = (fixture::SAMPLES * frames) as u64;
    hprintln!(
        "{} per step: mean {} min {} max {} over {} steps",
        Clock::UNIT,
        step_total / steps,
        step_lo,
        step_hi,
        steps
    );
    hprintln!(
        "{} per clip: streamed mean {}, run mean {}",
        Clock::UNIT,
        step_total / fixture::SAMPLES as u64,
        run_total / fixture::SAMPLES as u64
    );
    let hash_ok = hash == fixture::HOST_HASH;
    hprintln!(
        "outputs fnv1a32 {:#010x}, host {:#010x}: {}",
        hash,
        fixture::HOST_HASH,
        if hash_ok { "OK" } else { "MISMATCH" }
    );
    hprintln!(
        "streaming vs run: {}",
        if all_match { "OK" } else { "MISMATCH" }
    );
    fw::print_memory(&model);
    fw::exit(hash_ok && all_match)
}
