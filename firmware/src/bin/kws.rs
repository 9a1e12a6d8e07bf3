//! Keyword spotting from audio: committed Speech Commands clips stored in flash as raw 16 kHz
//! PCM stand in for the microphone ([`AudioSource`]). Each 20 ms hop of audio goes through the
//! runtime's log-mel front-end (`kinglet::frontend::Streamer`), is quantized and fed to the
//! keyword model (`models/kws_gru`, GRU(40→64) → Linear(64→12)) with `Session::step`, and the
//! softmax posteriors are smoothed and thresholded exactly as `kinglet kws --stream` does
//! (`common::Posterior`). It logs each detection, the instructions per hop and per clip, and
//! checks its detections (scores to the bit) and every step's int8 output against the host's
//! (computed by `build.rs`); exits non-zero on a mismatch.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use defmt::{error, info};
use kinglet::frontend::{Streamer, HOP};
use kinglet::{Model, Session};
use kinglet_firmware::audio::{AudioSource, FlashClip};
use kinglet_firmware::common::{Posterior, CLASSES, SMOOTH, THRESHOLD};
use kinglet_firmware::{self as fw, Clock};

fw::handlers!();

/// The model file, read in place from flash (16-byte aligned).
static MODEL: &[u8] = fw::include_aligned!("../../../models/kws_gru/model.kgl");
/// The clips, 16-bit little-endian PCM at 16 kHz, converted from WAV by `build.rs`.
static PCM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kws_clips.bin"));

/// A clip in [`PCM`] (offset and length in samples).
struct Clip {
    name: &'static str,
    start: usize,
    len: usize,
}

/// A detection as `kinglet kws --stream` reports it: frame number (1-based, the time is
/// `frame * 20 ms + 10 ms`), class, smoothed score (as f32 bits, compared exactly).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Detection {
    clip: usize,
    frame: usize,
    class: usize,
    score_bits: u32,
}

mod fixture {
    use super::{Clip, Detection};
    include!(concat!(env!("OUT_DIR"), "/kws.rs"));
}

/// The front-end's state (tables, FFT buffer, sample history), a static.
const FRONTEND_BYTES: usize = core::mem::size_of::<Streamer>();
/// Stack the app needs: its measured peak (4,644 bytes on M4 and M33, see the snapshots)
/// rounded up; the app fails if its peak ever exceeds this. (With 2 KiB it linked on the
/// microbit and overflowed.)
const STACK_RESERVE: usize = 5 * 1024;
/// The static arena: the model's need rounded up to 16 bytes, within the board's arena budget
/// (beyond it, `check_arena` refuses to start).
const ARENA_NEEDED: usize = {
    let n = (fixture::ARENA_NEEDED + 15) & !15;
    if n < fw::ARENA_BYTES {
        n
    } else {
        fw::ARENA_BYTES
    }
};
/// Whether the arena, the front-end and the stack fit the board's RAM together.
const FITS: bool = ARENA_NEEDED + FRONTEND_BYTES + STACK_RESERVE <= fw::board::RAM_BYTES;
/// The static arena's size (none when the app cannot fit, so that it still links and says why).
const ARENA: usize = if FITS { ARENA_NEEDED } else { 0 };
/// One front-end in RAM, or none.
const FRONTENDS: usize = FITS as usize;
/// Most detections checked (the host's list is shorter; see build.rs).
const MAX_DETECTIONS: usize = 16;

/// `exp` as the host computes it: `libm::expf`, corrected at the few arguments where the host's
/// `f32::exp` rounds differently (listed by `build.rs` over every argument the softmax can see).
fn exp_host(x: f32) -> f32 {
    match fixture::EXP_FIXUPS.binary_search_by_key(&x.to_bits(), |&(a, _)| a) {
        Ok(i) => f32::from_bits(fixture::EXP_FIXUPS[i].1),
        Err(_) => libm::expf(x),
    }
}

fn is_keyword(class: usize) -> bool {
    !fixture::LABELS[class].starts_with('_')
}

#[entry]
fn main() -> ! {
    static mut ARENA_BUF: fw::Aligned<[u8; ARENA]> = fw::Aligned([0; ARENA]);
    static mut FRONTEND: [Streamer; FRONTENDS] = [const { Streamer::zeroed() }; FRONTENDS];
    fw::paint_stack();
    let cp = fw::check(cortex_m::Peripherals::take().ok_or(()), "peripherals");
    let clock = Clock::start(cp.SYST);

    info!(
        "kws on {=str}: models/kws_gru (GRU-64, 12 classes), audio through the on-device log-mel front-end",
        fw::board::BOARD
    );
    let model = fw::check(Model::parse(MODEL), "model");
    let needed = ARENA_NEEDED + FRONTEND_BYTES + STACK_RESERVE;
    let Some(streamer) = FRONTEND.first_mut() else {
        error!(
            "error: kws needs {=usize} bytes of RAM (arena {=usize} + front-end {=usize} + stack {=usize}), but {=str} has {=usize} bytes of RAM",
            needed,
            ARENA_NEEDED,
            FRONTEND_BYTES,
            STACK_RESERVE,
            fw::board::BOARD,
            fw::board::RAM_BYTES
        );
        fw::exit(false)
    };
    fw::check_arena(&model);
    let mut session = fw::check(Session::new(&model, &mut ARENA_BUF.0), "session");
    let (x, y) = (
        fw::check(model.input(0).ok_or(()), "input"),
        fw::check(model.output(0).ok_or(()), "output"),
    );
    let window = model.seq_len();
    info!(
        "{=usize} clips in flash ({=usize} bytes), hop {=usize} samples, posterior: softmax, mean of the last {=usize}, threshold {=f32}, from frame {=usize}",
        fixture::CLIPS.len(),
        PCM.len(),
        HOP,
        SMOOTH,
        THRESHOLD,
        window
    );
    Clock::log_resolution();

    streamer.init();
    let mut found = [None::<Detection>; MAX_DETECTIONS];
    let (mut n_found, mut hash) = (0, fw::FNV_START);
    let (mut hops, mut hop_total, mut hop_lo, mut hop_hi) = (0u64, 0u64, u64::MAX, 0u64);
    let (mut frontend_total, mut step_total, mut frames_total) = (0u64, 0u64, 0u64);
    for (c, clip) in fixture::CLIPS.iter().enumerate() {
        let mut mic = FlashClip::new(&PCM[2 * clip.start..2 * (clip.start + clip.len)]);
        session.reset();
        streamer.reset();
        let mut posterior = Posterior::new();
        let mut clip_count = 0u64;
        let mut buf = [0i16; HOP];
        loop {
            let n = match mic.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => match e {},
            };
            // One hop: front-end (when a frame completes), quantize, step, posterior.
            let t_hop = clock.ticks();
            let (mut t_frame, mut t_step) = (t_hop, 0);
            let mut failed = None;
            let ((), ticks) = clock.measure(|| {
                streamer.push(&buf[..n], |frame| {
                    let t0 = clock.ticks();
                    t_frame = t0;
                    let mut fq = [0i8; kinglet::frontend::BANDS];
                    x.quantize(frame, &mut fq);
                    let mut yq = [0i8; CLASSES];
                    if let Err(e) = session.step(&fq, &mut yq) {
                        failed = Some(e);
                        return;
                    }
                    t_step = clock.ticks() - t0;
                    hash = fw::fnv1a32(hash, &yq);
                    let mut yf = [0f32; CLASSES];
                    y.dequantize(&yq, &mut yf);
                    if let Some((class, score)) = posterior.push(&yf, window, is_keyword, exp_host)
                    {
                        let d = Detection {
                            clip: c,
                            frame: posterior.frames(),
                            class,
                            score_bits: score.to_bits(),
                        };
                        info!(
                            "clip {=usize} {=str}: detected {=str} at {=usize} ms (frame {=usize}), score {=f32} ({=u32:#010x})",
                            c,
                            clip.name,
                            fixture::LABELS[class],
                            d.frame * 20 + 10,
                            d.frame,
                            score,
                            d.score_bits
                        );
                        if let Some(slot) = found.get_mut(n_found) {
                            *slot = Some(d);
                        }
                        n_found += 1;
                    }
                })
            });
            if let Some(e) = failed {
                fw::check::<(), _>(Err(e), "step");
            }
            let count = Clock::count(ticks);
            (hops, hop_total, clip_count) = (hops + 1, hop_total + count, clip_count + count);
            (hop_lo, hop_hi) = (hop_lo.min(count), hop_hi.max(count));
            if t_step > 0 {
                frames_total += 1;
                step_total += Clock::count(t_step);
                frontend_total += Clock::count(t_frame - t_hop);
            }
        }
        info!(
            "clip {=usize} {=str}: {=usize} samples, {=usize} frames, {=str} per clip {=u64}",
            c,
            clip.name,
            mic.samples(),
            posterior.frames(),
            Clock::UNIT,
            clip_count
        );
    }
    info!(
        "{=str} per hop: mean {=u64} min {=u64} max {=u64} over {=u64} hops; per hop with a frame: front-end ~{=u64}, step ~{=u64} (SysTick)",
        Clock::UNIT,
        hop_total / hops,
        hop_lo,
        hop_hi,
        hops,
        frontend_total / frames_total.max(1),
        step_total / frames_total.max(1)
    );
    info!(
        "{=str} per clip: mean {=u64} over {=usize} clips",
        Clock::UNIT,
        hop_total / fixture::CLIPS.len() as u64,
        fixture::CLIPS.len()
    );
    let same_detections = n_found == fixture::HOST_DETECTIONS.len()
        && found
            .iter()
            .zip(fixture::HOST_DETECTIONS)
            .all(|(d, h)| *d == Some(*h));
    info!(
        "detections: {=usize}, host {=usize}: {=str}",
        n_found,
        fixture::HOST_DETECTIONS.len(),
        if same_detections { "OK" } else { "MISMATCH" }
    );
    let hash_ok = hash == fixture::HOST_HASH;
    info!(
        "step outputs fnv1a32 {=u32:#010x}, host {=u32:#010x}: {=str}",
        hash,
        fixture::HOST_HASH,
        if hash_ok { "OK" } else { "MISMATCH" }
    );
    fw::log_memory(&model, ARENA, "clips", PCM.len());
    let stack_ok = fw::stack_peak() <= STACK_RESERVE;
    info!(
        "peak stack within the {=usize}-byte allowance the RAM check assumes: {=str}",
        STACK_RESERVE,
        if stack_ok { "OK" } else { "EXCEEDED" }
    );
    fw::exit(hash_ok && same_detections && stack_ok)
}
