//! Streaming keyword spotting on hosted Linux (a Raspberry Pi, or the build host), the library
//! of the `kinglet-pi-kws` app.
//!
//! - [`ModelFile`]: a model file memory-mapped read-only, parsed and read in place;
//! - [`Spotter`]: 16 kHz PCM through the runtime's front-end, one `Session::step` per 20 ms
//!   hop, then the [`Detector`];
//! - [`Detector`]: posterior smoothing and the detection rule.
//!
//! `kinglet kws --stream` (the host tool) uses the same [`Spotter`] and output lines, so the
//! app on a Pi reports exactly what the host tool reports for the same audio.

#![deny(missing_docs)]

pub mod app;
pub mod detect;
mod model_file;
mod spotter;

pub use detect::{detection_line, no_detection_line, Detection, Detector, Params};
pub use model_file::ModelFile;
pub use spotter::{Frame, Spotter};

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Class names, one per line (blank lines skipped), from `labels` or else `labels.txt` beside
/// the model.
pub fn read_labels(model: &Path, labels: Option<&Path>) -> Result<Vec<String>> {
    let path: PathBuf = match labels {
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
