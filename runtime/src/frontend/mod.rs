//! Keyword-spotting audio front-end: 16 kHz mono `i16` PCM to log-mel frames (feature
//! `frontend`).
//!
//! This is the one implementation of the features every Kinglet keyword spotter sees: the
//! host tool (`kinglet features`) calls it to make training, calibration and test data, and
//! firmware calls it on live audio, so training and device get identical numbers.
//!
//! # The computation, exactly
//!
//! | step | what |
//! |---|---|
//! | input | 16 kHz mono `i16` PCM, scaled to `x = s / 32768` |
//! | framing | 30 ms window ([`WINDOW`] = 480 samples), 20 ms hop ([`HOP`] = 320); only frames that fit entirely: a 1 s clip gives `(16000 - 480) / 320 + 1 = 49` frames ([`frames_in`]) |
//! | window | periodic Hann, `w[n] = 0.5 - 0.5 cos(2 pi n / 480)`, `n = 0..480` |
//! | FFT | 480 windowed samples zero-padded to [`FFT_LEN`] = 512, real FFT (`microfft`), [`BINS`] = 257 bins of 31.25 Hz |
//! | power | `|X[k]|^2` (no 1/N scaling) |
//! | mel | [`BANDS`] = 40 triangular filters, HTK mel scale `mel(f) = 2595 log10(1 + f / 700)`, 42 edge frequencies equally spaced in mel from [`F_LOW`] = 20 Hz to [`F_HIGH`] = 7600 Hz; each triangle rises linearly in Hz from edge `m` to its peak (weight 1) at edge `m + 1` and falls to edge `m + 2`; no area normalisation. This is `torchaudio.functional.melscale_fbanks(257, 20, 7600, 40, 16000, norm=None, mel_scale="htk")`. |
//! | log | `ln(mel + 1e-6)` ([`LOG_OFFSET`]); digital silence gives `ln(1e-6) = -13.8155` |
//! | output | `f32` per band, band 0 lowest |
//!
//! # Determinism
//!
//! The front-end uses `f32` (it is a feature extractor, not a model kernel; decision 1 covers
//! the kernels). The results are nevertheless bit-identical on x86-64, aarch64, Cortex-M4F
//! and Cortex-M0+: every operation is an IEEE-754 `f32` add, multiply or divide in a fixed
//! order (Rust never fuses them into FMAs), the FFT twiddles are constant tables, and `ln`
//! and the table set-up use `libm`'s portable software routines, not the platform's maths
//! library. (Cortex-M4F must run with the FPU's flush-to-zero bit clear, its reset state.)
//!
//! # Memory
//!
//! [`LogMel`] holds about 6 KB (window table, sparse filter weights, FFT buffer);
//! [`Streamer`] adds 960 bytes of sample history. Nothing is allocated.
//!
//! ```
//! use kinglet::frontend::{frames_in, LogMel, BANDS};
//! let pcm = [0i16; 16000]; // 1 s of silence
//! let mut frames = [[0.0f32; BANDS]; 49];
//! let mut logmel = LogMel::new();
//! assert_eq!(logmel.clip(&pcm, &mut frames), frames_in(pcm.len()));
//! assert_eq!(frames[48][0], libm::logf(1e-6));
//! ```

mod stream;
#[cfg(test)]
mod tests;

pub use stream::Streamer;

/// Sample rate the front-end expects, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// Analysis window length in samples (30 ms).
pub const WINDOW: usize = 480;
/// Hop between frames in samples (20 ms).
pub const HOP: usize = 320;
/// FFT length; the window is zero-padded to this.
pub const FFT_LEN: usize = 512;
/// Number of FFT bins from DC to Nyquist inclusive.
pub const BINS: usize = FFT_LEN / 2 + 1;
/// Number of mel bands, i.e. values per output frame.
pub const BANDS: usize = 40;
/// Lower edge of the lowest mel triangle, in Hz.
pub const F_LOW: f64 = 20.0;
/// Upper edge of the highest mel triangle, in Hz.
pub const F_HIGH: f64 = 7600.0;
/// Added to the mel energy before the logarithm, so silence gives a finite value.
pub const LOG_OFFSET: f32 = 1e-6;
/// Frames in a 1 s clip (16000 samples).
pub const FRAMES_PER_SECOND: usize = frames_in(SAMPLE_RATE as usize);

/// Capacity of the sparse filter-weight table. Every bin lies in at most two consecutive
/// triangles (the edges are increasing), so `2 * BINS` always suffices.
const WEIGHTS_CAP: usize = 2 * BINS;

/// Number of whole frames in `samples` samples: `(samples - 480) / 320 + 1`, or 0 for fewer
/// than 480 samples.
pub const fn frames_in(samples: usize) -> usize {
    if samples < WINDOW {
        0
    } else {
        (samples - WINDOW) / HOP + 1
    }
}

/// HTK mel scale.
pub fn hz_to_mel(hz: f64) -> f64 {
    2595.0 * libm::log10(1.0 + hz / 700.0)
}

/// Inverse of [`hz_to_mel`].
pub fn mel_to_hz(mel: f64) -> f64 {
    700.0 * (libm::pow(10.0, mel / 2595.0) - 1.0)
}

/// The `BANDS + 2` filter edge frequencies in Hz (lower edge, peaks, upper edge), equally
/// spaced on the mel scale from [`F_LOW`] to [`F_HIGH`].
pub fn band_edges_hz() -> [f64; BANDS + 2] {
    let lo = hz_to_mel(F_LOW);
    let hi = hz_to_mel(F_HIGH);
    let mut edges = [0.0; BANDS + 2];
    for (i, e) in edges.iter_mut().enumerate() {
        *e = mel_to_hz(lo + (hi - lo) * i as f64 / (BANDS + 1) as f64);
    }
    edges
}

/// Log-mel feature extractor: fixed tables computed once by [`LogMel::new`], and a scratch
/// FFT buffer.
#[derive(Clone)]
pub struct LogMel {
    /// Periodic Hann window pre-multiplied by 1/32768 (the `i16` to `[-1, 1)` scale).
    window: [f32; WINDOW],
    /// First FFT bin of each band's non-zero weights.
    band_start: [u16; BANDS],
    /// Number of non-zero weights of each band; band `m`'s weights follow band `m - 1`'s in
    /// `weights`.
    band_len: [u16; BANDS],
    /// All bands' non-zero triangle weights, concatenated.
    weights: [f32; WEIGHTS_CAP],
    /// FFT input, then (in place) the power spectrum.
    fft: [f32; FFT_LEN],
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LogMel")
            .field("band_start", &self.band_start)
            .field("band_len", &self.band_len)
            .finish_non_exhaustive()
    }
}

impl LogMel {
    /// Computes the window and filter tables (with `libm`, in `f64`, rounded once to `f32`).
    pub fn new() -> Self {
        let mut logmel = Self::zeroed();
        logmel.init();
        logmel
    }

    /// All-zero tables, for a `static` (which then lives in `.bss`, not flash). Call
    /// [`init`](Self::init) before use: a zeroed extractor outputs `ln(1e-6)` for everything.
    pub const fn zeroed() -> Self {
        LogMel {
            window: [0.0; WINDOW],
            band_start: [0; BANDS],
            band_len: [0; BANDS],
            weights: [0.0; WEIGHTS_CAP],
            fft: [0.0; FFT_LEN],
        }
    }

    /// Computes the tables in place: afterwards `self` equals [`LogMel::new`]'s result, without
    /// a 6 KB value built on the stack first (which matters on a 16 KB-RAM microcontroller).
    pub fn init(&mut self) {
        let window = &mut self.window;
        for (n, w) in window.iter_mut().enumerate() {
            let hann =
                0.5 - 0.5 * libm::cos(2.0 * core::f64::consts::PI * n as f64 / WINDOW as f64);
            *w = (hann / 32768.0) as f32;
        }

        let edges = band_edges_hz();
        let band_start = &mut self.band_start;
        let band_len = &mut self.band_len;
        let weights = &mut self.weights;
        weights.fill(0.0);
        let mut used = 0;
        for m in 0..BANDS {
            let (left, peak, right) = (edges[m], edges[m + 1], edges[m + 2]);
            let mut first = None;
            for k in 0..BINS {
                let w = triangle(bin_hz(k), left, peak, right);
                if w > 0.0 {
                    if first.is_none() {
                        first = Some(k);
                    }
                    // WEIGHTS_CAP holds every band's weights (checked by a test); `get_mut`
                    // keeps the device path free of a bounds-check panic.
                    if let Some(slot) = weights.get_mut(used) {
                        *slot = w as f32;
                    }
                    used += 1;
                }
            }
            // With F_LOW, F_HIGH and BANDS as they are, every triangle spans at least two bins
            // (checked by a test); an empty band would be a configuration error.
            let first = first.unwrap_or(0);
            band_start[m] = first as u16;
            band_len[m] = (used - weights_before(&band_len[..m])) as u16;
        }
        self.fft.fill(0.0);
    }

    /// One frame: 480 samples in, 40 log-mel values out.
    pub fn frame(&mut self, pcm: &[i16; WINDOW], out: &mut [f32; BANDS]) {
        for ((x, &s), &w) in self.fft.iter_mut().zip(pcm.iter()).zip(self.window.iter()) {
            *x = s as f32 * w;
        }
        self.fft[WINDOW..].fill(0.0);

        // In place: the spectrum overwrites the buffer, then the power spectrum overwrites the
        // spectrum. microfft packs the (real) Nyquist bin into the imaginary part of DC.
        let spectrum = microfft::real::rfft_512(&mut self.fft);
        let dc = spectrum[0].re;
        let nyquist = spectrum[0].im;
        for c in spectrum.iter_mut() {
            c.re = c.re * c.re + c.im * c.im;
        }
        spectrum[0].re = dc * dc;
        spectrum[0].im = nyquist * nyquist;
        // Now fft[2k] is the power of bin k for k < 256, and fft[1] that of bin 256.
        // (`get`: the band tables only name bins below BINS, so 2k < FFT_LEN.)
        let power = |k: usize| {
            if k == BINS - 1 {
                self.fft[1]
            } else {
                self.fft.get(2 * k).copied().unwrap_or(0.0)
            }
        };

        let mut offset = 0;
        for (m, o) in out.iter_mut().enumerate() {
            let start = self.band_start[m] as usize;
            let len = self.band_len[m] as usize;
            let mut energy = 0.0f32;
            let weights = self.weights.get(offset..offset + len).unwrap_or(&[]);
            for (i, &w) in weights.iter().enumerate() {
                energy += w * power(start + i);
            }
            offset += len;
            *o = libm::logf(energy + LOG_OFFSET);
        }
    }

    /// A whole clip: writes `min(frames_in(pcm.len()), out.len())` frames to `out` and returns
    /// that number. Frame `t` covers samples `320 t .. 320 t + 480`; a tail shorter than a hop
    /// is ignored (pad the clip first if it must count).
    pub fn clip(&mut self, pcm: &[i16], out: &mut [[f32; BANDS]]) -> usize {
        let n = frames_in(pcm.len()).min(out.len());
        for (t, frame) in out.iter_mut().take(n).enumerate() {
            // `t < frames_in(pcm.len())`, so the window is in `pcm`.
            let Some(window) = pcm.get(t * HOP..).and_then(|r| r.first_chunk::<WINDOW>()) else {
                return t;
            };
            self.frame(window, frame);
        }
        n
    }

    /// The filter weights of band `m` as (first bin, weights), for inspection and tests.
    ///
    /// # Panics
    /// If `m >= BANDS`.
    pub fn band(&self, m: usize) -> (usize, &[f32]) {
        let offset = weights_before(&self.band_len[..m]);
        let len = self.band_len[m] as usize;
        (
            self.band_start[m] as usize,
            &self.weights[offset..offset + len],
        )
    }
}

fn weights_before(lens: &[u16]) -> usize {
    lens.iter().map(|&l| l as usize).sum()
}

/// Centre frequency of FFT bin `k` in Hz.
pub fn bin_hz(k: usize) -> f64 {
    k as f64 * SAMPLE_RATE as f64 / FFT_LEN as f64
}

/// Triangle with feet at `left` and `right` and peak 1 at `peak`, linear in Hz.
fn triangle(f: f64, left: f64, peak: f64, right: f64) -> f64 {
    let rise = (f - left) / (peak - left);
    let fall = (right - f) / (right - peak);
    rise.min(fall).max(0.0)
}

/// Convenience for whole clips: `LogMel::new().clip(pcm, out)`. Builds the tables each call;
/// keep a [`LogMel`] instead when extracting many clips.
pub fn clip(pcm: &[i16], out: &mut [[f32; BANDS]]) -> usize {
    LogMel::new().clip(pcm, out)
}
