//! Checks exported models with the real ONNX tools: `onnx.checker` (full
//! check) and ONNX Runtime, both through Python (`check_onnx.py`, written
//! beside the models), against deepgen's own outputs for the same inputs.
//! The tests of this crate and of the CLI use it; so can yours.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Map, Value as Json};

use crate::{Error, Result};

/// The checker script, run by [`run`].
const SCRIPT: &str = include_str!("check_onnx.py");

/// Named tensors: (name, shape, values; `true` for int64 data).
pub type Tensors<'a> = [(&'a str, Vec<usize>, Vec<f64>, bool)];

/// Writes one case into `dir`: `name.onnx` and `name.json` with the inputs
/// and deepgen's outputs for them.
pub fn write_case(
    dir: &Path,
    name: &str,
    model: &[u8],
    inputs: &Tensors,
    outputs: &Tensors,
) -> Result<()> {
    let tensors = |ts: &Tensors| -> Json {
        let map: Map<String, Json> = ts
            .iter()
            .map(|(n, shape, data, int)| {
                (
                    n.to_string(),
                    json!({"shape": shape, "data": data, "int": int}),
                )
            })
            .collect();
        Json::Object(map)
    };
    let case = json!({"inputs": tensors(inputs), "outputs": tensors(outputs)});
    let io = |path: std::path::PathBuf| move |source| Error::Io { path, source };
    let onnx = dir.join(format!("{name}.onnx"));
    std::fs::write(&onnx, model).map_err(io(onnx.clone()))?;
    let json_path = dir.join(format!("{name}.json"));
    std::fs::write(&json_path, case.to_string()).map_err(io(json_path.clone()))
}

/// The Python interpreter: `PYTHON`, or `python3`.
fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Whether `onnx` and `onnxruntime` import. When they do not, prints
/// `SKIPPED: ...`, unless `DEEPGEN_REQUIRE_ONNXRUNTIME=1` (CI), which
/// makes that a panic.
pub fn available() -> bool {
    let py = python();
    let ok = Command::new(&py)
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let required = std::env::var("DEEPGEN_REQUIRE_ONNXRUNTIME").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "DEEPGEN_REQUIRE_ONNXRUNTIME=1 but `{py} -c \"import onnx, onnxruntime\"` failed: \
             pip install onnx onnxruntime"
        );
        println!(
            "SKIPPED: python packages onnx and onnxruntime not installed \
             (pip install onnx onnxruntime); CI installs them"
        );
    }
    ok
}

/// One checked case: the largest deviations from deepgen's outputs and
/// ONNX Runtime's time per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub case: String,
    pub max_abs: f64,
    pub max_rel: f64,
    pub ort_us_per_sample: f64,
    pub ok: bool,
}

/// Runs the checker on every case in `dir`: Err with its output when a
/// check fails or an output deviates (more than 1e-5 relative and 1e-6
/// absolute); otherwise each case's figures.
pub fn run(dir: &Path) -> std::result::Result<Vec<Checked>, String> {
    let script = dir.join("check_onnx.py");
    std::fs::write(&script, SCRIPT).map_err(|e| format!("{}: {e}", script.display()))?;
    let out = Command::new(python())
        .arg(&script)
        .arg(dir)
        .output()
        .map_err(|e| format!("{}: {e}", python()))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    }
    text.lines()
        .map(|line| {
            let v: Json = serde_json::from_str(line).map_err(|e| format!("{line}: {e}"))?;
            let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            Ok(Checked {
                case: v["case"].as_str().unwrap_or_default().to_string(),
                max_abs: num("max_abs"),
                max_rel: num("max_rel"),
                ort_us_per_sample: num("ort_us_per_sample"),
                ok: v["ok"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}
