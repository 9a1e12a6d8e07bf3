//! Shared by the integration tests: the committed fixture models.

use std::path::PathBuf;

/// `(fixture directory name, model.kgl bytes)` of every `models/fixtures/*/model.kgl`, sorted by
/// name.
pub fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry
            .expect("readable fixtures dir")
            .path()
            .join("model.kgl");
        if path.is_file() {
            let name = path
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .expect("utf-8 fixture name")
                .to_string();
            out.push((name, std::fs::read(&path).expect("readable model.kgl")));
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no fixtures under {}", dir.display());
    out
}
