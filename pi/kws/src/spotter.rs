//! [`Spotter`]: 16 kHz PCM in, one model step per 20 ms hop, detections out.

use crate::detect::{Detection, Detector, Params};
use anyhow::{anyhow, bail, Result};
use kinglet::frontend::{Streamer, BANDS};
use kinglet::{Model, Session, TensorInfo};
use std::time::{Duration, Instant};

/// What one frame (one hop of audio) produced.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    /// A keyword reported at this frame.
    pub detection: Option<Detection>,
    /// Time spent on the model for this frame: quantize the features, `Session::step`,
    /// dequantize, smoothing and detection (the front-end is not included).
    pub model_time: Duration,
}

/// Streaming keyword spotter: the runtime's front-end, `Session::step` once per frame, and the
/// [`Detector`]. The recurrent state and the audio history carry over from one
/// [`push`](Self::push) to the next, so audio can arrive in chunks of any size.
pub struct Spotter<'m, 'a> {
    session: Session<'m, 'a>,
    input: TensorInfo<'m>,
    output: TensorInfo<'m>,
    streamer: Streamer,
    detector: Detector,
    features: Vec<i8>,
    scores: Vec<i8>,
    logits: Vec<f32>,
}

impl<'m, 'a> Spotter<'m, 'a> {
    /// A spotter for a streamable keyword model taking [`BANDS`] log-mel values per frame and
    /// giving one score per class, in `arena` (at least `model.arena_bytes()` long).
    pub fn new(
        model: &'m Model<'m>,
        arena: &'a mut [u8],
        classes: &[String],
        params: Params,
    ) -> Result<Self> {
        if !model.is_streamable() {
            bail!("the model cannot stream (its ops need the whole sequence)");
        }
        let (Some(input), Some(output)) = (model.input(0), model.output(0)) else {
            bail!("the model has no input or no output");
        };
        let t = model.seq_len();
        if input.step_bytes(t) != BANDS {
            bail!(
                "the model takes {} values per time step; the front-end gives {BANDS} log-mel bands",
                input.step_bytes(t)
            );
        }
        let n_out = output.step_bytes(t);
        if n_out != classes.len() {
            bail!(
                "the model has {n_out} outputs but {} class names were given",
                classes.len()
            );
        }
        let session = Session::new(model, arena).map_err(|e| anyhow!("{e}"))?;
        Ok(Spotter {
            session,
            input,
            output,
            streamer: Streamer::new(),
            detector: Detector::new(classes, t, params),
            features: vec![0; BANDS],
            scores: vec![0; n_out],
            logits: vec![0.0; n_out],
        })
    }

    /// Frames processed since the start.
    pub fn frames(&self) -> usize {
        self.detector.frames()
    }

    /// Feeds audio; calls `on_frame` for every frame it completes (one per 320 samples after
    /// the first 480).
    pub fn push(&mut self, pcm: &[i16], mut on_frame: impl FnMut(Frame)) -> Result<()> {
        let mut err = None;
        let (session, detector) = (&mut self.session, &mut self.detector);
        let (features, scores, logits) = (&mut self.features, &mut self.scores, &mut self.logits);
        let (input, output) = (self.input, self.output);
        self.streamer.push(pcm, |f| {
            if err.is_some() {
                return;
            }
            let t0 = Instant::now();
            input.quantize(f, features);
            if let Err(e) = session.step(features, scores) {
                err = Some(e);
                return;
            }
            output.dequantize(scores, logits);
            let detection = detector.push(logits);
            on_frame(Frame {
                detection,
                model_time: t0.elapsed(),
            });
        });
        match err {
            Some(e) => Err(anyhow!("{e}")),
            None => Ok(()),
        }
    }
}
