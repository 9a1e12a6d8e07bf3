//! The `kinglet-pi-kws` binary: raw PCM through a real pipe gives the lines the WAV file gives,
//! and bad input is a one-line `error: ...` with a non-zero exit, never a panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn kws_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/kws_gru")
}

fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kinglet-pi-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn app(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinglet-pi-kws"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // Written from another thread, in uneven pieces, while the app reads.
    let writer = std::thread::spawn(move || {
        for piece in data.chunks(1000) {
            if pipe.write_all(piece).is_err() {
                break;
            }
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn assert_clean_failure(args: &[&str], stdin: &[u8], want: &str) {
    let out = app(args, stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    let last: Vec<_> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(last.len(), 1, "{args:?}: {err}");
    assert!(last[0].contains(want), "{args:?}: {err} (wanted {want})");
}

#[test]
fn stdin_pipe_gives_the_lines_of_the_wav_file() {
    let model = kws_dir().join("model.kgl");
    let model = model.to_str().unwrap();
    let mut pcm = Vec::new();
    let mut names = Vec::new();
    for class in ["yes", "no", "go"] {
        let dir = kws_dir().join("clips").join(class);
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut r = hound::WavReader::open(&files[0]).unwrap();
        pcm.extend(r.samples::<i16>().map(Result::unwrap));
        names.push(files[0].clone());
    }
    let raw: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    let d = scratch("pipe");
    let wav = d.join("three.wav");
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

    let from_file = app(&[model, wav.to_str().unwrap()], &[]);
    assert!(from_file.status.success());
    let from_pipe = app(&[model, "-"], &raw);
    assert!(
        from_pipe.status.success(),
        "{}",
        String::from_utf8_lossy(&from_pipe.stderr)
    );
    let file_lines = String::from_utf8(from_file.stdout).unwrap();
    let pipe_lines = String::from_utf8(from_pipe.stdout).unwrap();
    assert!(file_lines.contains("\tyes\t"), "{file_lines}");
    assert_eq!(pipe_lines, file_lines.replace(wav.to_str().unwrap(), "-"));
    // The model line and one latency line on stderr.
    let log = String::from_utf8(from_pipe.stderr).unwrap();
    assert!(log.contains("(mapped)"), "{log}");
    assert!(log.contains("over 149 hops"), "{log}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_input_is_one_line_of_error() {
    let d = scratch("errors");
    let model = kws_dir().join("model.kgl");
    let good = std::fs::read(&model).unwrap();
    let clip = kws_dir().join("clips/yes/0cb74144_nohash_0.wav");
    let clip = clip.to_str().unwrap();
    std::fs::copy(kws_dir().join("labels.txt"), d.join("labels.txt")).unwrap();

    let missing = d.join("missing.kgl");
    assert_clean_failure(&[missing.to_str().unwrap(), clip], &[], "missing.kgl");
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x10;
    let flipped_path = d.join("flipped.kgl");
    std::fs::write(&flipped_path, flipped).unwrap();
    assert_clean_failure(&[flipped_path.to_str().unwrap(), clip], &[], "checksum");
    let short = d.join("short.kgl");
    std::fs::write(&short, &good[..good.len() - 7]).unwrap();
    assert_clean_failure(&[short.to_str().unwrap(), clip], &[], "truncated");

    let model = model.to_str().unwrap();
    // A stereo WAV, a missing WAV, an odd number of bytes of raw PCM, too few labels.
    let stereo = d.join("stereo.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&stereo, spec).unwrap();
    for _ in 0..3200 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
    assert_clean_failure(
        &[model, stereo.to_str().unwrap()],
        &[],
        "16 kHz mono 16-bit",
    );
    assert_clean_failure(&[model, "nope.wav"], &[], "nope.wav");
    assert_clean_failure(&[model, "-"], &[0u8; 641], "middle of a sample");
    let labels = d.join("three.txt");
    std::fs::write(&labels, "yes\nno\nup\n").unwrap();
    assert_clean_failure(
        &[model, "--labels", labels.to_str().unwrap(), clip],
        &[],
        "12 outputs but 3 class names",
    );
    let _ = std::fs::remove_dir_all(&d);
}
