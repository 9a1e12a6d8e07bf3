//! The same WAV gives bit-identical features through `kinglet features` (the CLI, whole clips)
//! and through the runtime's streaming front-end (`kinglet::frontend::Streamer`) fed in
//! chunks of every size, as a device's microphone driver would deliver them.

use kinglet::frontend::{Streamer, BANDS, FRAMES_PER_SECOND, SAMPLE_RATE};
use std::path::{Path, PathBuf};
use std::process::Command;

fn clips() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/kws_gru/clips");
    let mut v = Vec::new();
    for class in std::fs::read_dir(&root).unwrap() {
        let class = class.unwrap().path();
        if !class.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&class).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "wav") {
                v.push(f);
            }
        }
    }
    v.sort();
    assert!(
        v.len() >= 20,
        "expected the committed clips, found {}",
        v.len()
    );
    v
}

/// Reads a 16 kHz mono 16-bit WAV with hound directly (not through the CLI's reader).
fn pcm(path: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (SAMPLE_RATE, 1, 16)
    );
    r.samples::<i16>().map(|s| s.unwrap()).collect()
}

#[test]
fn cli_features_equal_streaming_front_end_bit_for_bit() {
    let clips = clips();
    let out = std::env::temp_dir().join(format!(
        "kinglet-features-stream-{}.npy",
        std::process::id()
    ));
    let status = Command::new(env!("CARGO_BIN_EXE_kinglet"))
        .arg("features")
        .args(&clips)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let cli = kinglet_quantizer::npy::read_f32(&out).unwrap();
    std::fs::remove_file(&out).ok();
    assert_eq!(cli.shape, vec![clips.len(), FRAMES_PER_SECOND, BANDS]);

    // Chunk sizes from a fixed LCG: 1 .. 700 samples, so frames complete mid-chunk, at chunk
    // edges and across several chunks.
    let mut seed = 0x2545_f491_u32;
    let mut next_chunk = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        1 + (seed >> 8) as usize % 700
    };
    let mut streamer = Streamer::new();
    for (i, path) in clips.iter().enumerate() {
        let mut x = pcm(path);
        x.resize(SAMPLE_RATE as usize, 0); // the CLI pads or cuts to 1 s
        streamer.reset();
        let mut frames: Vec<f32> = Vec::new();
        let mut rest = x.as_slice();
        while !rest.is_empty() {
            let n = next_chunk().min(rest.len());
            streamer.push(&rest[..n], |f| frames.extend_from_slice(f));
            rest = &rest[n..];
        }
        assert_eq!(
            frames.len(),
            FRAMES_PER_SECOND * BANDS,
            "{}",
            path.display()
        );
        let want = cli.sample(i);
        let differ = frames
            .iter()
            .zip(want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{}: {differ} values differ", path.display());
    }
}
