//! The `deepgen` binary end to end: a short training run, evaluation of its
//! checkpoint, and errors for bad flags and inputs.

use std::process::Command;

fn deepgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deepgen"))
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("deepgen-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_short_classifier_run_trains_saves_and_evaluates() {
    let out = tmp("clf");
    let run = deepgen()
        .args([
            "train",
            "classifier",
            "--synthetic-size",
            "1200",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("epoch 2:") && stdout.contains("held-out accuracy"),
        "{stdout}"
    );
    let ckpt = out.join("classifier.safetensors");
    assert!(ckpt.exists());
    let eval = deepgen()
        .args([
            "eval",
            "classifier",
            "--synthetic-size",
            "1200",
            "--checkpoint",
        ])
        .arg(&ckpt)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(eval.status.success(), "{text}");
    let pct: f64 = text
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(
        pct > 60.0,
        "two short epochs on synthetic digits should learn: {text}"
    );
}

#[test]
fn bad_flags_get_clap_usage_errors_with_exit_code_2() {
    let run = deepgen()
        .args(["train", "classifier", "--epochs", "many"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("invalid value"));
    let run = deepgen()
        .args(["train", "classifier", "--train-range", "5..2"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
}

#[test]
fn user_errors_print_a_message_not_a_backtrace() {
    let run = deepgen()
        .args([
            "train",
            "classifier",
            "--dataset",
            "mnist",
            "--data-dir",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: ") && stderr.contains("/nonexistent"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let run = deepgen()
        .args([
            "eval",
            "classifier",
            "--checkpoint",
            "/nonexistent.safetensors",
        ])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
}
