//! The app behind the `kinglet-pi-kws` binary, callable in process (tests run it on the same
//! audio as `kinglet kws --stream`).

use crate::{detection_line, no_detection_line, read_labels, ModelFile, Params, Spotter};
use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use kinglet::frontend::{HOP, SAMPLE_RATE};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "kinglet-pi-kws",
    version,
    about = "Streaming keyword spotting: 16 kHz mono audio, one model step per 20 ms hop.",
    after_help = "\
INPUT is a 16 kHz mono 16-bit WAV file, or `-` for raw 16 kHz mono signed 16-bit little-endian
PCM on stdin, e.g. from a USB microphone:

  arecord -q -t raw -f S16_LE -r 16000 -c 1 | kinglet-pi-kws models/kws_gru/model.kgl -

Detections go to stdout, one line each as they happen (the lines of `kinglet kws --stream`):
  INPUT<TAB>SECONDS s<TAB>KEYWORD<TAB>SMOOTHED-SCORE
or `INPUT<TAB>(no keyword above T)` at the end of an input without any. Latency per 20 ms hop
(front-end, model step, total) goes to stderr: per WAV file, and for stdin every
--stats-every seconds of audio and at the end."
)]
pub struct Args {
    /// Int8 keyword model (.kgl), streamable, 40 log-mel bands per frame.
    pub model: PathBuf,
    /// WAV files, or `-` for raw PCM on stdin.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// Class names in output order (default: labels.txt beside the model).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Posterior smoothing window in frames (moving average of softmax scores).
    #[arg(long, default_value_t = Params::default().smooth)]
    pub smooth: usize,
    /// Smoothed score above which a keyword is reported.
    #[arg(long, default_value_t = Params::default().threshold)]
    pub threshold: f32,
    /// Stdin: print a latency line every this many seconds of audio (0: only at the end).
    #[arg(long, default_value_t = 10)]
    pub stats_every: u64,
    /// Use the reference (scalar) kernels instead of SIMD, to compare latency.
    #[arg(long)]
    pub reference: bool,
}

/// Per-hop timings of one input, in microseconds.
#[derive(Default)]
struct Latency {
    front_end: Vec<f64>,
    model: Vec<f64>,
    total: Vec<f64>,
}

impl Latency {
    fn add(&mut self, total: Duration, model: Duration) {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        self.front_end.push(us(total.saturating_sub(model)));
        self.model.push(us(model));
        self.total.push(us(total));
    }

    /// `NAME<TAB>latency per hop over N hops: ...` or nothing before the first frame.
    fn line(&self, name: &str) -> Option<String> {
        if self.total.is_empty() {
            return None;
        }
        let median = |v: &[f64]| {
            let mut s = v.to_vec();
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        };
        let max = self.total.iter().copied().fold(0.0, f64::max);
        Some(format!(
            "{name}\tlatency per 20 ms hop over {} hops (median): front-end {:.0} µs, \
             model step {:.0} µs, total {:.0} µs (max {max:.0} µs)",
            self.total.len(),
            median(&self.front_end),
            median(&self.model),
            median(&self.total),
        ))
    }
}

/// Runs the app: detections to `out`, the model line and latency lines to `log`; `stdin` is
/// read for the input `-`.
pub fn run(
    args: &Args,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    log: &mut dyn Write,
) -> Result<()> {
    kinglet::kernels::matvec::force_reference(args.reference);
    let file = ModelFile::open(&args.model)?;
    let model = kinglet::Model::parse(&file)
        .map_err(|e| anyhow!("{}: invalid model file: {e}", args.model.display()))?;
    let classes = read_labels(&args.model, args.labels.as_deref())?;
    let params = Params {
        smooth: args.smooth,
        threshold: args.threshold,
    };
    writeln!(
        log,
        "{}: {} bytes ({}), arena {} bytes, {} classes, kernels {}",
        args.model.display(),
        file.len(),
        if file.is_mapped() { "mapped" } else { "read" },
        model.arena_bytes(),
        classes.len(),
        kinglet::kernels::matvec::active_isa().name()
    )?;
    // With room for the prepared operands (`Model::prepared_bytes`, 0 on aarch64): on x86-64
    // with AVX-512 a streaming step then no longer repacks the recurrent weights.
    let mut arena = vec![0u8; model.arena_bytes() + model.prepared_bytes()];
    for input in &args.inputs {
        // Fresh state for every input.
        let mut spotter = Spotter::new(&model, &mut arena, &classes, params)
            .with_context(|| args.model.display().to_string())?;
        let mut any = false;
        let mut latency = Latency::default();
        // One hop of audio through the spotter; a detection is written (and flushed) at once.
        let mut hop = |spotter: &mut Spotter<'_, '_>, pcm: &[i16], latency: &mut Latency| {
            let t0 = Instant::now();
            let mut frame = None;
            spotter.push(pcm, |f| frame = Some(f))?;
            let total = t0.elapsed();
            if let Some(f) = frame {
                latency.add(total, f.model_time);
                if let Some(d) = f.detection {
                    any = true;
                    writeln!(out, "{}", detection_line(input, &d, &classes))?;
                    out.flush()?;
                }
            }
            anyhow::Ok(())
        };
        if input == "-" {
            let every = args.stats_every * u64::from(SAMPLE_RATE) / HOP as u64;
            let mut hops = 0u64;
            while let Some(pcm) = read_hop(stdin)? {
                hop(&mut spotter, &pcm, &mut latency)
                    .with_context(|| format!("{input}: at {:.2} s", hops as f64 * 0.02))?;
                hops += 1;
                if every > 0 && hops % every == 0 {
                    if let Some(l) = latency.line(input) {
                        writeln!(log, "{l}")?;
                    }
                    latency = Latency::default();
                }
            }
        } else {
            let pcm = read_wav(Path::new(input))?;
            for chunk in pcm.chunks(HOP) {
                hop(&mut spotter, chunk, &mut latency).with_context(|| input.clone())?;
            }
        }
        if !any {
            writeln!(out, "{}", no_detection_line(input, args.threshold))?;
        }
        out.flush()?;
        if let Some(l) = latency.line(input) {
            writeln!(log, "{l}")?;
        }
    }
    Ok(())
}

/// The next 20 ms of raw s16le PCM (fewer samples at the end of the stream), or `None` at the
/// end. Short reads from a pipe are completed; an odd trailing byte is an error.
fn read_hop(r: &mut dyn Read) -> Result<Option<Vec<i16>>> {
    let mut buf = [0u8; HOP * 2];
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("cannot read PCM from stdin"),
        }
    }
    if got % 2 != 0 {
        bail!("stdin ended in the middle of a sample (raw PCM must be 16-bit, S16_LE)");
    }
    if got == 0 {
        return Ok(None);
    }
    Ok(Some(
        buf[..got]
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
    ))
}

/// A 16 kHz mono 16-bit integer WAV file's samples.
fn read_wav(path: &Path) -> Result<Vec<i16>> {
    let reader = hound::WavReader::open(path)
        .map_err(|e| anyhow!("{}: not a readable WAV file: {e}", path.display()))?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.sample_rate != SAMPLE_RATE
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        bail!(
            "{}: {} Hz, {} channel(s), {} bits {:?}; this app takes 16 kHz mono 16-bit PCM \
             (convert with `sox IN -r 16000 -c 1 -b 16 OUT.wav`, or use `kinglet kws`)",
            path.display(),
            spec.sample_rate,
            spec.channels,
            spec.bits_per_sample,
            spec.sample_format
        );
    }
    reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{}: corrupt WAV data: {e}", path.display()))
}
