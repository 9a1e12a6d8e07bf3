//! Posterior smoothing and the detection rule of streaming keyword spotting, shared by this
//! app and `kinglet kws --stream` so both report exactly the same detections.

use kinglet::frontend::{HOP, SAMPLE_RATE, WINDOW};
use std::collections::VecDeque;

/// Settings of the detector (the `--smooth` and `--threshold` options).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Moving average over this many frames' softmax scores (at least 1).
    pub smooth: usize,
    /// A keyword is reported when its smoothed score reaches this.
    pub threshold: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            smooth: 5,
            threshold: 0.6,
        }
    }
}

/// A reported keyword.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// Frames seen so far, this one included (1-based).
    pub frame: usize,
    /// Class index into the model output.
    pub class: usize,
    /// Smoothed softmax score.
    pub score: f32,
}

impl Detection {
    /// Seconds from the start of the audio to the end of this frame's window.
    pub fn seconds(&self) -> f32 {
        // Frame n (1-based) covers samples (n - 1) * HOP .. (n - 1) * HOP + WINDOW: it ends at
        // n * 0.02 + 0.01 s. Kept in this spelling so the printed times stay the same bytes.
        const _: () = assert!(HOP * 50 == SAMPLE_RATE as usize && WINDOW - HOP == 160);
        self.frame as f32 * 0.02 + 0.01
    }
}

/// The output line of a detection: `NAME<TAB>1.23 s<TAB>class<TAB>0.870`.
pub fn detection_line(name: &str, d: &Detection, classes: &[String]) -> String {
    let class = classes.get(d.class).map_or("?", String::as_str);
    format!("{name}\t{:.2} s\t{class}\t{:.3}", d.seconds(), d.score)
}

/// The output line of a stream without detections.
pub fn no_detection_line(name: &str, threshold: f32) -> String {
    format!("{name}\t(no keyword above {threshold:.2})")
}

/// Softmax of a logit vector.
pub fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// The detection state machine, fed one frame's logits at a time.
///
/// Each frame's logits become softmax scores; once `window` frames have been seen (the clip
/// length the model was trained on: the recurrent state needs that long to settle), the scores
/// of the last `smooth` frames are averaged and the best class is taken. A keyword (a class
/// whose name does not start with `_`, like `_silence_` and `_unknown_`) is reported when its
/// smoothed score reaches the threshold and it is not the keyword reported last, or when it is
/// but that report is at least `window` frames old (one clip length, 0.98 s for 49 frames: the
/// suppression time of TensorFlow's `RecognizeCommands`), so a keyword said again is reported
/// again but one utterance whose score hovers about the threshold is reported once. Memory is
/// bounded: only the last `smooth` score vectors are kept.
#[derive(Clone, Debug)]
pub struct Detector {
    params: Params,
    window: usize,
    is_keyword: Vec<bool>,
    recent: VecDeque<Vec<f32>>,
    frames: usize,
    /// Class and frame of the last report.
    last_reported: Option<(usize, usize)>,
}

impl Detector {
    /// A detector for the given class names, warming up for `window` frames.
    pub fn new(classes: &[String], window: usize, params: Params) -> Self {
        let smooth = params.smooth.max(1);
        Detector {
            params: Params { smooth, ..params },
            window,
            is_keyword: classes.iter().map(|c| !c.starts_with('_')).collect(),
            recent: VecDeque::with_capacity(smooth),
            frames: 0,
            last_reported: None,
        }
    }

    /// The settings in use (`smooth` at least 1).
    pub fn params(&self) -> Params {
        self.params
    }

    /// Frames seen since the start.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Takes one frame's logits (dequantized model output); returns a detection if this frame
    /// makes one.
    pub fn push(&mut self, logits: &[f32]) -> Option<Detection> {
        if self.recent.len() == self.params.smooth {
            self.recent.pop_front();
        }
        self.recent.push_back(softmax(logits));
        self.frames += 1;
        if self.frames < self.window {
            return None;
        }
        let k = self.recent.len();
        let mut avg = vec![0f32; logits.len()];
        for p in &self.recent {
            for (a, v) in avg.iter_mut().zip(p) {
                *a += v / k as f32;
            }
        }
        let best = (0..avg.len())
            .max_by(|&a, &b| avg[a].total_cmp(&avg[b]))
            .unwrap_or(0);
        let keyword = self.is_keyword.get(best).copied().unwrap_or(false);
        if !keyword || avg[best] < self.params.threshold {
            return None;
        }
        if let Some((class, frame)) = self.last_reported {
            if class == best && self.frames - frame < self.window {
                return None;
            }
        }
        self.last_reported = Some((best, self.frames));
        Some(Detection {
            frame: self.frames,
            class: best,
            score: avg[best],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<String> {
        ["yes", "no", "_silence_"].map(String::from).to_vec()
    }

    /// Logits of three classes: a sure `c` (softmax e^5 / (e^5 + 2) = 0.987), or all equal.
    fn logits(c: usize, strong: bool) -> [f32; 3] {
        let mut v = [0.0; 3];
        v[c] = if strong { 5.0 } else { 0.0 };
        v
    }

    #[test]
    fn warm_up_smoothing_suppression() {
        let p = Params {
            smooth: 2,
            threshold: 0.6,
        };
        let mut d = Detector::new(&classes(), 3, p);
        // Warm-up: nothing before frame 3, however sure the model is.
        assert_eq!(d.push(&logits(0, true)), None);
        assert_eq!(d.push(&logits(0, true)), None);
        let first = d.push(&logits(0, true)).unwrap();
        assert_eq!((first.frame, first.class), (3, 0));
        // softmax([5, 0, 0])[0] = e^5 / (e^5 + 2), averaged over two equal frames.
        let want = 5f32.exp() / (5f32.exp() + 2.0);
        assert!((first.score - want).abs() < 1e-6, "{}", first.score);
        // Still "yes" one frame after the report (window = 3): suppressed.
        assert_eq!(d.push(&logits(0, true)), None); // frame 4
        assert_eq!(d.push(&logits(2, true)), None); // 5: yes and silence averaged: below
        assert_eq!(d.push(&logits(0, true)), None); // 6: silence and yes: below
                                                    // "Yes" said again, four frames after the first report: reported again.
        let again = d.push(&logits(0, true)).unwrap(); // 7
        assert_eq!((again.frame, again.class), (7, 0));
        // Another keyword two frames after a report: not suppressed.
        assert_eq!(d.push(&logits(1, true)), None); // 8: yes and no averaged: neither above
        let no = d.push(&logits(1, true)).unwrap(); // 9
        assert_eq!((no.frame, no.class), (9, 1));
        assert_eq!(d.frames(), 9);
    }

    #[test]
    fn flat_scores_never_report() {
        let mut d = Detector::new(&classes(), 1, Params::default());
        for _ in 0..20 {
            assert_eq!(d.push(&logits(0, false)), None);
        }
    }

    #[test]
    fn lines_and_times() {
        let d = Detection {
            frame: 49,
            class: 1,
            score: 0.8704,
        };
        assert_eq!(
            detection_line("a.wav", &d, &classes()),
            "a.wav\t0.99 s\tno\t0.870"
        );
        assert_eq!(no_detection_line("-", 0.6), "-\t(no keyword above 0.60)");
    }
}
