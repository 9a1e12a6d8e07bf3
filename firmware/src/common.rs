//! App logic that runs twice: in `build.rs` on the host (to compute the results the device
//! must reproduce) and on the device (`kinglet_firmware::common`). Plain `core` `f32`
//! arithmetic in a fixed order, so both give the same bits; the one transcendental function,
//! `exp`, is passed in (the host passes `f32::exp`, as `kinglet kws` uses; the device passes
//! [`crate::exp_host`], `libm::expf` corrected to the host's values, see `build.rs`).

/// Keyword classes of `models/kws_gru` (its `labels.txt`).
pub const CLASSES: usize = 12;
/// Posterior smoothing window in frames: `kinglet kws --stream`'s default `--smooth 5`.
pub const SMOOTH: usize = 5;
/// Detection threshold on the smoothed posterior: `kinglet kws --stream`'s `--threshold 0.6`.
pub const THRESHOLD: f32 = 0.6;

/// Streaming keyword decision, step for step what `kinglet kws --stream` does
/// (`quantizer/src/kws.rs`): softmax of each frame's dequantized scores, moving average of the
/// last [`SMOOTH`] posteriors once `window` frames have been seen, and a detection when the best
/// class is a keyword (its label does not start with `_`), its smoothed score is at least
/// [`THRESHOLD`], and it is not the keyword reported last unless that report is at least
/// `window` frames old (the rule of `pi/kws/src/detect.rs`, which `kinglet kws --stream` uses).
#[derive(Clone, Debug)]
pub struct Posterior {
    /// The last `SMOOTH` posteriors, a ring; `history[(next + i) % SMOOTH]` is the i-th oldest.
    history: [[f32; CLASSES]; SMOOTH],
    next: usize,
    frames: usize,
    /// Class and frame of the last report.
    last_reported: Option<(usize, usize)>,
}

impl Default for Posterior {
    fn default() -> Self {
        Self::new()
    }
}

impl Posterior {
    /// No frames seen.
    pub const fn new() -> Self {
        Posterior {
            history: [[0.0; CLASSES]; SMOOTH],
            next: 0,
            frames: 0,
            last_reported: None,
        }
    }

    /// Frames seen since [`new`](Self::new).
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// One frame's dequantized model output. Returns `Some((class, smoothed score))` when a
    /// keyword is detected at this frame.
    pub fn push(
        &mut self,
        y: &[f32; CLASSES],
        window: usize,
        is_keyword: impl Fn(usize) -> bool,
        exp: impl Fn(f32) -> f32,
    ) -> Option<(usize, f32)> {
        // softmax: e = exp(x - max), then e / sum(e), summed in class order.
        let m = y.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut e = [0f32; CLASSES];
        for (e, &x) in e.iter_mut().zip(y) {
            *e = exp(x - m);
        }
        let s: f32 = e.iter().sum();
        let p = &mut self.history[self.next];
        for (p, e) in p.iter_mut().zip(e) {
            *p = e / s;
        }
        self.next = (self.next + 1) % SMOOTH;
        self.frames += 1;
        if self.frames < window {
            return None;
        }
        // Average of the last k posteriors, oldest first, each divided by k before adding.
        let k = SMOOTH.min(self.frames);
        let mut avg = [0f32; CLASSES];
        for i in SMOOTH - k..SMOOTH {
            let p = &self.history[(self.next + i) % SMOOTH];
            for (a, v) in avg.iter_mut().zip(p) {
                *a += v / k as f32;
            }
        }
        // The last of equal maxima, as `Iterator::max_by` picks.
        let best = (0..CLASSES)
            .max_by(|&a, &b| avg[a].total_cmp(&avg[b]))
            .unwrap_or(0);
        if !is_keyword(best) || avg[best] < THRESHOLD {
            return None;
        }
        if let Some((class, frame)) = self.last_reported {
            if class == best && self.frames - frame < window {
                return None;
            }
        }
        self.last_reported = Some((best, self.frames));
        Some((best, avg[best]))
    }
}

/// Forecast horizon of `models/forecast_gru`: 24 hourly values.
pub const HORIZON: usize = 24;
/// Input window of `models/forecast_gru`: 96 hourly values.
pub const LOOKBACK: usize = 96;

/// A TMP117 reading (1/128 °C) z-scored with the training mean and standard deviation.
pub fn zscore(raw: i16, mean: f32, std: f32) -> f32 {
    (raw as f32 / 128.0 - mean) / std
}

/// Running squared error of one forecast against the truth as it arrives, hour by hour.
#[derive(Clone, Copy, Debug, Default)]
pub struct SquaredError {
    sum: f32,
    n: usize,
}

impl SquaredError {
    /// Adds the truth `truth` for the next horizon step, forecast `forecast`.
    pub fn add(&mut self, forecast: f32, truth: f32) {
        let d = forecast - truth;
        self.sum += d * d;
        self.n += 1;
    }

    /// Steps added so far.
    pub fn count(&self) -> usize {
        self.n
    }

    /// Mean of the squared errors added (0 if none).
    pub fn mean(&self) -> f32 {
        if self.n == 0 {
            0.0
        } else {
            self.sum / self.n as f32
        }
    }
}
