//! Reads our event files back with TensorBoard's own Python reader
//! (`EventAccumulator`, plus the compat layers its UI applies), through
//! `tests/read_events.py`.
//!
//! Skipped (passes, printing `SKIPPED: ...`) when `python3 -c "import
//! tensorboard"` fails, unless `DEEPGEN_REQUIRE_TENSORBOARD=1`, which makes
//! that a failure. `PYTHON` picks the interpreter (default `python3`).

use deepgen_train::tensorboard::EventWriter;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const TAGS: [&str; 3] = ["loss/train", "loss/val", "lr"];
const STEPS: [u64; 5] = [0, 100, 200, 300, 400];

/// The scalar of tag number `t` at `step`: not exact in f32, so the test
/// sees the rounding.
fn scalar(t: usize, step: u64) -> f64 {
    (t + 1) as f64 / (step as f64 / 100.0 + 3.0) + 0.1 * step as f64
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Whether TensorBoard is importable; panics if it is not but is required.
fn tensorboard_available() -> bool {
    let py = python();
    let ok = Command::new(&py)
        .args(["-c", "import tensorboard"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let required = std::env::var("DEEPGEN_REQUIRE_TENSORBOARD").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "DEEPGEN_REQUIRE_TENSORBOARD=1 but `{py} -c \"import tensorboard\"` failed: pip install tensorboard"
        );
        println!("SKIPPED: python package tensorboard not installed (pip install tensorboard); CI installs it");
    }
    ok
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The main run: 3 scalar tags x 5 steps, 2 images, 1 histogram.
fn write_main_run(dir: &Path) {
    let mut w = EventWriter::create(dir).unwrap();
    for step in STEPS {
        for (t, tag) in TAGS.iter().enumerate() {
            w.add_scalar(tag, scalar(t, step), step).unwrap();
        }
    }
    for (i, step) in [100u64, 400].into_iter().enumerate() {
        let pixels: Vec<u8> = (0..4 * 3 * 3).map(|p| (p * 7 + i * 50) as u8).collect();
        w.add_image("samples", 4, 3, 3, &pixels, step).unwrap();
    }
    let values: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin() * 2.0).collect();
    w.add_histogram("weights", &values, 400).unwrap();
    w.flush().unwrap();
}

/// A run interrupted after step 5 and resumed from its step-3 checkpoint in
/// a second file: TensorBoard must show steps 0-2 of the first file and
/// 3-5 of the second.
fn write_resumed_run(dir: &Path) {
    let mut first = EventWriter::create(dir).unwrap();
    for step in 0..6 {
        first.add_scalar("loss", step as f64, step).unwrap();
    }
    drop(first);
    let mut second = EventWriter::create(dir).unwrap();
    second.restart_at(3).unwrap();
    for step in 3..6 {
        second
            .add_scalar("loss", 100.0 + step as f64, step)
            .unwrap();
    }
}

/// `[[step, value, f32 bits], ...]` as `(step, bits)`, checking value and bits agree.
fn scalar_points(points: &Value) -> Vec<(u64, u32)> {
    let points = points.as_array().expect("list of points");
    points
        .iter()
        .map(|p| {
            let (step, value, bits) = (
                p[0].as_u64().unwrap(),
                p[1].as_f64().unwrap(),
                p[2].as_u64().unwrap(),
            );
            assert_eq!((value as f32).to_bits() as u64, bits, "{p}");
            (step, bits as u32)
        })
        .collect()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[test]
fn tensorboard_reads_our_event_files() {
    if !tensorboard_available() {
        return;
    }
    let root =
        TempDir(std::env::temp_dir().join(format!("deepgen-tb-python-{}", std::process::id())));
    let (main, resumed) = (root.0.join("main"), root.0.join("resumed"));
    write_main_run(&main);
    write_resumed_run(&resumed);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_events.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(&main)
        .arg(&resumed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &json[main.to_str().unwrap()];

    assert_eq!(keys(&run["scalars"]), TAGS);
    for (t, tag) in TAGS.iter().enumerate() {
        let expected: Vec<(u64, u32)> = STEPS
            .iter()
            .map(|&s| (s, (scalar(t, s) as f32).to_bits()))
            .collect();
        assert_eq!(scalar_points(&run["scalars"][tag]), expected, "{tag}");
    }

    assert_eq!(keys(&run["images"]), ["samples"]);
    let images = &run["images"]["samples"];
    assert_eq!(images["count"], 2);
    assert_eq!(images["steps"], serde_json::json!([100, 400]));
    assert_eq!(images["sizes"], serde_json::json!([[4, 3], [4, 3]]));
    assert_eq!(images["png_sizes"], serde_json::json!([[4, 3], [4, 3]]));

    assert_eq!(keys(&run["histograms"]), ["weights"]);
    let h = &run["histograms"]["weights"];
    assert_eq!(
        (&h["count"], &h["steps"]),
        (&serde_json::json!(1), &serde_json::json!([400]))
    );
    assert_eq!(
        (&h["num"], &h["bucket_total"]),
        (&serde_json::json!([1000.0]), &serde_json::json!([1000.0]))
    );
    let values: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin() * 2.0).collect();
    let (min, max) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let bits = (h["min_bits"][0].as_u64(), h["max_bits"][0].as_u64());
    assert_eq!(
        bits,
        (Some(min.to_bits()), Some(max.to_bits())),
        "exact min and max"
    );

    // What TensorBoard's UI sees after its compat layers.
    let migrated = &run["migrated"];
    assert_eq!(
        (
            &migrated["scalars"],
            &migrated["images"],
            &migrated["histograms"]
        ),
        (&15.into(), &2.into(), &1.into())
    );
    assert_eq!(run["histogram_rows"], serde_json::json!([h["buckets"][0]]));

    // restart_at(3): the first file's steps 3..6 are discarded.
    let resumed_run = &json[resumed.to_str().unwrap()];
    let expected: Vec<(u64, u32)> = [
        (0, 0.0),
        (1, 1.0),
        (2, 2.0),
        (3, 103.0),
        (4, 104.0),
        (5, 105.0),
    ]
    .iter()
    .map(|&(s, v): &(u64, f32)| (s, v.to_bits()))
    .collect();
    assert_eq!(scalar_points(&resumed_run["scalars"]["loss"]), expected);
}
