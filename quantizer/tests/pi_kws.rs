//! The Raspberry Pi keyword app (`kinglet-pi-kws`, run in process through its library) reports
//! exactly the lines of `kinglet kws --stream` (this crate's binary) on the committed clips,
//! one by one and concatenated into one 24 s stream, from WAV files and from raw PCM on stdin.

use kinglet_pi_kws::app::{run, Args};
use std::path::{Path, PathBuf};
use std::process::Command;

fn kws_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/kws_gru")
}

/// The committed clips, sorted.
fn clips() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for class in std::fs::read_dir(kws_dir().join("clips")).unwrap() {
        let class = class.unwrap().path();
        if class.is_dir() {
            for f in std::fs::read_dir(&class).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "wav") {
                    v.push(f);
                }
            }
        }
    }
    v.sort();
    assert!(v.len() >= 24, "{} clips", v.len());
    v
}

fn host_tool(files: &[PathBuf]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_kinglet"))
        .arg("kws")
        .arg("--stream")
        .arg(kws_dir().join("model.kgl"))
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn pi_app(inputs: &[String], stdin: &[u8]) -> (Vec<String>, String) {
    let model = kws_dir().join("model.kgl");
    let mut argv = vec!["kinglet-pi-kws".to_string(), model.display().to_string()];
    argv.extend(inputs.iter().cloned());
    let args = <Args as clap::Parser>::try_parse_from(argv).unwrap();
    let (mut out, mut log) = (Vec::new(), Vec::new());
    run(&args, &mut &stdin[..], &mut out, &mut log).unwrap();
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    (lines, String::from_utf8(log).unwrap())
}

#[test]
fn pi_app_reports_what_kinglet_kws_stream_reports() {
    let files = clips();
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let want = host_tool(&files);
    assert_eq!(want.len(), files.len());
    assert!(
        want.iter().filter(|l| l.contains(" s\t")).count() >= 12,
        "{want:?}"
    );
    let (got, log) = pi_app(&names, &[]);
    assert_eq!(got, want);
    // One latency line per clip, 49 hops each (the first hop gives no frame).
    assert_eq!(
        log.lines().filter(|l| l.contains("over 49 hops")).count(),
        files.len(),
        "{log}"
    );
}

#[test]
fn long_stream_from_wav_and_from_stdin() {
    // All clips back to back: 24 s of audio, one stream, state kept throughout.
    let mut pcm = Vec::new();
    for f in clips() {
        let mut r = hound::WavReader::open(&f).unwrap();
        pcm.extend(r.samples::<i16>().map(Result::unwrap));
    }
    let dir = std::env::temp_dir().join(format!("kinglet-pi-kws-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("all.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for &s in &pcm {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();

    let want = host_tool(std::slice::from_ref(&wav));
    // Several detections along the stream, not one per clip.
    assert!(want.len() >= 5, "{want:?}");
    let (got, _) = pi_app(&[wav.display().to_string()], &[]);
    assert_eq!(got, want);
    // The same audio as raw s16le on stdin: the same detections, named `-`.
    let raw: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    let (got, log) = pi_app(&["-".to_string()], &raw);
    let renamed: Vec<String> = want
        .iter()
        .map(|l| l.replacen(&wav.display().to_string(), "-", 1))
        .collect();
    assert_eq!(got, renamed);
    // Latency lines every 10 s of audio (500 hops) and at the end; 1200 hops give 1199 frames
    // (the first frame needs 480 samples).
    let hops: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split(" over ").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(hops, ["499", "500", "200"], "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
