//! Golden outputs: every committed model file (fixtures and example models), run on a deterministic input (the recipe in
//! `kinglet::golden`), must hash to the value in `tests/golden.txt` — with the best SIMD level
//! of this CPU and with the reference loop forced. The same file is checked on aarch64 (under
//! QEMU, `scripts/cross-test.sh`) and by the Cortex-M firmware, which proves the targets
//! compute identical bytes.
//!
//! After a deliberate change of the integer semantics or of a fixture, regenerate with
//! `KINGLET_BLESS=1 cargo test -p kinglet --test golden` and review the diff.
//!
//! One test function only: `force_reference` is process-wide.

mod common;

use kinglet::golden::hash_model;
use kinglet::kernels::{best_isa, force_reference};
use kinglet::Model;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The input seed of every golden line.
const SEED: u64 = 1;

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden.txt")
}

/// Every committed model file: the recurrent fixtures (`models/fixtures/<name>`, named
/// `<name>`), the Transformer / ViT fixtures (`fixtures_tf/<name>`) and the example models
/// (`models/<name>/model.kgl`, named `<name>`).
fn committed_models() -> Vec<(String, Vec<u8>)> {
    let mut out = common::fixtures();
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut add = |dir: PathBuf, prefix: &str| {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("readable models dir").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if prefix.is_empty() && (name == "fixtures" || name.starts_with("fixtures_")) {
                continue;
            }
            let kgl = path.join("model.kgl");
            if kgl.is_file() {
                let bytes = std::fs::read(&kgl).expect("readable model.kgl");
                out.push((format!("{prefix}{name}"), bytes));
            }
        }
    };
    add(models.join("fixtures_tf"), "fixtures_tf/");
    add(models, "");
    out.sort();
    out
}

/// `name → (seed, hash)` from the golden file.
fn read_golden(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = match f[..] {
            [name, seed, hash] => seed
                .parse::<u64>()
                .ok()
                .zip(u64::from_str_radix(hash, 16).ok())
                .map(|sh| (name.to_string(), sh)),
            _ => None,
        };
        let (name, sh) = parsed.unwrap_or_else(|| panic!("golden.txt:{}: bad line", n + 1));
        map.insert(name, sh);
    }
    map
}

fn hash(name: &str, bytes: &[u8], seed: u64) -> u64 {
    let model = Model::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let mut arena = vec![0u8; model.arena_bytes()];
    hash_model(&model, &mut arena, seed).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

#[test]
fn fixtures_match_golden_hashes() {
    let isa = best_isa();
    let fixtures = committed_models();
    if std::env::var_os("KINGLET_BLESS").is_some() {
        let mut text = String::from(
            "# Golden outputs of the committed fixtures (runtime/tests/golden.rs).\n\
             # Recipe: kinglet::golden (SplitMix64 input bytes from <seed>, Session::invoke,\n\
             # FNV-1a 64 of all outputs). Regenerate: KINGLET_BLESS=1 cargo test -p kinglet --test golden\n\
             # <fixture> <seed> <fnv1a64>\n",
        );
        for (name, bytes) in &fixtures {
            force_reference(true);
            let h = hash(name, bytes, SEED);
            force_reference(false);
            writeln!(text, "{name} {SEED} {h:016x}").unwrap();
        }
        std::fs::write(golden_path(), text).expect("write golden.txt");
        eprintln!("wrote {}", golden_path().display());
    }
    let text = std::fs::read_to_string(golden_path()).expect("tests/golden.txt");
    let golden = read_golden(&text);
    let mut problems = Vec::new();
    for (name, bytes) in &fixtures {
        let Some(&(seed, want)) = golden.get(name) else {
            problems.push(format!("{name}: not in golden.txt (bless it)"));
            continue;
        };
        force_reference(false);
        let simd = hash(name, bytes, seed);
        force_reference(true);
        let reference = hash(name, bytes, seed);
        force_reference(false);
        if simd != want || reference != want {
            problems.push(format!(
                "{name}: golden {want:016x}, {} {simd:016x}, reference {reference:016x}",
                isa.name()
            ));
        }
    }
    for name in golden.keys() {
        if !fixtures.iter().any(|(n, _)| n == name) {
            problems.push(format!("{name}: in golden.txt but no such fixture"));
        }
    }
    assert!(
        problems.is_empty(),
        "golden mismatches:\n{}\n(after a deliberate fixture regeneration or change of the integer \
         semantics: KINGLET_BLESS=1 cargo test -p kinglet --test golden, and commit golden.txt)",
        problems.join("\n")
    );
    eprintln!(
        "{} fixtures match golden.txt ({} and reference)",
        fixtures.len(),
        isa.name()
    );
}
