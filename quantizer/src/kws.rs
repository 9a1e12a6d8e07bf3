//! `kinglet kws`: keyword spotting on WAV files with an int8 model, through the runtime's own
//! audio front-end, either one whole clip per `run` or streaming one hop at a time via `step`.

use crate::features::read_wav_16k_mono;
use anyhow::{anyhow, bail, Context, Result};
use kinglet::frontend::{LogMel, Streamer};
use std::path::{Path, PathBuf};

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

fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

fn read_labels(model: &Path, labels: Option<&Path>) -> Result<Vec<String>> {
    let path = match labels {
        Some(p) => p.to_path_buf(),
        None => model.with_file_name("labels.txt"),
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the class names from {} (pass --labels FILE with one class per line)",
            path.display()
        )
    })?;
    let v: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if v.is_empty() {
        bail!("{} lists no classes", path.display());
    }
    Ok(v)
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
        let input = model.input(0).ok_or_else(|| anyhow!("no input"))?;
        let output = model.output(0).ok_or_else(|| anyhow!("no output"))?;
        let mut arena = vec![0u8; model.arena_bytes()];
        let mut session = kinglet::Session::new(&model, &mut arena).map_err(|e| anyhow!("{e}"))?;
        // The model was trained on 49-frame windows; streaming keeps the recurrent state
        // across hops and reports the smoothed posterior of every frame after the first
        // window has filled.
        let window = model.seq_len();
        let mut streamer = Streamer::new();
        let mut history: Vec<Vec<f32>> = Vec::new();
        let mut frame_no = 0usize;
        let mut detections = Vec::new();
        let mut last_reported: Option<usize> = None;
        let mut err = None;
        streamer.push(&pcm, |f| {
            if err.is_some() {
                return;
            }
            let mut fq = vec![0i8; 40];
            input.quantize(f, &mut fq);
            let mut yq = vec![0i8; output.nbytes()];
            if let Err(e) = session.step(&fq, &mut yq) {
                err = Some(e);
                return;
            }
            let mut y = vec![0f32; yq.len()];
            output.dequantize(&yq, &mut y);
            history.push(softmax(&y));
            frame_no += 1;
            if frame_no < window {
                return;
            }
            let k = args.smooth.max(1).min(history.len());
            let recent = &history[history.len() - k..];
            let mut avg = vec![0f32; y.len()];
            for p in recent {
                for (a, v) in avg.iter_mut().zip(p) {
                    *a += v / k as f32;
                }
            }
            let best = (0..avg.len())
                .max_by(|&a, &b| avg[a].total_cmp(&avg[b]))
                .unwrap_or(0);
            let is_keyword = !classes[best].starts_with('_');
            if is_keyword && avg[best] >= args.threshold && last_reported != Some(best) {
                detections.push((frame_no, best, avg[best]));
                last_reported = Some(best);
            }
        });
        if let Some(e) = err {
            bail!("{}: {e}", clip.display());
        }
        if detections.is_empty() {
            println!(
                "{}\t(no keyword above {:.2})",
                clip.display(),
                args.threshold
            );
        }
        for (f, c, s) in detections {
            println!(
                "{}\t{:.2} s\t{}\t{s:.3}",
                clip.display(),
                f as f32 * 0.02 + 0.01,
                classes[c]
            );
        }
    }
    Ok(())
}
