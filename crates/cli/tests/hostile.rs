//! The binary against a hostile user: sizes that would exhaust memory,
//! crafted files, contradictory flags, Ctrl-C. Each gets a one-line error
//! and the documented exit code (2 usage, 1 failure, 130 interrupted), never
//! a panic, an abort or a hang.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn deepgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deepgen"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("deepgen-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(args: &[&str]) -> Output {
    deepgen().args(args).output().unwrap()
}

/// Asserts exit `code` and a one-line stderr containing `needle`.
#[track_caller]
fn refused(out: Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
}

const SMALL: [&str; 6] = [
    "--synthetic-size",
    "120",
    "--epochs",
    "1",
    "--quiet",
    "--no-tensorboard",
];

fn train_vae(out: &Path, extra: &[&str]) -> Output {
    deepgen()
        .args(["train", "vae"])
        .args(SMALL)
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn sizes_from_flags_are_checked_before_memory_is_taken() {
    let out = tmp("sizes");
    for (flags, needle) in [
        (&["--hidden", "100000000000"][..], "memory budget"),
        (&["--latent", "100000000000"], "memory budget"),
        (
            &["--arch", "conv", "--widths", "100000000,2"],
            "too large to train",
        ),
    ] {
        refused(train_vae(&out, flags), 1, needle);
    }
    let huge_data = run(&[
        "train",
        "vae",
        "--synthetic-size",
        "100000000000",
        "--out",
        "/nonexistent/x",
    ]);
    refused(huge_data, 1, "synthetic digits needs");
    // A budget of one MiB refuses the default model up front...
    let small_budget = deepgen()
        .args(["--memory-budget", "0.001", "train", "vae"])
        .args(SMALL)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    refused(small_budget, 1, "more than the memory budget of 1.0 MiB");
    // ...and activations over it, counted as they are allocated, stop the
    // step with a message (the safety net under every tensor).
    let activations = deepgen()
        .args([
            "--memory-budget",
            "0.01",
            "train",
            "vae",
            "--synthetic-size",
            "3000",
        ])
        .args([
            "--hidden",
            "16",
            "--batch-size",
            "2500",
            "--epochs",
            "1",
            "--quiet",
        ])
        .arg("--out")
        .arg(tmp("activations"))
        .output()
        .unwrap();
    refused(activations, 1, "would take the tensors in memory to");
    for args in [
        &[
            "sample",
            "--checkpoint",
            "x.safetensors",
            "--n",
            "100000000",
        ][..],
        &[
            "sample",
            "--checkpoint",
            "x.safetensors",
            "--manifold",
            "100000",
        ],
        &[
            "interpolate",
            "--checkpoint",
            "x.safetensors",
            "--steps",
            "100000000",
        ],
        &["eval", "vae", "--checkpoint", "x.safetensors", "--k", "0"],
    ] {
        refused(run(args), 2, "");
    }
}

#[test]
fn contradictory_or_meaningless_flags_are_usage_errors() {
    let out = tmp("flags");
    for (flags, needle) in [
        (&["--lr", "1e39"][..], "f32"),
        (
            &["--train-range", "0..100", "--held-out", "90..120"],
            "overlap",
        ),
    ] {
        refused(train_vae(&out, flags), 2, needle);
    }
    for args in [
        &["train", "gan", "--lr-d", "1e39"][..],
        &["train", "gan", "--loss", "wgan-gp", "--gp-lambda", "nan"],
        &["train", "gan", "--r1-gamma", "-1"],
        &["train", "classifier", "--epochs", "0"],
    ] {
        refused(run(args), 2, "");
    }
    // No data: a message, not "concat: no tensors to join".
    refused(
        run(&[
            "train",
            "vae",
            "--synthetic-size",
            "0",
            "--out",
            "/nonexistent/x",
        ]),
        1,
        "make no batch",
    );
}

/// A trained model's checkpoint, made once per test that needs one.
fn trained(name: &str) -> PathBuf {
    let out = tmp(name);
    let made = train_vae(&out, &["--hidden", "32", "--latent", "4"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    out
}

/// The safetensors header (JSON) and body of `path`.
fn split(path: &Path) -> (String, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        String::from_utf8(bytes[8..8 + n].to_vec()).unwrap(),
        bytes[8 + n..].to_vec(),
    )
}

fn join(header: &str, body: &[u8]) -> Vec<u8> {
    let mut h = header.trim_end().to_string();
    while !h.len().is_multiple_of(8) {
        h.push(' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h.as_bytes());
    out.extend(body);
    out
}

#[test]
fn crafted_checkpoints_are_refused_without_taking_their_claimed_memory() {
    let run_dir = trained("crafted");
    let model = run_dir.join("model.safetensors");
    let (header, body) = split(&model);
    // Metadata that claims a hidden layer of three million units: the file
    // holds a few thousand values, so the model is refused before it is
    // built (it used to take 6.2 GB and 45 s to find the shape error).
    let crafted = run_dir.join("crafted.safetensors");
    let claimed = header.replace(r#"\"hidden\":32"#, r#"\"hidden\":3000000"#);
    assert_ne!(claimed, header, "the config is in the metadata");
    std::fs::write(&crafted, join(&claimed, &body)).unwrap();
    let started = std::time::Instant::now();
    refused(
        run(&[
            "sample",
            "--checkpoint",
            crafted.to_str().unwrap(),
            "--out",
            "/nonexistent/x.png",
        ]),
        1,
        "its metadata describes a model larger than the",
    );
    assert!(started.elapsed().as_secs() < 5, "refused quickly");
    // A tensor named twice.
    let first = "fc1.bias";
    let entry_start = header.find(&format!("\"{first}\":")).unwrap() + first.len() + 3;
    let entry_end = entry_start + header[entry_start..].find('}').unwrap() + 1;
    let twice = format!(
        "{},\"{first}\":{}}}",
        &header.trim_end()[..header.trim_end().len() - 1],
        &header[entry_start..entry_end]
    );
    std::fs::write(&crafted, join(&twice, &body)).unwrap();
    refused(
        run(&["sample", "--checkpoint", crafted.to_str().unwrap()]),
        1,
        "twice",
    );
    // Non-finite weights: sampling, evaluating and --init all refuse them.
    let mut nan_body = body.clone();
    nan_body[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&crafted, join(&header, &nan_body)).unwrap();
    let c = crafted.to_str().unwrap();
    refused(
        run(&["sample", "--checkpoint", c, "--out", "/nonexistent/x.png"]),
        1,
        "NaN",
    );
    refused(run(&["eval", "vae", "--checkpoint", c]), 1, "NaN");
    let init = train_vae(
        &tmp("init"),
        &["--hidden", "32", "--latent", "4", "--init", c],
    );
    refused(init, 1, "crafted.safetensors");
}

#[test]
fn a_gzip_bomb_posing_as_mnist_is_refused_after_its_header() {
    let dir = tmp("bomb");
    std::fs::create_dir_all(&dir).unwrap();
    let gzip = |bytes: &[u8]| {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    };
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28];
    images.resize(images.len() + (256 << 20), 0);
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gzip(&images)).unwrap();
    let mut labels = vec![0, 0, 8, 1, 0, 0, 0, 10];
    labels.extend([0u8; 10]);
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gzip(&labels)).unwrap();
    let out = deepgen()
        .args([
            "train",
            "vae",
            "--dataset",
            "mnist",
            "--test-split",
            "--data-dir",
        ])
        .arg(&dir)
        .args(["--out", "/nonexistent/run"])
        .output()
        .unwrap();
    refused(
        out,
        1,
        "inflates past the 7840 bytes its IDX header describes",
    );
}

#[test]
fn a_failed_resume_keeps_the_runs_config() {
    let out = trained("resume");
    let config = std::fs::read(out.join("config.json")).unwrap();
    for flags in [
        &["--seed", "5"][..],
        &["--lr", "0.01"],
        &["--batch-size", "64"],
    ] {
        let mut args = vec!["--hidden", "32", "--latent", "4", "--resume"];
        args.extend(flags);
        refused(train_vae(&out, &args), 1, "the settings differ");
        assert_eq!(std::fs::read(out.join("config.json")).unwrap(), config);
    }
}

#[test]
fn ctrl_c_stops_with_a_checkpoint_and_the_run_resumes() {
    let out = tmp("sigint");
    let training = |epochs: &str| {
        let mut c = deepgen();
        c.args([
            "train",
            "vae",
            "--synthetic-size",
            "3000",
            "--epochs",
            epochs,
        ])
        .args(["--quiet", "--no-tensorboard", "--hidden", "32", "--out"])
        .arg(&out);
        c
    };
    let mut child = training("200")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once the first epoch is written: it is training then.
    let started = std::time::Instant::now();
    while !out.join("metrics.csv").exists() {
        assert!(started.elapsed().as_secs() < 120, "no epoch in 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted") && stderr.contains("--resume"),
        "{stderr}"
    );
    assert!(!out.join(".lock").exists(), "the lock is released");
    let last = std::fs::read_to_string(out.join("checkpoints/last")).unwrap();
    assert!(last.starts_with("epoch-"), "{last}");
    // It continues from there (two more epochs, not 200).
    let done: usize = last[6..10].parse().unwrap();
    let epochs = (done + 2).to_string();
    let resumed = training(&epochs).arg("--resume").output().unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
}
