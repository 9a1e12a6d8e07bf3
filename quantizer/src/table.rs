//! The accuracy table of the example models: for every `models/<name>/` with `model.onnx`,
//! `model.kgl` and `test.npy`, validate the int8 file (Kinglet) against the float ONNX (tract) and
//! summarise size, arena, parameters and MACs in one Markdown table.

use crate::{npy, validate, write_atomic};
use anyhow::{anyhow, bail, Context, Result};
use kinglet::format::{OP_ATTENTION, OP_FC, OP_GRU, OP_LAYERNORM, OP_LSTM, OP_RNN};
use kinglet::TensorKind;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Start marker of the generated region in `models/README.md`.
pub const TABLE_BEGIN: &str = "<!-- table:begin -->";
/// End marker of the generated region in `models/README.md`.
pub const TABLE_END: &str = "<!-- table:end -->";

/// Folders under `models/` never listed: test fixtures (`fixtures`, `fixtures_*`), not example
/// models.
fn skipped(name: &str) -> bool {
    name == "fixtures" || name.starts_with("fixtures_")
}

/// Published figures shown beside the models trained on the same data set:
/// `(data set key, model, task, metric cell)`.
const REFERENCES: &[(&str, &str, &str, &str)] = &[
    (
        "etth1",
        "LSTMa (Informer paper, Table 1)",
        "ETTh1 OT, univariate, horizon 24",
        "MSE 0.114, MAE 0.272",
    ),
    (
        "etth1",
        "Informer (Informer paper, Table 1)",
        "ETTh1 OT, univariate, horizon 24",
        "MSE 0.098, MAE 0.247",
    ),
];

/// Parameters and multiply-accumulates of one model file, from its ops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Elements of the constant weight and bias tensors of FC / LSTM / GRU / RNN / LayerNorm
    /// ops (activation tables and requantization pairs are not parameters).
    pub params: u64,
    /// Multiply-accumulates per inference (whole sequence) of FC, LSTM, GRU, RNN and
    /// attention ops; elementwise ops are not counted.
    pub macs: u64,
}

fn param(op: &kinglet::OpInfo<'_>, i: usize) -> Result<u64> {
    let v = op
        .param(i)
        .ok_or_else(|| anyhow!("op {} ({}) has no parameter {i}", op.index(), op.name()))?;
    u64::try_from(v).map_err(|_| anyhow!("op {} ({}): parameter {i} is {v}", op.index(), op.name()))
}

/// Counts the parameters and MACs of a parsed model file.
///
/// MACs: FC `steps × rows_per_step × k × n`; LSTM `T × 4H × (I + H)`; GRU `T × 3H × (I + H)`;
/// RNN `T × H × (I + H)`; attention `steps × 2 × tq × tk × heads × dh` (Q·Kᵀ and P·V, without
/// the causal saving). Parameters: the elements of the weight and bias tensors of those ops
/// (LSTM/GRU/RNN: `w`, `r`, `bias_x`, `bias_h`; FC: `w`, `bias`; LayerNorm: γ, β), which for a
/// PyTorch model is its `parameters()` count (the ONNX `B` of an RNN op is `b_ih ‖ b_hh`).
pub fn counts(m: &kinglet::Model<'_>) -> Result<Counts> {
    let mut c = Counts::default();
    for i in 0..m.n_ops() {
        let op = m
            .op(i)
            .ok_or_else(|| anyhow!("op {i} missing from the op table"))?;
        let (macs, weight_slots): (u64, &[usize]) = match op.opcode() {
            OP_FC => (
                param(&op, 0)? * param(&op, 1)? * param(&op, 2)? * param(&op, 3)?,
                &[1, 2],
            ),
            OP_LSTM | OP_GRU | OP_RNN => {
                let (t, inp, h) = (param(&op, 0)?, param(&op, 1)?, param(&op, 2)?);
                let gates = match op.opcode() {
                    OP_LSTM => 4,
                    OP_GRU => 3,
                    _ => 1,
                };
                (t * gates * h * (inp + h), &[1, 2, 3, 4])
            }
            OP_ATTENTION => {
                let p = |k| param(&op, k);
                (p(0)? * 2 * p(1)? * p(2)? * p(3)? * p(4)?, &[])
            }
            OP_LAYERNORM => (0, &[1, 2]),
            _ => (0, &[]),
        };
        c.macs += macs;
        for &slot in weight_slots {
            let t = op
                .tensor(slot)
                .and_then(|t| m.tensor(t))
                .ok_or_else(|| anyhow!("op {i} ({}): tensor slot {slot} missing", op.name()))?;
            if t.kind() == TensorKind::Const {
                // LayerNorm stores γ as [d, 2] requantization pairs: one parameter per row.
                let n = if op.opcode() == OP_LAYERNORM && slot == 1 {
                    t.len() / 2
                } else {
                    t.len()
                };
                c.params += n as u64;
            }
        }
    }
    Ok(c)
}

/// One model row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Folder name under `models/`.
    pub name: String,
    /// Task description.
    pub task: String,
    /// Data set key (`meta.json` `dataset`), used to place reference rows.
    pub dataset: Option<String>,
    /// Float metric (tract).
    pub float: String,
    /// Int8 metric (Kinglet).
    pub int8: String,
    /// Change from float to int8.
    pub drop: String,
    /// Model file bytes.
    pub model_bytes: usize,
    /// Arena bytes (`Model::arena_bytes`, with the 15 bytes of alignment slack).
    pub arena_bytes: usize,
    /// Parameter and MAC counts.
    pub counts: Counts,
}

fn read_meta(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("meta.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Validates one model folder and returns its row.
pub fn model_row(dir: &Path) -> Result<Row> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let onnx = dir.join("model.onnx");
    let kgl_path = dir.join("model.kgl");
    let kgl =
        std::fs::read(&kgl_path).with_context(|| format!("cannot read {}", kgl_path.display()))?;
    let model = kinglet::Model::parse(&kgl)
        .map_err(|e| anyhow!("{}: invalid model file: {e}", kgl_path.display()))?;
    let counts = counts(&model).with_context(|| format!("counting {}", kgl_path.display()))?;
    let data = npy::read_f32(&dir.join("test.npy"))?;
    let labels_path = dir.join("labels.npy");
    let labels = if labels_path.exists() {
        Some(npy::read_i64(&labels_path)?)
    } else {
        None
    };
    let targets_path = dir.join("targets.npy");
    let targets = if targets_path.exists() {
        Some(npy::read_f32(&targets_path)?)
    } else {
        None
    };
    let r = validate::validate(
        &onnx,
        &kgl,
        &data,
        labels.as_ref().map(|l| l.1.as_slice()),
        targets.as_ref(),
        None,
    )
    .with_context(|| format!("validating {}", dir.display()))?;

    let meta = read_meta(dir);
    let meta_str = |k: &str| {
        meta.as_ref()
            .and_then(|m| m.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let n = r.samples;
    let (task, float, int8, drop) =
        match (r.accuracy_float, r.accuracy_int8, r.mse_float, r.mse_int8) {
            (Some(f), Some(q), _, _) => {
                let classes = model
                    .output(0)
                    .map(|o| o.dims()[o.rank().max(1) - 1])
                    .unwrap_or(0);
                let per_step = labels.as_ref().is_some_and(|l| l.1.len() > n);
                let kind = if per_step {
                    "per-step classification"
                } else {
                    "classification"
                };
                (
                    format!("{kind}, {classes} classes"),
                    format!("top-1 {:.2} %", f * 100.0),
                    format!("top-1 {:.2} %", q * 100.0),
                    format!("{:+.2} pp", (q - f) * 100.0),
                )
            }
            (_, _, Some(f), Some(q)) => {
                let (fa, qa) = (
                    r.mae_float.unwrap_or(f64::NAN),
                    r.mae_int8.unwrap_or(f64::NAN),
                );
                (
                    "regression".to_owned(),
                    format!("MSE {f:.4}, MAE {fa:.4}"),
                    format!("MSE {q:.4}, MAE {qa:.4}"),
                    format!("MSE {:+.2} %", (q / f - 1.0) * 100.0),
                )
            }
            _ => (
                "no labels or targets".to_owned(),
                "–".to_owned(),
                format!("SQNR {:.1} dB", r.sqnr_db),
                "–".to_owned(),
            ),
        };
    let task = match meta_str("description") {
        Some(d) => d,
        None => task,
    };
    Ok(Row {
        name,
        task: format!("{task} ({n} test samples)"),
        dataset: meta_str("dataset"),
        float,
        int8,
        drop,
        model_bytes: r.model_bytes,
        arena_bytes: model.arena_bytes(),
        counts,
    })
}

/// The model folders of `models_dir` that the table lists, sorted by name.
pub fn model_dirs(models_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let entries = std::fs::read_dir(models_dir)
        .with_context(|| format!("cannot list {}", models_dir.display()))?;
    for e in entries {
        let p = e?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if !p.is_dir() || name.as_deref().is_some_and(skipped) {
            continue;
        }
        if ["model.onnx", "model.kgl", "test.npy"]
            .iter()
            .all(|f| p.join(f).is_file())
        {
            dirs.push(p);
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Builds the Markdown table (with a short legend under it) from already validated rows.
pub fn render(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str(
        "| model | task | float (tract) | int8 (Kinglet) | drop | model bytes | arena bytes | parameters | MACs / inference |\n\
         |---|---|---|---|---|---:|---:|---:|---:|\n",
    );
    let mut refs_done: Vec<&str> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.task,
            r.float,
            r.int8,
            r.drop,
            thousands(r.model_bytes as u64),
            thousands(r.arena_bytes as u64),
            thousands(r.counts.params),
            thousands(r.counts.macs)
        );
        // Published figures go right after the last model row of their data set.
        if let Some(ds) = r.dataset.as_deref() {
            let last_of_ds = rows[i + 1..]
                .iter()
                .all(|o| o.dataset.as_deref() != Some(ds));
            if last_of_ds && !refs_done.contains(&ds) {
                refs_done.push(ds);
                for (_, model, task, metric) in REFERENCES.iter().filter(|r| r.0 == ds) {
                    let _ = writeln!(
                        s,
                        "| *{model}* | {task} (published) | {metric} | – | – | – | – | – | – |"
                    );
                }
            }
        }
    }
    s.push_str(
        "\nfloat: the ONNX model run by tract; int8: the `.kgl` file run by Kinglet's reference \
         kernels on the host, same test inputs. drop: int8 − float in percentage points \
         (accuracy) or the relative change of the MSE (regression). Arena bytes include the 15 \
         bytes of alignment slack. Parameters: elements of the constant weight and bias tensors \
         of the FC / LSTM / GRU / RNN / LayerNorm ops in the `.kgl` file. MACs: FC rows×k×n, LSTM \
         T×4H×(I+H), GRU T×3H×(I+H), RNN T×H×(I+H), attention 2×tq×tk×heads×dh; elementwise ops \
         are not counted. Published rows are the paper's figures, on a slightly different \
         window set (see the model's README).\n",
    );
    s
}

/// Validates every model folder under `models_dir` (skipping `fixtures` and `fixtures_*`) and returns the
/// Markdown table.
pub fn models_table(models_dir: &Path) -> Result<String> {
    let dirs = model_dirs(models_dir)?;
    if dirs.is_empty() {
        bail!(
            "no folder under {} has model.onnx, model.kgl and test.npy",
            models_dir.display()
        );
    }
    let rows = dirs
        .iter()
        .map(|d| model_row(d))
        .collect::<Result<Vec<_>>>()?;
    Ok(render(&rows))
}

const README_HEAD: &str = "# Example models\n\
\n\
Each folder holds a float ONNX model (`model.onnx`), its int8 Kinglet file (`model.kgl`, from \
`kinglet quantize`), calibration and test data, and a README with the recipe and the data \
attribution. The test fixtures (`models/fixtures/`, `models/fixtures_*/`) are not listed here.\n\
\n\
The table below is generated by `kinglet table` (`kinglet_quantizer::table`), which validates \
every model on its test set; do not edit it by hand.\n\
\n";

const README_TAIL: &str = "\n\
## Data\n\
\n\
- ETTh1 (`forecast_*`): Zhou, H. et al. (2021). Informer. AAAI. (github zhouhaoyi/ETDataset) — \
ETDataset, CC BY-ND 4.0. Only windows derived from the CSV are committed, never the CSV.\n\
- Speech Commands (`kws_*`): Warden, P. (2018). Speech Commands: A Dataset for \
Limited-Vocabulary Speech Recognition. arXiv:1804.03209 — CC BY 4.0.\n";

/// Replaces the region between [`TABLE_BEGIN`] and [`TABLE_END`] in `models_dir/README.md` with a
/// fresh [`models_table`] (creating the README, with an intro and the data attributions, if it
/// does not exist). Returns the README's path.
pub fn write_models_readme(models_dir: &Path) -> Result<PathBuf> {
    let path = models_dir.join("README.md");
    let table = models_table(models_dir)?;
    let region = format!("{TABLE_BEGIN}\n{table}{TABLE_END}");
    let text = if path.exists() {
        let old = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let (Some(b), Some(e)) = (old.find(TABLE_BEGIN), old.find(TABLE_END)) else {
            bail!(
                "{} has no {TABLE_BEGIN} … {TABLE_END} region",
                path.display()
            );
        };
        if e < b {
            bail!("{}: {TABLE_END} comes before {TABLE_BEGIN}", path.display());
        }
        format!("{}{region}{}", &old[..b], &old[e + TABLE_END.len()..])
    } else {
        format!("{README_HEAD}{region}\n{README_TAIL}")
    };
    write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn fixture_counts() {
        // gru_legacy_o17: GRU(8->16) -> Linear(16->4), T = 20.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/gru_legacy_o17");
        let calib = npy::read_f32(&dir.join("calib.npy")).unwrap();
        let q = crate::quantize_model(&dir.join("model.onnx"), &calib, None).unwrap();
        let m = kinglet::Model::parse(&q.bytes).unwrap();
        let c = counts(&m).unwrap();
        assert_eq!(c.params, (3 * 16 * 8 + 3 * 16 * 16 + 6 * 16) + (16 * 4 + 4));
        assert_eq!(c.macs, 20 * 3 * 16 * (8 + 16) + 16 * 4);
    }
}
