//! Link-time proof that the runtime's device path cannot panic (`docs/robustness.md`).
//!
//! Built for `thumbv7em-none-eabihf` with the firmware's release profile (fat LTO, `panic =
//! "abort"`, opt-level `s`; also at opt-level 3). The entry points below drive
//! `Model::parse`, `Session::new`, `reset`, `run`, `step`, `invoke`, `invoke_step` and the I/O
//! accessors (and, with the `frontend` feature, `LogMel` and `Streamer`) on a model whose bytes
//! the optimizer cannot see: `core::hint::black_box` hides the buffer behind an opaque `asm!`
//! that may have written anything to it, so every path the parser lets through is compiled.
//!
//! The panic handler calls `kinglet_panic_is_reachable`, which is defined nowhere. If any panic
//! (bounds check, overflow check, `unwrap`, division by zero, …) stays reachable from the entry
//! points after optimisation, the handler is kept and the link fails with
//! `undefined symbol: kinglet_panic_is_reachable`. `check.sh` turns that failure into a list of
//! the remaining sites (build with `--features list`, walk the call graph).

#![no_std]
#![no_main]

use core::hint::black_box;
use kinglet::Model;
#[cfg(feature = "session")]
use kinglet::Session;

/// Largest model file and arena the probe drives (the buffers live in `.bss`).
const MODEL_CAP: usize = 256 * 1024;
#[cfg(feature = "session")]
const ARENA_CAP: usize = 128 * 1024;
#[cfg(feature = "session")]
const IO_CAP: usize = 16 * 1024;

static mut MODEL: [u8; MODEL_CAP] = [0; MODEL_CAP];
#[cfg(feature = "session")]
static mut ARENA: [u8; ARENA_CAP] = [0; ARENA_CAP];

/// The model file: `len` bytes of `MODEL`, contents unknown to the optimizer.
#[inline(never)]
fn model_bytes(len: usize) -> &'static [u8] {
    // SAFETY: single-threaded probe; `MODEL` is only read, through this one shared borrow.
    let all: &'static [u8; MODEL_CAP] = unsafe { &*core::ptr::addr_of!(MODEL) };
    let all = black_box(all);
    all.get(..black_box(len)).unwrap_or(&[])
}

/// The arena, borrowed once.
#[cfg(feature = "session")]
#[inline(never)]
fn arena() -> &'static mut [u8] {
    // SAFETY: called once, from `probe_session`, before any other borrow of `ARENA`.
    let a: &'static mut [u8; ARENA_CAP] = unsafe { &mut *core::ptr::addr_of_mut!(ARENA) };
    black_box(a)
}

/// `Model::parse` alone. Returns 0 on success, 1 on a parse error.
#[no_mangle]
#[inline(never)]
pub extern "C" fn probe_parse(len: usize) -> u32 {
    match Model::parse(model_bytes(len)) {
        Ok(m) => black_box(m.n_ops() as u32),
        Err(e) => black_box(&e) as *const _ as u32 & 1,
    }
}

/// Parse, then everything a device does with a session.
#[cfg(feature = "session")]
#[no_mangle]
#[inline(never)]
pub extern "C" fn probe_session(len: usize) -> u32 {
    let Ok(model) = Model::parse(model_bytes(len)) else {
        return 1;
    };
    let Ok(mut s) = Session::new(&model, arena()) else {
        return 2;
    };
    let mut input = black_box([0i8; IO_CAP]);
    let mut output = [0i8; IO_CAP];
    let (n_in, n_out) = black_box((0usize, 0usize));
    let (Some(i), Some(o)) = (input.get(..n_in), output.get_mut(..n_out)) else {
        return 3;
    };
    let mut errs = 0u32;
    errs += s.run(i, o).is_err() as u32;
    black_box(&o);
    s.reset();
    let (f_in, f_out) = black_box((0usize, 0usize));
    let (Some(i), Some(o)) = (input.get(..f_in), output.get_mut(..f_out)) else {
        return 3;
    };
    errs += s.step(i, o).is_err() as u32;
    black_box(&o);
    // The multi-I/O API.
    let k = black_box(0usize);
    if let Ok(x) = s.input_mut(k) {
        if let Some(d) = input.get(..x.len()) {
            x.copy_from_slice(d);
        }
    }
    if let Ok(x) = s.input_frame_mut(k) {
        black_box(x);
    }
    errs += s.invoke().is_err() as u32;
    if let Ok(y) = s.output(k) {
        black_box(y);
    }
    errs += s.invoke_step().is_err() as u32;
    if let Ok(y) = s.output_frame(k) {
        black_box(y);
    }
    black_box(&mut input);
    errs
}

/// The audio front-end: tables, whole clips, streaming.
#[cfg(feature = "frontend")]
#[no_mangle]
#[inline(never)]
pub extern "C" fn probe_frontend(n: usize) -> u32 {
    use kinglet::frontend::{LogMel, Streamer, BANDS, WINDOW};
    let pcm = black_box([0i16; 16_000]);
    let n = black_box(n);
    let Some(pcm) = pcm.get(..n) else {
        return 1;
    };
    let mut lm = LogMel::new();
    let mut frame = [0f32; BANDS];
    if let Some(w) = pcm.first_chunk::<WINDOW>() {
        lm.frame(w, &mut frame);
    }
    let mut frames = [[0f32; BANDS]; 49];
    let got = lm.clip(pcm, &mut frames);
    black_box(&frames);
    let mut st = Streamer::with_logmel(lm);
    let mut count = 0u32;
    st.push(pcm, |f| {
        black_box(f);
        count += 1;
    });
    st.reset();
    black_box(st.samples_to_next_frame());
    // The in-place constructors firmware uses for `static` front-ends.
    let mut st2 = Streamer::zeroed();
    st2.init();
    st2.push(pcm, |f| {
        black_box(f);
        count += 1;
    });
    count + got as u32
}

#[cfg(not(feature = "frontend"))]
#[no_mangle]
#[inline(never)]
pub extern "C" fn probe_frontend(_n: usize) -> u32 {
    0
}

#[cfg(not(feature = "session"))]
#[no_mangle]
#[inline(never)]
pub extern "C" fn probe_session(_len: usize) -> u32 {
    0
}

/// The entry point the linker keeps; it calls every probe with lengths it cannot see.
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let mut acc = 0u32;
    loop {
        acc = acc.wrapping_add(probe_parse(black_box(0)));
        acc = acc.wrapping_add(probe_session(black_box(0)));
        acc = acc.wrapping_add(probe_frontend(black_box(0)));
        black_box(acc);
    }
}

#[cfg(not(feature = "list"))]
extern "C" {
    /// Defined nowhere: referencing it fails the link.
    fn kinglet_panic_is_reachable() -> !;
}

#[cfg(not(feature = "list"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: never runs. If this handler is reachable the link fails before anything runs.
    unsafe { kinglet_panic_is_reachable() }
}

/// `--features list`: an ordinary handler, so the binary links and its call graph can be read.
#[cfg(feature = "list")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
