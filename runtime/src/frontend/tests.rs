//! Front-end tests against an independent `f64` reference (direct DFT, filters built from the
//! formulas with std's maths), plus streaming and band-placement checks.

extern crate std;

use super::*;
use std::vec;
use std::vec::Vec;

/// Largest |kinglet - f64 reference| allowed, in natural-log units (1e-3 = 0.1% of the band's
/// energy), for any band.
const REFERENCE_TOLERANCE: f64 = 1e-3;
/// The same for bands within 15 ln units (65 dB) of the frame's loudest band. The f32 FFT's
/// rounding error is relative to the frame's total energy, so bands far below the loudest one
/// (here: chirp leakage 90 dB down, near the 1e-6 offset) see larger relative errors.
/// Measured on these signals: 5.5e-4 overall, under 1e-4 within 65 dB.
const REFERENCE_TOLERANCE_LOUD: f64 = 2e-4;

/// xorshift32: deterministic test signals and chunk sizes without a dependency.
struct Rng(u32);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f64 {
        (self.next() as f64 / 4294967296.0) * 2.0 - 1.0
    }
}

fn to_i16(x: f64) -> i16 {
    (x * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

fn sine(freq: f64, amplitude: f64, samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|n| to_i16(amplitude * (2.0 * std::f64::consts::PI * freq * n as f64 / 16000.0).sin()))
        .collect()
}

/// Voiced-speech-like test signal: a gliding 120-220 Hz pitch with 30 harmonics whose
/// amplitudes fall off with frequency, plus white noise at about -40 dB, so that every band
/// has energy well above the log offset.
fn speechlike(samples: usize, seed: u32) -> Vec<i16> {
    let mut rng = Rng(seed);
    let mut phase = 0.0f64;
    (0..samples)
        .map(|n| {
            let t = n as f64 / 16000.0;
            let f0 = 120.0 + 100.0 * t;
            phase += 2.0 * std::f64::consts::PI * f0 / 16000.0;
            let mut x = 0.0;
            for h in 1..=30 {
                x += (h as f64 * phase).sin() / h as f64;
            }
            to_i16(0.15 * x + 0.01 * rng.uniform())
        })
        .collect()
}

fn ref_hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

fn ref_mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// Independent f64 filter bank, dense `[BANDS][BINS]`.
fn ref_filters() -> Vec<[f64; BINS]> {
    let (lo, hi) = (ref_hz_to_mel(20.0), ref_hz_to_mel(7600.0));
    let edges: Vec<f64> = (0..BANDS + 2)
        .map(|i| ref_mel_to_hz(lo + (hi - lo) * i as f64 / (BANDS as f64 + 1.0)))
        .collect();
    (0..BANDS)
        .map(|m| {
            let mut row = [0.0; BINS];
            for (k, w) in row.iter_mut().enumerate() {
                let f = k as f64 * 16000.0 / 512.0;
                let up = (f - edges[m]) / (edges[m + 1] - edges[m]);
                let down = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1]);
                *w = up.min(down).max(0.0);
            }
            row
        })
        .collect()
}

/// The whole front-end in f64 with a direct DFT.
fn ref_frame(pcm: &[i16], filters: &[[f64; BINS]]) -> [f64; BANDS] {
    let x: Vec<f64> = pcm
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / 480.0).cos();
            s as f64 / 32768.0 * w
        })
        .collect();
    let mut power = [0.0; BINS];
    for (k, p) in power.iter_mut().enumerate() {
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &v) in x.iter().enumerate() {
            let a = -2.0 * std::f64::consts::PI * ((k * n) % 512) as f64 / 512.0;
            re += v * a.cos();
            im += v * a.sin();
        }
        *p = re * re + im * im;
    }
    let mut out = [0.0; BANDS];
    for (m, o) in out.iter_mut().enumerate() {
        let e: f64 = filters[m]
            .iter()
            .zip(power.iter())
            .map(|(w, p)| w * p)
            .sum();
        *o = (e + 1e-6).ln();
    }
    out
}

fn clip_frames(pcm: &[i16]) -> Vec<[f32; BANDS]> {
    let mut out = vec![[0.0f32; BANDS]; frames_in(pcm.len())];
    let n = LogMel::new().clip(pcm, &mut out);
    assert_eq!(n, out.len());
    out
}

#[test]
fn frame_counts() {
    assert_eq!(FRAMES_PER_SECOND, 49);
    assert_eq!(frames_in(16000), 49);
    assert_eq!(frames_in(0), 0);
    assert_eq!(frames_in(479), 0);
    assert_eq!(frames_in(480), 1);
    assert_eq!(frames_in(799), 1);
    assert_eq!(frames_in(800), 2);
    // `clip` stops at the output's length.
    let mut out = [[0.0f32; BANDS]; 3];
    assert_eq!(LogMel::new().clip(&[0; 16000], &mut out), 3);
    assert_eq!(clip(&[0; 1000], &mut out), 2);
}

#[test]
fn silence_is_log_offset() {
    for frame in clip_frames(&[0; 16000]) {
        for v in frame {
            assert_eq!(v.to_bits(), libm::logf(LOG_OFFSET).to_bits());
        }
    }
    assert!((libm::logf(LOG_OFFSET) as f64 - (1e-6f64).ln()).abs() < 1e-6);
}

#[test]
fn filter_bank_shape() {
    let lm = LogMel::new();
    let reference = ref_filters();
    let mut cover = [0.0f64; BINS];
    let mut total = 0;
    for (m, ref_row) in reference.iter().enumerate() {
        let (start, w) = lm.band(m);
        assert!(w.len() >= 2, "band {m} has {} bins", w.len());
        assert!(w.iter().all(|&v| v > 0.0 && v <= 1.0));
        total += w.len();
        for (k, &r) in ref_row.iter().enumerate() {
            let got = if (start..start + w.len()).contains(&k) {
                w[k - start] as f64
            } else {
                0.0
            };
            assert!((got - r).abs() < 1e-6, "band {m} bin {k}: {got} vs {r}");
            cover[k] += got;
        }
        // Bands go up in frequency.
        if m > 0 {
            assert!(start >= lm.band(m - 1).0);
        }
    }
    assert!(total <= WEIGHTS_CAP);
    // Between the first and last peak the triangles sum to 1 (partition of unity).
    let edges = band_edges_hz();
    for (k, &c) in cover.iter().enumerate() {
        let f = bin_hz(k);
        if f >= edges[1] && f <= edges[BANDS] {
            assert!((c - 1.0).abs() < 1e-6, "bin {k} ({f} Hz) covered {c}");
        }
    }
    // The stated edges.
    assert!((edges[0] - 20.0).abs() < 1e-9 && (edges[BANDS + 1] - 7600.0).abs() < 1e-6);
}

#[test]
fn sine_energy_lands_in_its_band() {
    let edges = band_edges_hz();
    let lm = LogMel::new();
    for m in [1, 4, 10, 17, 25, 33, 38] {
        // Put the tone at the band's peak frequency; the neighbours' triangles are zero there.
        let f = edges[m + 1];
        let frames = clip_frames(&sine(f, 0.5, 16000));
        for frame in &frames {
            let best = (0..BANDS)
                .max_by(|&a, &b| frame[a].total_cmp(&frame[b]))
                .unwrap();
            assert_eq!(best, m, "{f:.1} Hz: loudest band {best}, expected {m}");
            // Two bands away is far below (leakage of the Hann main lobe reaches only the
            // adjacent bands).
            for other in [m.wrapping_sub(2), m + 2] {
                if other < BANDS {
                    assert!(
                        frame[m] - frame[other] > 4.0,
                        "{f:.1} Hz: band {other} too loud"
                    );
                }
            }
        }
        // Level: a sine of amplitude A on bin k has |X[k]| = A * sum(hann) / 2 = 120 A; the
        // band sees that through its triangle (about 1 at the peak) plus the Hann side bins.
        let k = (f / 31.25).round() as usize;
        let (start, w) = lm.band(m);
        let peak_weight = w[k - start] as f64;
        let expected_min = ((0.5 * 32767.0 / 32768.0 * 120.0f64).powi(2) * peak_weight * 0.4).ln();
        assert!(
            frames[10][m] as f64 > expected_min,
            "{f:.1} Hz level {}",
            frames[10][m]
        );
    }
}

#[test]
fn matches_f64_dft_reference() {
    let filters = ref_filters();
    let mut rng = Rng(0x1234_5678);
    let noise: Vec<i16> = (0..4000).map(|_| to_i16(0.3 * rng.uniform())).collect();
    let chirp: Vec<i16> = (0..4000)
        .map(|n| {
            let t = n as f64 / 16000.0;
            let f = 100.0 + 30000.0 * t; // 100 Hz to 7600 Hz over 0.25 s
            to_i16(0.7 * (std::f64::consts::PI * f * t).sin() + 0.001 * rng.uniform())
        })
        .collect();
    let (mut worst, mut worst_loud) = (0.0f64, 0.0f64);
    for signal in [speechlike(8000, 7), noise, chirp] {
        let frames = clip_frames(&signal);
        for (t, frame) in frames.iter().enumerate() {
            let reference = ref_frame(&signal[t * HOP..t * HOP + WINDOW], &filters);
            let loudest = reference.iter().cloned().fold(f64::MIN, f64::max);
            for m in 0..BANDS {
                let d = (frame[m] as f64 - reference[m]).abs();
                worst = worst.max(d);
                let tolerance = if reference[m] > loudest - 15.0 {
                    worst_loud = worst_loud.max(d);
                    REFERENCE_TOLERANCE_LOUD
                } else {
                    REFERENCE_TOLERANCE
                };
                assert!(
                    d < tolerance,
                    "frame {t} band {m}: {} vs {}",
                    frame[m],
                    reference[m]
                );
            }
        }
    }
    std::println!(
        "worst |kinglet - f64 reference| (ln units): {worst:.2e} overall, {worst_loud:.2e} within 65 dB of the loudest band"
    );
}

#[test]
fn streaming_matches_clip_bit_for_bit() {
    let signal = speechlike(23_456, 99);
    let expected = clip_frames(&signal);
    assert_eq!(expected.len(), 72);
    for seed in [1u32, 2, 3, 0xdead_beef] {
        let mut rng = Rng(seed);
        let max_chunk = [1, 7, 400, 2000][(seed % 4) as usize];
        let mut s = Streamer::new();
        let mut got: Vec<[f32; BANDS]> = Vec::new();
        let mut pos = 0;
        while pos < signal.len() {
            let n = (1 + rng.next() as usize % max_chunk).min(signal.len() - pos);
            s.push(&signal[pos..pos + n], |f| got.push(*f));
            pos += n;
        }
        assert_eq!(got.len(), expected.len(), "seed {seed}");
        for (t, (a, b)) in got.iter().zip(expected.iter()).enumerate() {
            for m in 0..BANDS {
                assert_eq!(
                    a[m].to_bits(),
                    b[m].to_bits(),
                    "seed {seed} frame {t} band {m}"
                );
            }
        }
    }
    // Single samples, and the bookkeeping around the first frame.
    let mut s = Streamer::new();
    let mut count = 0;
    for (i, &x) in signal[..WINDOW + HOP].iter().enumerate() {
        assert_eq!(
            s.samples_to_next_frame(),
            if i < WINDOW {
                WINDOW - i
            } else {
                WINDOW + HOP - i
            }
        );
        s.push(&[x], |_| count += 1);
    }
    assert_eq!(count, 2);
    s.reset();
    assert_eq!(s.samples_to_next_frame(), WINDOW);
}

/// FNV-1a over the output bits of a fixed signal. Pins the exact numbers: they must not change
/// between targets (see the module docs) or silently between versions. If a deliberate change
/// to the front-end moves them, every feature file and trained model must be regenerated.
#[test]
fn golden_output_hash() {
    let frames = clip_frames(&speechlike(16000, 42));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for frame in &frames {
        for v in frame {
            for b in v.to_bits().to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    assert_eq!(h, GOLDEN_HASH, "front-end output changed: {h:#018x}");
}

const GOLDEN_HASH: u64 = 0x836e_4072_52a5_681b;

#[test]
fn zeroed_then_init_equals_new_bit_for_bit() {
    let signal = speechlike(8_000, 7);
    let expected = clip_frames(&signal);
    // A streamer initialised in place, even after it has run (dirty FFT buffer and history).
    let mut s = Streamer::zeroed();
    s.init();
    s.push(&signal[..5_000], |_| {});
    s.init();
    let mut got: Vec<[f32; BANDS]> = Vec::new();
    s.push(&signal, |f| got.push(*f));
    assert_eq!(got.len(), expected.len());
    for (t, (a, b)) in got.iter().zip(expected.iter()).enumerate() {
        for m in 0..BANDS {
            assert_eq!(a[m].to_bits(), b[m].to_bits(), "frame {t} band {m}");
        }
    }
    // The tables themselves, too.
    let (mut a, b) = (LogMel::zeroed(), LogMel::new());
    a.init();
    for m in 0..BANDS {
        assert_eq!(a.band(m).0, b.band(m).0);
        let bits = |w: &[f32]| w.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(a.band(m).1), bits(b.band(m).1));
    }
}
