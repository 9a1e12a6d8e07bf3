//! `kinglet kws`: keyword spotting on WAV files with an int8 model, through the runtime's own
//! audio front-end, either one whole clip per `run` or streaming one hop at a time via `step`.

use crate::features::read_wav_16k_mono;
use anyhow::{anyhow, bail, Context, Result};
use kinglet::frontend::LogMel;
use kinglet_pi_kws::detect::softmax;
use kinglet_pi_kws::{detection_line, no_detection_line, read_labels, Params, Spotter};
use std::path::PathBuf;

/// Arguments of `kinglet kws`.
#[derive(clap::Args, Debug)]
pub struct KwsArgs {
    /// Int8 keyword model (.kgl) taking `[1, 49, 40]` log-mel frames.
    pub model: PathBuf,
    /// 16 kHz mono WAV files (1 s clips; longer files work in --stream mode).
    #[arg(required = true)]
    pub clips: Vec<PathBuf>,
    /// Class names in output order (default: labels.txt beside the model).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Stream: feed the audio hop by hop (20 ms) through `Session::step` and report detections.
    #[arg(long)]
    pub stream: bool,
    /// Streaming: posterior smoothing window in frames (moving average of softmax scores).
    #[arg(long, default_value_t = 5)]
    pub smooth: usize,
    /// Streaming: smoothed score above which a keyword is reported.
    #[arg(long, default_value_t = 0.6)]
    pub threshold: f32,
}

/// One result per clip: `(best class, its softmax score)`.
pub fn classify_clip(bytes: &[u8], pcm: &[i16]) -> Result<(usize, f32)> {
    let model = kinglet::Model::parse(bytes).map_err(|e| anyhow!("invalid model file: {e}"))?;
    let input = model
        .input(0)
        .ok_or_else(|| anyhow!("the model has no input"))?;
    let output = model
        .output(0)
        .ok_or_else(|| anyhow!("the model has no output"))?;
    let frames = input.nbytes() / 40;
    if frames * 40 != input.nbytes() {
        bail!(
            "the model input has {} values, not a whole number of 40-band frames",
            input.nbytes()
        );
    }
    let mut clip = pcm.to_vec();
    clip.resize(16_000, 0);
    let mut mel = LogMel::new();
    let mut feats = vec![[0f32; 40]; frames];
    let n = mel.clip(&clip, &mut feats);
    if n < frames {
        bail!("the clip gives {n} frames; the model needs {frames}");
    }
    let flat: Vec<f32> = feats.iter().flatten().copied().collect();
    let mut xq = vec![0i8; input.nbytes()];
    input.quantize(&flat, &mut xq);
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut session = kinglet::Session::new(&model, &mut arena).map_err(|e| anyhow!("{e}"))?;
    let mut yq = vec![0i8; output.nbytes()];
    session.run(&xq, &mut yq).map_err(|e| anyhow!("{e}"))?;
    let mut y = vec![0f32; yq.len()];
    output.dequantize(&yq, &mut y);
    let p = softmax(&y);
    let best = (0..p.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap_or(0);
    Ok((best, p[best]))
}

/// Runs `kinglet kws`.
pub fn kws_cmd(args: KwsArgs) -> Result<()> {
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    let classes = read_labels(&args.model, args.labels.as_deref())?;
    let model = kinglet::Model::parse(&bytes)
        .map_err(|e| anyhow!("{}: invalid model file: {e}", args.model.display()))?;
    let n_out = model.output(0).map_or(0, |t| t.nbytes());
    if n_out != classes.len() {
        bail!(
            "the model has {n_out} outputs but {} class names were given",
            classes.len()
        );
    }
    for clip in &args.clips {
        let pcm = read_wav_16k_mono(clip)?;
        if !args.stream {
            let (best, score) = classify_clip(&bytes, &pcm)?;
            println!("{}\t{}\t{score:.3}", clip.display(), classes[best]);
            continue;
        }
        if !model.is_streamable() {
            bail!(
                "{} cannot stream (its ops need the whole sequence)",
                args.model.display()
            );
        }
        // The detection rule and the output lines are `kinglet_pi_kws`'s (the Raspberry Pi
        // app), so both report the same detections for the same audio: the recurrent state is
        // kept across hops, and the smoothed posterior of every frame is judged once the first
        // window (the 49 frames the model was trained on) has filled.
        let mut arena = vec![0u8; model.arena_bytes()];
        let params = Params {
            smooth: args.smooth,
            threshold: args.threshold,
        };
        let mut spotter = Spotter::new(&model, &mut arena, &classes, params)
            .with_context(|| args.model.display().to_string())?;
        let mut detections = Vec::new();
        spotter
            .push(&pcm, |f| detections.extend(f.detection))
            .with_context(|| clip.display().to_string())?;
        let name = clip.display().to_string();
        if detections.is_empty() {
            println!("{}", no_detection_line(&name, args.threshold));
        }
        for d in &detections {
            println!("{}", detection_line(&name, d, &classes));
        }
    }
    Ok(())
}
