//! `kinglet features`: WAV clips to log-mel feature arrays, through the runtime's own
//! front-end (`kinglet::frontend`), so training, calibration, validation and the device all see
//! the same numbers.

use anyhow::{anyhow, bail, Context, Result};
use kinglet::frontend::{LogMel, BANDS, FRAMES_PER_SECOND, SAMPLE_RATE};
use npyz::WriterBuilder;
use std::path::{Path, PathBuf};

/// Samples per clip: every clip is cut or padded to exactly 1 s.
const CLIP_SAMPLES: usize = SAMPLE_RATE as usize;

/// Compute keyword-spotting features (log-mel) from 16 kHz mono WAV files.
///
/// Each clip becomes 49 frames x 40 log-mel bands (30 ms Hann window, 20 ms hop, 512-point FFT,
/// HTK mel 20-7600 Hz, ln(energy + 1e-6)), computed by the same code the runtime runs on a
/// device (`kinglet::frontend`). Clips are made exactly 1 s long first: shorter ones are padded
/// with zeros at the end, longer ones are truncated to their first second.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Two forms:
  kinglet features DIR --classes yes,no,_silence_ -o x.npy --labels-out y.npy [--speakers-out s.txt]
      reads DIR/<class>/*.wav for each class in the order given (files sorted by name);
      label i is the i-th class.
  kinglet features a.wav b.wav ... -o x.npy
      the files in the order given.

Output: float32 .npy of shape [N, 49, 40]. WAVs must be 16 kHz mono; 8/16/24/32-bit integer
and 32-bit float samples are converted to 16-bit first (as a device's microphone driver would).
Speaker ids (--speakers-out) are the part of the file name before `_nohash_` without a `<word>_`
prefix (Speech Commands naming: `0a7c2a8d_nohash_3.wav`, `bed_0a7c2a8d_nohash_0.wav.wav`), or the
whole file stem when there is none: split data by speaker, never by file.")]
pub struct FeaturesArgs {
    /// One directory with a sub-folder per class (needs --classes), or one or more WAV files.
    #[arg(required = true, value_name = "DIR | FILE.wav...")]
    pub inputs: Vec<PathBuf>,
    /// Output features: float32 .npy `[N, 49, 40]`.
    #[arg(short, long, value_name = "X.npy")]
    pub output: PathBuf,
    /// Class names = sub-folders of DIR, in label order, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "a,b,c")]
    pub classes: Option<Vec<String>>,
    /// Write the labels (int64 .npy `[N]`, index into --classes); directory form only.
    #[arg(long, value_name = "Y.npy")]
    pub labels_out: Option<PathBuf>,
    /// Write one speaker id per line, in sample order.
    #[arg(long, value_name = "S.txt")]
    pub speakers_out: Option<PathBuf>,
    /// Write the source WAV path of each sample, one per line, in sample order.
    #[arg(long, value_name = "FILES.txt")]
    pub files_out: Option<PathBuf>,
}

/// One clip to process: its file and (directory form) its class index.
struct Item {
    path: PathBuf,
    label: Option<usize>,
}

/// Runs `kinglet features`.
pub fn features_cmd(args: FeaturesArgs) -> Result<()> {
    let items = collect_inputs(&args)?;

    let mut logmel = LogMel::new();
    let mut features: Vec<f32> = Vec::with_capacity(items.len() * FRAMES_PER_SECOND * BANDS);
    let mut frames = vec![[0.0f32; BANDS]; FRAMES_PER_SECOND];
    let mut clip = vec![0i16; CLIP_SAMPLES];
    let (mut padded, mut truncated) = (0usize, 0usize);
    for item in &items {
        let pcm = read_wav_16k_mono(&item.path)?;
        match pcm.len().cmp(&CLIP_SAMPLES) {
            std::cmp::Ordering::Less => padded += 1,
            std::cmp::Ordering::Greater => truncated += 1,
            std::cmp::Ordering::Equal => {}
        }
        let n = pcm.len().min(CLIP_SAMPLES);
        clip[..n].copy_from_slice(&pcm[..n]);
        clip[n..].fill(0);
        let got = logmel.clip(&clip, &mut frames);
        debug_assert_eq!(got, FRAMES_PER_SECOND);
        features.extend(frames.iter().flatten());
    }

    let shape = [items.len() as u64, FRAMES_PER_SECOND as u64, BANDS as u64];
    write_npy(&args.output, &shape, features.iter().copied())?;
    if let Some(path) = &args.labels_out {
        let labels: Vec<i64> = items.iter().map(|i| i.label.unwrap_or(0) as i64).collect();
        write_npy(path, &[labels.len() as u64], labels.iter().copied())?;
    }
    if let Some(path) = &args.speakers_out {
        let lines: Vec<String> = items.iter().map(|i| speaker_id(&i.path)).collect();
        write_lines(path, &lines)?;
    }
    if let Some(path) = &args.files_out {
        let lines: Vec<String> = items.iter().map(|i| i.path.display().to_string()).collect();
        write_lines(path, &lines)?;
    }

    eprintln!(
        "{} clips -> {} [{}, {FRAMES_PER_SECOND}, {BANDS}] ({padded} padded to 1 s, {truncated} truncated)",
        items.len(),
        args.output.display(),
        items.len()
    );
    if let Some(classes) = &args.classes {
        let counts: Vec<String> = classes
            .iter()
            .enumerate()
            .map(|(c, name)| {
                format!(
                    "{name} {}",
                    items.iter().filter(|i| i.label == Some(c)).count()
                )
            })
            .collect();
        eprintln!("per class: {}", counts.join(", "));
    }
    Ok(())
}

/// Resolves the command line into an ordered list of clips, checking the form's rules.
fn collect_inputs(args: &FeaturesArgs) -> Result<Vec<Item>> {
    let dir_form = args.inputs.len() == 1 && args.inputs[0].is_dir();
    if !dir_form {
        if let Some(dir) = args.inputs.iter().find(|p| p.is_dir()) {
            bail!(
                "{} is a directory: give either one directory (with --classes) or WAV files, not both",
                dir.display()
            );
        }
        if args.classes.is_some() || args.labels_out.is_some() {
            bail!("--classes and --labels-out need the directory form: kinglet features DIR --classes a,b,c ...");
        }
        for p in &args.inputs {
            if !p.exists() {
                bail!("{} does not exist", p.display());
            }
        }
        return Ok(args
            .inputs
            .iter()
            .map(|p| Item {
                path: p.clone(),
                label: None,
            })
            .collect());
    }

    let dir = &args.inputs[0];
    let classes = args.classes.as_ref().ok_or_else(|| {
        anyhow!(
            "{} is a directory: name its class sub-folders in label order with --classes, e.g. --classes yes,no,_silence_",
            dir.display()
        )
    })?;
    if classes.is_empty() || classes.iter().any(|c| c.is_empty()) {
        bail!("--classes must list non-empty class names separated by commas");
    }
    for (i, c) in classes.iter().enumerate() {
        if classes[..i].contains(c) {
            bail!("class {c:?} is listed twice in --classes");
        }
    }
    let mut items = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let folder = dir.join(class);
        if !folder.is_dir() {
            bail!(
                "class folder {} does not exist (each class in --classes must be a sub-folder of {})",
                folder.display(),
                dir.display()
            );
        }
        let mut wavs: Vec<PathBuf> = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot list {}", folder.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot list {}", folder.display()))?;
        wavs.retain(|p| {
            p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav"))
        });
        if wavs.is_empty() {
            bail!("class folder {} has no .wav files", folder.display());
        }
        wavs.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        items.extend(wavs.into_iter().map(|path| Item {
            path,
            label: Some(label),
        }));
    }
    Ok(items)
}

/// Reads a 16 kHz mono WAV as 16-bit samples, converting other integer widths and float.
pub fn read_wav_16k_mono(path: &Path) -> Result<Vec<i16>> {
    let reader = hound::WavReader::open(path)
        .map_err(|e| anyhow!("{}: not a readable WAV file: {e}", path.display()))?;
    let spec = reader.spec();
    if spec.channels != 1 {
        bail!(
            "{}: has {} channels; the front-end takes mono audio (mix down or pick a channel first)",
            path.display(),
            spec.channels
        );
    }
    if spec.sample_rate != SAMPLE_RATE {
        bail!(
            "{}: sample rate is {} Hz; the front-end takes {SAMPLE_RATE} Hz (resample first)",
            path.display(),
            spec.sample_rate
        );
    }
    let corrupt = |e: hound::Error| anyhow!("{}: corrupt WAV data: {e}", path.display());
    let samples: Vec<i16> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => reader
            .into_samples::<i16>()
            .collect::<Result<_, _>>()
            .map_err(corrupt)?,
        (hound::SampleFormat::Int, bits @ 1..=32) => reader
            .into_samples::<i32>()
            .map(|s| {
                s.map(|v| {
                    if bits > 16 {
                        (v >> (bits - 16)) as i16
                    } else {
                        (v << (16 - bits)) as i16
                    }
                })
            })
            .collect::<Result<_, _>>()
            .map_err(corrupt)?,
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .map(|s| s.map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16))
            .collect::<Result<_, _>>()
            .map_err(corrupt)?,
        (format, bits) => bail!(
            "{}: unsupported sample format {format:?} with {bits} bits",
            path.display()
        ),
    };
    Ok(samples)
}

/// The speaker id of a Speech Commands file name: the part before `_nohash_` without any
/// `<word>_` prefix (`yes/0a7c2a8d_nohash_3.wav` and the test set's
/// `_unknown_/bed_0a7c2a8d_nohash_0.wav.wav` are both speaker `0a7c2a8d`), or the file stem
/// when the name has no `_nohash_`.
pub fn speaker_id(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.find("_nohash_") {
        Some(i) => stem[..i].rsplit('_').next().unwrap_or_default().to_string(),
        None => stem,
    }
}

fn write_npy<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[u64],
    data: impl Iterator<Item = T>,
) -> Result<()> {
    let mut bytes = Vec::new();
    {
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut bytes)
            .begin_nd()?;
        w.extend(data)?;
        w.finish()?;
    }
    write_file(path, &bytes)
}

fn write_lines(path: &Path, lines: &[String]) -> Result<()> {
    let mut text = lines.join("\n");
    text.push('\n');
    write_file(path, text.as_bytes())
}

/// Writes through a temporary file and a rename, so a failure never leaves half a file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!("cannot write {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    /// A scratch directory removed when the test ends, passed or failed.
    struct TmpDir(PathBuf);

    impl std::ops::Deref for TmpDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TmpDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmpdir(name: &str) -> TmpDir {
        let d =
            std::env::temp_dir().join(format!("kinglet-features-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TmpDir(d)
    }

    fn args(inputs: Vec<PathBuf>, output: PathBuf) -> FeaturesArgs {
        FeaturesArgs {
            inputs,
            output,
            classes: None,
            labels_out: None,
            speakers_out: None,
            files_out: None,
        }
    }

    fn err(a: FeaturesArgs) -> String {
        format!("{:#}", features_cmd(a).unwrap_err())
    }

    #[test]
    fn speaker_ids() {
        assert_eq!(
            speaker_id(Path::new("_unknown_/bed_0a7c2a8d_nohash_0.wav.wav")),
            "0a7c2a8d"
        );
        assert_eq!(
            speaker_id(Path::new("a/yes/0a7c2a8d_nohash_3.wav")),
            "0a7c2a8d"
        );
        assert_eq!(speaker_id(Path::new("clip.wav")), "clip");
    }

    #[test]
    fn directory_form_labels_padding_and_errors() {
        let d = tmpdir("dir");
        std::fs::create_dir_all(d.join("a")).unwrap();
        std::fs::create_dir_all(d.join("b")).unwrap();
        let tone: Vec<i16> = (0..20000)
            .map(|n| ((n as f32 * 0.3).sin() * 8000.0) as i16)
            .collect();
        write_wav(&d.join("b/s2_nohash_0.wav"), 16000, 1, &tone[..8000]); // short: padded
        write_wav(&d.join("a/s1_nohash_1.wav"), 16000, 1, &tone); // long: truncated
        write_wav(&d.join("a/s0_nohash_0.wav"), 16000, 1, &tone[..16000]);
        let mut a = args(vec![d.to_path_buf()], d.join("x.npy"));
        a.classes = Some(vec!["a".into(), "b".into()]);
        a.labels_out = Some(d.join("y.npy"));
        a.speakers_out = Some(d.join("s.txt"));
        features_cmd(a.clone()).unwrap();

        let x = crate::npy::read_f32(&d.join("x.npy")).unwrap();
        assert_eq!(x.shape, vec![3, 49, 40]);
        let (yshape, y) = crate::npy::read_i64(&d.join("y.npy")).unwrap();
        assert_eq!((yshape, y), (vec![3], vec![0, 0, 1]));
        assert_eq!(
            std::fs::read_to_string(d.join("s.txt")).unwrap(),
            "s0\ns1\ns2\n"
        );
        // Sorted by name inside a class: s0 then s1; s0 is the first 16000 samples, s1 the same
        // samples truncated, so their features are identical.
        assert_eq!(x.sample(0), x.sample(1));
        // The padded clip's last frames are digital silence.
        let last = &x.sample(2)[48 * 40..];
        assert!(last.iter().all(|&v| v == libm_ln_offset()));
        // Same numbers as the runtime front-end directly.
        let mut frames = [[0.0f32; 40]; 49];
        LogMel::new().clip(&tone[..16000], &mut frames);
        assert_eq!(
            x.sample(0),
            frames.iter().flatten().copied().collect::<Vec<_>>()
        );

        // Errors.
        let mut missing = a.clone();
        missing.classes = Some(vec!["a".into(), "zzz".into()]);
        assert!(err(missing).contains("zzz does not exist"));
        std::fs::create_dir_all(d.join("empty")).unwrap();
        let mut empty = a.clone();
        empty.classes = Some(vec!["empty".into()]);
        assert!(err(empty).contains("has no .wav files"));
        let mut no_classes = a.clone();
        no_classes.classes = None;
        assert!(err(no_classes).contains("--classes"));
    }

    fn libm_ln_offset() -> f32 {
        let mut f = [[0.0f32; 40]; 1];
        LogMel::new().clip(&[0; 480], &mut f);
        f[0][0]
    }

    #[test]
    fn loose_files_and_bad_wavs() {
        let d = tmpdir("loose");
        write_wav(&d.join("ok.wav"), 16000, 1, &[100; 16000]);
        write_wav(&d.join("stereo.wav"), 16000, 2, &[0; 32000]);
        write_wav(&d.join("8k.wav"), 8000, 1, &[0; 8000]);
        std::fs::write(d.join("corrupt.wav"), b"RIFF\x10\x00\x00\x00WAVEjunkjunk").unwrap();
        let out = d.join("x.npy");
        features_cmd(args(vec![d.join("ok.wav"), d.join("ok.wav")], out.clone())).unwrap();
        assert_eq!(crate::npy::read_f32(&out).unwrap().shape, vec![2, 49, 40]);

        let e = err(args(vec![d.join("stereo.wav")], out.clone()));
        assert!(e.contains("stereo.wav") && e.contains("2 channels"), "{e}");
        let e = err(args(vec![d.join("8k.wav")], out.clone()));
        assert!(e.contains("8k.wav") && e.contains("8000 Hz"), "{e}");
        let e = err(args(vec![d.join("corrupt.wav")], out.clone()));
        assert!(e.contains("corrupt.wav") && e.contains("WAV"), "{e}");
        let e = err(args(vec![d.join("nope.wav")], out.clone()));
        assert!(
            e.contains("nope.wav") && e.contains("does not exist"),
            "{e}"
        );
        let mut with_labels = args(vec![d.join("ok.wav")], out);
        with_labels.labels_out = Some(d.join("y.npy"));
        assert!(err(with_labels).contains("directory form"));
    }
}
