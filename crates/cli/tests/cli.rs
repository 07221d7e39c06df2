//! The `deepgen` binary end to end: a short training run, evaluation of its
//! checkpoint, and errors for bad flags and inputs.

use std::process::Command;

fn deepgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deepgen"))
}

/// Runs `deepgen ARGS --out OUT`, asserts it succeeded, returns its stdout.
fn run_ok(args: &[&str], out: &std::path::Path) -> String {
    let run = deepgen().args(args).arg("--out").arg(out).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("deepgen-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_short_classifier_run_trains_saves_and_evaluates() {
    let out = tmp("clf");
    let stdout = run_ok(
        &[
            "train",
            "classifier",
            "--synthetic-size",
            "1200",
            "--epochs",
            "2",
            "--batch-size",
            "64",
        ],
        &out,
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

    // The classifier judges samples: real held-out digits written as IDX
    // against the same reference score near the floor and cover the classes.
    let samples = out.join("real.safetensors");
    let real = {
        let data = deepgen_data::synthetic::digits(1200, 0).unwrap();
        let mut x = vec![0.0f32; 200 * 784];
        deepgen_data::Dataset::gather(
            &data,
            &(1000..1200).collect::<Vec<_>>(),
            deepgen_data::Scale::MinusOneOne,
            &mut x,
        )
        .unwrap();
        deepgen_autograd::Tensor::from_vec(x, &[200, 1, 28, 28]).unwrap()
    };
    deepgen_nn::checkpoint::save_tensors(
        &samples,
        &[(
            "images".to_string(),
            deepgen_nn::checkpoint::TensorData::F32(real),
        )],
        None,
    )
    .unwrap();
    let judge = deepgen()
        .args(["eval", "gan", "--synthetic-size", "1200", "--classifier"])
        .arg(&ckpt)
        .arg("--samples")
        .arg(&samples)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&judge.stdout);
    assert!(
        judge.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&judge.stderr)
    );
    let number_after = |key: &str| -> f64 {
        let rest = &text[text.find(key).unwrap() + key.len()..];
        rest.split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches([')', ','])
            .parse()
            .unwrap()
    };
    let (fd, floor) = (number_after("features)"), number_after("training images:"));
    // The samples are the reference images themselves (scaled to [-1, 1]).
    assert!(fd < 1e-3 * floor && floor > 0.0, "{text}");
    assert!(number_after("entropy") > 1.5, "{text}");
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

#[test]
fn a_short_vae_run_writes_images_metrics_and_a_checkpoint_that_evaluates() {
    let out = tmp("vae");
    let stdout = run_ok(
        &[
            "train",
            "vae",
            "--synthetic-size",
            "600",
            "--epochs",
            "2",
            "--hidden",
            "64",
            "--latent",
            "4",
        ],
        &out,
    );
    assert!(
        stdout.contains("epoch 2:") && stdout.contains("held-out"),
        "{stdout}"
    );
    for f in ["samples.png", "reconstructions.png", "loss.png"] {
        let bytes = std::fs::read(out.join(f)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{f}");
    }
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(
        config.contains("\"latent\": 4") && config.contains("\"batch-size\": 128"),
        "{config}"
    );
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 2);
    let eval = deepgen()
        .args([
            "eval",
            "vae",
            "--synthetic-size",
            "600",
            "--k",
            "10",
            "--checkpoint",
        ])
        .arg(out.join("model.safetensors"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(
        eval.status.success() && text.contains("IWAE bound (k = 10)"),
        "{text}"
    );
    // A checkpoint of another shape is refused, naming the tensor.
    let bad = deepgen()
        .args([
            "train",
            "vae",
            "--synthetic-size",
            "600",
            "--hidden",
            "65",
            "--latent",
            "4",
            "--init",
        ])
        .arg(out.join("model.safetensors"))
        .arg("--out")
        .arg(out.join("bad"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr.contains("fc1.weight") && stderr.contains("[64, 784]"),
        "{stderr}"
    );
}

#[test]
fn sample_reconstruct_and_interpolate_write_their_outputs() {
    let out = tmp("gen");
    run_ok(
        &[
            "train",
            "vae",
            "--synthetic-size",
            "300",
            "--epochs",
            "1",
            "--hidden",
            "32",
            "--latent",
            "2",
        ],
        &out,
    );
    let ckpt = out.join("model.safetensors");
    let ok = |args: &[&str]| {
        let r = deepgen()
            .args(args)
            .arg("--checkpoint")
            .arg(&ckpt)
            .output()
            .unwrap();
        assert!(
            r.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    };
    let idx = out.join("s.idx");
    ok(&["sample", "--n", "5", "--out", idx.to_str().unwrap()]);
    let bytes = std::fs::read(&idx).unwrap();
    assert_eq!(&bytes[..8], &[0, 0, 8, 3, 0, 0, 0, 5]);
    assert_eq!(bytes.len(), 16 + 5 * 784);
    let grid = out.join("manifold.png");
    ok(&["sample", "--manifold", "6", "--out", grid.to_str().unwrap()]);
    assert_eq!(&std::fs::read(&grid).unwrap()[1..4], b"PNG");
    let st = out.join("s.safetensors");
    ok(&["sample", "--n", "3", "--out", st.to_str().unwrap()]);
    let (tensors, _) = deepgen_nn::checkpoint::load_tensors(&st).unwrap();
    assert_eq!(tensors[0].1.shape(), vec![3, 1, 28, 28]);
    for (cmd, file) in [("reconstruct", "r.png"), ("interpolate", "i.png")] {
        let p = out.join(file);
        ok(&[cmd, "--synthetic-size", "300", "--out", p.to_str().unwrap()]);
        assert_eq!(&std::fs::read(&p).unwrap()[1..4], b"PNG");
    }
}

#[test]
fn encode_writes_latents_as_safetensors_csv_and_a_scatter_plot() {
    let out = tmp("enc");
    run_ok(
        &[
            "train",
            "vae",
            "--synthetic-size",
            "300",
            "--epochs",
            "1",
            "--hidden",
            "32",
            "--latent",
            "3",
        ],
        &out,
    );
    let enc = out.join("enc");
    let r = deepgen()
        .args(["encode", "--synthetic-size", "300", "--checkpoint"])
        .arg(out.join("model.safetensors"))
        .arg("--out")
        .arg(&enc)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (tensors, _) =
        deepgen_nn::checkpoint::load_tensors(&enc.join("latents.safetensors")).unwrap();
    let shapes: Vec<(String, Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape()))
        .collect();
    assert!(shapes.contains(&("mu".into(), vec![250, 3])), "{shapes:?}");
    let csv = std::fs::read_to_string(enc.join("latents.csv")).unwrap();
    assert_eq!(csv.lines().count(), 251);
    assert!(csv.starts_with("index,label,mu_0,mu_1,mu_2,logvar_0"));
    assert_eq!(
        &std::fs::read(enc.join("latents.png")).unwrap()[1..4],
        b"PNG"
    );
}

#[test]
fn a_conv_vae_with_a_gaussian_decoder_trains_and_samples() {
    let out = tmp("conv");
    run_ok(
        &[
            "train",
            "vae",
            "--arch",
            "conv",
            "--likelihood",
            "gaussian-learned",
            "--widths",
            "8,16",
            "--hidden",
            "32",
            "--latent",
            "4",
            "--synthetic-size",
            "300",
            "--epochs",
            "1",
        ],
        &out,
    );
    let png = out.join("s.png");
    let r = deepgen()
        .args(["sample", "--n", "4", "--checkpoint"])
        .arg(out.join("model.safetensors"))
        .arg("--out")
        .arg(&png)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    for args in [
        ["train", "vae", "--arch", "resnet"],
        ["train", "vae", "--likelihood", "poisson"],
        ["train", "gan", "--loss", "wgan-xx"],
        ["train", "gan", "--betas", "0.5"],
        ["eval", "gan-2d", "--dataset", "ring9"],
    ] {
        let bad = deepgen().args(args).output().unwrap();
        assert_eq!(bad.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(stderr.contains("invalid value"), "{args:?}: {stderr}");
    }
}

#[test]
fn init_starts_from_a_vae_trained_in_pytorch() {
    // crates/vae/tests/fixtures/make_pytorch_vae.py made the file with
    // safetensors.torch.save_file: no deepgen metadata, PyTorch's names.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vae/tests/fixtures/pytorch_vae.safetensors");
    let eval = deepgen()
        .args([
            "eval",
            "vae",
            "--synthetic-size",
            "300",
            "--k",
            "5",
            "--checkpoint",
        ])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let out = tmp("init");
    let stdout = run_ok(
        &[
            "train",
            "vae",
            "--hidden",
            "64",
            "--latent",
            "8",
            "--synthetic-size",
            "300",
            "--epochs",
            "1",
            "--init",
            fixture.to_str().unwrap(),
        ],
        &out,
    );
    assert!(stdout.contains("epoch 1:"), "{stdout}");
}

#[test]
fn a_short_gan_run_trains_samples_resumes_and_is_judged() {
    let out = tmp("gan");
    let args = [
        "train",
        "gan",
        "--synthetic-size",
        "300",
        "--epochs",
        "1",
        "--width",
        "8",
        "--latent",
        "16",
        "--conditional",
        "--ema",
        "0.9",
    ];
    let stdout = run_ok(&args, &out);
    assert!(stdout.contains("epoch 1: D "), "{stdout}");
    for f in ["samples.png", "samples_ema.png", "losses.png"] {
        assert_eq!(&std::fs::read(out.join(f)).unwrap()[1..4], b"PNG", "{f}");
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    // The generator's state dict is named as PyTorch's nn.Sequential `net`.
    let (g, _) = deepgen_nn::checkpoint::load_tensors(&out.join("generator.safetensors")).unwrap();
    assert!(g.iter().any(|(n, _)| n == "net.1.running_mean"));
    assert!(g.iter().any(|(n, _)| n == "embed.weight"));
    // --resume continues to epoch 2.
    let mut more = args.to_vec();
    more[5] = "2";
    more.push("--resume");
    let stdout = run_ok(&more, &out);
    assert!(
        stdout.contains("epoch 2:") && !stdout.contains("epoch 1:"),
        "{stdout}"
    );
    // Conditional sampling: all 3s, as IDX.
    let idx = out.join("threes.idx");
    let r = deepgen()
        .args(["sample", "--n", "6", "--label", "3", "--checkpoint"])
        .arg(out.join("generator_ema.safetensors"))
        .arg("--out")
        .arg(&idx)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(&idx).unwrap().len(), 16 + 6 * 784);
    let bad = deepgen()
        .args(["sample", "--label", "12", "--checkpoint"])
        .arg(out.join("generator.safetensors"))
        .output()
        .unwrap();
    // A flag value the checkpoint cannot take is a usage error.
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--label 12"));
    // A mismatched --init is refused, naming the tensor.
    let bad = deepgen()
        .args([
            "train",
            "gan",
            "--synthetic-size",
            "300",
            "--width",
            "4",
            "--init",
        ])
        .arg(format!(
            "{},{}",
            out.join("generator.safetensors").display(),
            out.join("discriminator.safetensors").display()
        ))
        .arg("--out")
        .arg(out.join("bad"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("net.0.weight"));
}

#[test]
fn the_2d_benchmark_reports_coverage_and_plots_each_seed() {
    let out = tmp("gan2d");
    let stdout = run_ok(
        &[
            "eval",
            "gan-2d",
            "--dataset",
            "ring8",
            "--seeds",
            "1",
            "--steps",
            "300",
        ],
        &out,
    );
    assert!(
        stdout.contains("| 0 |") && stdout.contains("mean over 1 seed:"),
        "{stdout}"
    );
    assert_eq!(
        &std::fs::read(out.join("ring8-seed0.png")).unwrap()[1..4],
        b"PNG"
    );
}

/// Runs `deepgen ARGS`; returns (exit code, stdout, stderr).
fn run_any<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (Option<i32>, String, String) {
    let r = deepgen().args(args).output().unwrap();
    (
        r.status.code(),
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

#[test]
fn a_run_directory_is_resumed_forced_or_refused_and_config_repeats_a_run() {
    let out = tmp("rundir");
    let o = out.to_str().unwrap();
    let base = [
        "train",
        "classifier",
        "--synthetic-size",
        "600",
        "--batch-size",
        "100",
        "--quiet",
        "--threads",
        "1",
    ];
    let with =
        |more: &[&str]| -> Vec<String> { base.iter().chain(more).map(|s| s.to_string()).collect() };
    let first = with(&["--epochs", "1", "--out", o]);
    let (code, _, err) = run_any(&first);
    assert_eq!(code, Some(0), "{err}");
    // TensorBoard events are on by default.
    let tb: Vec<_> = std::fs::read_dir(out.join("tb")).unwrap().collect();
    assert_eq!(tb.len(), 1);
    // Again in the same folder: refused, naming both ways out.
    let (code, _, err) = run_any(&first);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--resume") && err.contains("--force") && err.contains(o),
        "{err}"
    );
    // Resumed with another learning rate: refused, naming the flag.
    let (code, _, err) =
        run_any(&(with(&["--epochs", "2", "--lr", "0.01", "--resume", "--out", o])));
    assert_eq!(code, Some(1));
    assert!(err.contains("lr: 0.001 -> 0.01"), "{err}");
    // Resumed with more epochs: continues, bit for bit as one run of 2.
    let (code, stdout, err) = run_any(&(with(&["--epochs", "2", "--resume", "--out", o])));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        stdout.contains("epoch 2:") && !stdout.contains("epoch 1:"),
        "{stdout}"
    );
    let straight = tmp("rundir-straight");
    let (code, _, err) = run_any(&(with(&["--epochs", "2", "--out", straight.to_str().unwrap()])));
    assert_eq!(code, Some(0), "{err}");
    let bytes = |d: &std::path::Path| std::fs::read(d.join("classifier.safetensors")).unwrap();
    assert!(bytes(&out) == bytes(&straight), "resumed != uninterrupted");
    // --force starts over.
    let (code, _, err) = run_any(&(with(&["--epochs", "1", "--force", "--out", o])));
    assert_eq!(code, Some(0), "{err}");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    // The config.json a run writes repeats it.
    let again = tmp("rundir-again");
    let config = straight.join("config.json");
    let (code, _, err) = run_any(&[
        "train",
        "classifier",
        "--config",
        config.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        // The same numbers need the same thread count, which is not a flag of the run.
        "--threads",
        "1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        bytes(&again) == bytes(&straight),
        "--config did not repeat the run"
    );
    // ... and only for the command that wrote it.
    let (code, _, err) = run_any(&["train", "vae", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("train classifier"), "{err}");
}

#[test]
fn evaluation_defaults_to_the_data_the_model_was_trained_on() {
    let out = tmp("recorded");
    let o = out.to_str().unwrap();
    let (code, _, err) = run_any(&[
        "train",
        "vae",
        "--synthetic-size",
        "360",
        "--epochs",
        "1",
        "--hidden",
        "16",
        "--latent",
        "2",
        "--quiet",
        "--no-tensorboard",
        "--out",
        o,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.join("tb").exists());
    let ckpt = out.join("model.safetensors");
    let c = ckpt.to_str().unwrap();
    // Trained on 360 synthetic digits: the held-out sixth is 60 images.
    let (code, stdout, err) = run_any(&["eval", "vae", "--k", "2", "--quiet", "--checkpoint", c]);
    assert_eq!(code, Some(0), "{err}");
    assert!(stdout.starts_with("60 images"), "{stdout}");
    assert!(!err.contains("warning"), "{err}");
    // Told otherwise: done as told, with a warning.
    let (code, _, err) = run_any(&[
        "eval",
        "vae",
        "--k",
        "2",
        "--quiet",
        "--checkpoint",
        c,
        "--dataset",
        "mnist",
        "--data-dir",
        "/nonexistent",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("warning:") && err.contains("trained on digits"),
        "{err}"
    );
    // Samples go into a folder that does not exist yet.
    let png = out.join("new/folder/s.png");
    let (code, _, err) = run_any(&[
        "sample",
        "--n",
        "4",
        "--checkpoint",
        c,
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(png.exists());
}

/// The TensorBoard events of a real run: read back with deepgen's reader
/// always, and with TensorBoard's own (`EventAccumulator`) when the Python
/// package is installed (CI installs it and sets DEEPGEN_REQUIRE_TENSORBOARD=1).
#[test]
fn a_training_run_logs_scalars_and_images_tensorboard_reads() {
    let out = tmp("tb");
    let o = out.to_str().unwrap();
    let (code, _, err) = run_any(&[
        "train",
        "vae",
        "--synthetic-size",
        "600",
        "--epochs",
        "2",
        "--batch-size",
        "100",
        "--hidden",
        "32",
        "--latent",
        "4",
        "--quiet",
        "--out",
        o,
    ]);
    assert_eq!(code, Some(0), "{err}");
    let files: Vec<_> = std::fs::read_dir(out.join("tb"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let scalars = deepgen_train::tensorboard::read_scalars(&files[0]).unwrap();
    let of = |tag: &str| -> Vec<(u64, f64)> {
        scalars
            .iter()
            .filter(|(t, _, _)| t == tag)
            .map(|(_, s, v)| (*s, *v))
            .collect()
    };
    // 500 training images in batches of 100: 5 steps an epoch.
    let steps: Vec<u64> = of("train/train_loss").iter().map(|p| p.0).collect();
    assert_eq!(steps, (1..=10).collect::<Vec<u64>>());
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let held: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    let logged = of("epoch/held_out_loss");
    assert_eq!(logged.iter().map(|p| p.0).collect::<Vec<_>>(), [5, 10]);
    for ((_, v), h) in logged.iter().zip(&held) {
        assert_eq!(*v, *h as f32 as f64, "held-out loss as in metrics.csv");
    }
    assert_eq!(
        of("lr/model"),
        [(5, 0.0010000000474974513), (10, 0.0010000000474974513)]
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has_tb = Command::new(&python)
        .args(["-c", "import tensorboard"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_tb {
        assert!(
            std::env::var("DEEPGEN_REQUIRE_TENSORBOARD").as_deref() != Ok("1"),
            "DEEPGEN_REQUIRE_TENSORBOARD=1 but tensorboard is not installed"
        );
        println!("SKIPPED: TensorBoard's own reader (pip install tensorboard); CI runs it");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../train/tests/read_events.py");
    let r = Command::new(&python)
        .arg(script)
        .arg(out.join("tb"))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let json: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let run = json.as_object().unwrap().values().next().unwrap();
    let read = &run["scalars"]["epoch/held_out_loss"];
    let values: Vec<f64> = read
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect();
    assert_eq!(values.len(), 2, "{read}");
    for (v, h) in values.iter().zip(&held) {
        assert_eq!(
            *v as f32, *h as f32,
            "TensorBoard reads the held-out loss of metrics.csv"
        );
    }
    assert_eq!(
        run["scalars"]["train/train_loss"].as_array().unwrap().len(),
        10
    );
    assert_eq!(run["images"]["samples"]["count"], 2, "{}", run["images"]);
    println!("TensorBoard read epoch/held_out_loss = {values:?}");
}

#[test]
fn any_optimizer_with_a_schedule_clipping_and_accumulation_trains() {
    let out = tmp("optim");
    let (code, stdout, err) = run_any(&[
        "train",
        "classifier",
        "--synthetic-size",
        "600",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.9",
        "--lr",
        "0.05",
        "--lr-schedule",
        "cosine",
        "--warmup",
        "3",
        "--clip-grad-norm",
        "5",
        "--accumulate",
        "2",
        "--keep",
        "best,last",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(stdout.contains("epoch 2:"), "{stdout}");
    assert!(out.join("checkpoints/best").exists());
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(config.contains("\"optimizer\": \"sgd\""), "{config}");
    let (code, _, err) = run_any(&["train", "classifier", "--optimizer", "lbfgs"]);
    assert_eq!(code, Some(2), "{err}");
}

/// An IDX file of `n` binary 28x28 images (0 and 255): thick bars whose
/// place follows the index, so every image differs.
fn binary_idx(n: usize) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        out.extend_from_slice(&d.to_be_bytes());
    }
    for i in 0..n {
        out.extend((0..784).map(|p| if (p % 28 + i) % 9 < 3 { 255 } else { 0 }));
    }
    out
}

/// `deepgen compress|decompress --checkpoint MODEL IN OUT`.
fn coder(
    cmd: &str,
    model: &std::path::Path,
    input: &std::path::Path,
    output: &std::path::Path,
) -> (Option<i32>, String, String) {
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();
    run_any(&[cmd, "--checkpoint", &p(model), &p(input), &p(output)])
}

#[test]
fn compress_and_decompress_round_trip_and_refuse_other_models_and_damaged_files() {
    let dir = tmp("compress");
    let train = |name: &str, seed: &str| {
        let args = [
            "train",
            "vae",
            "--synthetic-size",
            "300",
            "--epochs",
            "1",
            "--hidden",
            "32",
            "--latent",
            "4",
            "--binarize",
            "--seed",
            seed,
        ];
        run_ok(&args, &dir.join(name));
        dir.join(name).join("model.safetensors")
    };
    let (model, other) = (train("a", "1"), train("b", "2"));
    let (input, packed, back) = (
        dir.join("in.idx"),
        dir.join("in.dgnz"),
        dir.join("back.idx"),
    );
    std::fs::write(&input, binary_idx(20)).unwrap();
    let (code, stdout, stderr) = coder("compress", &model, &input, &packed);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("20 images") && stdout.contains("bits per dimension"),
        "{stdout}"
    );
    let (code, _, stderr) = coder("decompress", &model, &packed, &back);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&input).unwrap());

    // Another model, a cut file, gray data for a Bernoulli model: one line
    // naming the problem, exit 1, and no output file.
    std::fs::remove_file(&back).unwrap();
    let (code, _, stderr) = coder("decompress", &other, &packed, &back);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("in.dgnz") && stderr.contains("not with this checkpoint"),
        "{stderr}"
    );
    let bytes = std::fs::read(&packed).unwrap();
    std::fs::write(&packed, &bytes[..bytes.len() - 3]).unwrap();
    let (code, _, stderr) = coder("decompress", &model, &packed, &back);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("corrupted") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert!(!back.exists());
    let mut gray = binary_idx(2);
    gray[100] = 77;
    std::fs::write(&input, gray).unwrap();
    let (code, _, stderr) = coder("compress", &model, &input, &packed);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("in.idx") && stderr.contains("binary"),
        "{stderr}"
    );

    // A folder of PNGs: back under the same names, pixel for pixel.
    let (pngs, packed, restored) = (
        dir.join("pngs"),
        dir.join("pngs.dgnz"),
        dir.join("restored"),
    );
    std::fs::create_dir_all(&pngs).unwrap();
    let images = binary_idx(3);
    for (i, name) in ["b.png", "a.png", "c 2.png"].iter().enumerate() {
        let px = images[16 + i * 784..16 + (i + 1) * 784].to_vec();
        image::GrayImage::from_raw(28, 28, px)
            .unwrap()
            .save(pngs.join(name))
            .unwrap();
    }
    std::fs::write(pngs.join("notes.txt"), "not an image").unwrap();
    let (code, stdout, stderr) = coder("compress", &model, &pngs, &packed);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("3 images"), "{stdout}");
    let (code, _, stderr) = coder("decompress", &model, &packed, &restored);
    assert_eq!(code, Some(0), "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&restored)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.png", "b.png", "c 2.png"]);
    for name in &names {
        let (a, b) = (
            image::open(pngs.join(name)).unwrap(),
            image::open(restored.join(name)).unwrap(),
        );
        assert!(a.to_luma8() == b.to_luma8(), "{name} changed");
    }
    // Into a folder that is not empty: refused, nothing written.
    let (code, _, stderr) = coder("decompress", &model, &packed, &restored);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("restored") && stderr.contains("not empty"),
        "{stderr}"
    );
    // An image of another size is named, not resized.
    image::GrayImage::new(27, 28)
        .save(pngs.join("d.png"))
        .unwrap();
    let (code, _, stderr) = coder("compress", &model, &pngs, &packed);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("d.png") && stderr.contains("27x28"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_codec_trains_compresses_lossily_samples_and_reconstructs() {
    let dir = tmp("codec");
    let out = dir.join("run");
    let stdout = run_ok(
        &[
            "train",
            "vae",
            "--arch",
            "codec",
            "--quality",
            "3",
            "--widths",
            "8,8",
            "--latent",
            "4",
            "--synthetic-size",
            "200",
            "--epochs",
            "1",
        ],
        &out,
    );
    assert!(stdout.contains("training a codec"), "{stdout}");
    let model = out.join("model.safetensors");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (input, packed, back) = (
        dir.join("in.idx"),
        dir.join("in.dgnz"),
        dir.join("back.idx"),
    );
    std::fs::write(&input, binary_idx(10)).unwrap();
    let (code, stdout, stderr) = coder("compress", &model, &input, &packed);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("10 images") && stdout.contains("lossy"),
        "{stdout}"
    );
    let (code, _, stderr) = coder("decompress", &model, &packed, &back);
    assert_eq!(code, Some(0), "{stderr}");
    let (original, decoded) = (
        std::fs::read(&input).unwrap(),
        std::fs::read(&back).unwrap(),
    );
    assert_eq!(decoded.len(), original.len());
    assert_eq!(decoded[..16], original[..16]);
    // Rate and distortion, measured with rounded latents.
    let (code, stdout, stderr) = run_any(&[
        "eval",
        "vae",
        "--checkpoint",
        &path(&model),
        "--synthetic-size",
        "200",
        "--quiet",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("bits per pixel") && stdout.contains("PSNR"),
        "{stdout}"
    );
    for (cmd, file) in [("sample", "s.png"), ("reconstruct", "r.png")] {
        let p = dir.join(file);
        let mut args = vec![
            cmd,
            "--checkpoint",
            model.to_str().unwrap(),
            "--out",
            p.to_str().unwrap(),
        ];
        if cmd == "reconstruct" {
            args.extend(["--synthetic-size", "200"]);
        }
        let (code, _, stderr) = run_any(&args);
        assert_eq!(code, Some(0), "{cmd}: {stderr}");
        assert_eq!(&std::fs::read(&p).unwrap()[1..4], b"PNG");
    }
    // Flags that contradict a codec, or a quality without one: usage errors.
    for bad in [
        &[
            "train",
            "vae",
            "--arch",
            "codec",
            "--likelihood",
            "bernoulli",
        ][..],
        &["train", "vae", "--arch", "codec", "--decoder-std", "0.1"],
        &["train", "vae", "--quality", "3"],
    ] {
        let (code, _, stderr) = run_any(bad);
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let (code, _, stderr) = run_any(&["train", "vae", "--arch", "codec", "--quality", "9"]);
    assert!(
        code == Some(2) && stderr.contains("invalid value"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_text_vae_trains_on_a_file_resumes_exactly_samples_and_refuses_bad_text() {
    let out = tmp("text");
    std::fs::create_dir_all(&out).unwrap();
    let text = out.join("poem.txt");
    let lines: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "line {i}: the {} sat on the mat",
                ["cat", "dog", "bird"][i % 3]
            )
        })
        .collect();
    std::fs::write(&text, lines.join("\n\n")).unwrap();
    let run = out.join("run");
    let t = text.to_str().unwrap();
    let args = |epochs: &str| {
        [
            "train",
            "text-vae",
            "--text",
            t,
            "--epochs",
            epochs,
            "--hidden",
            "16",
            "--embed",
            "8",
            "--latent",
            "4",
            "--batch-size",
            "8",
            "--quiet",
            "--no-tensorboard",
        ]
        .map(String::from)
        .to_vec()
    };
    let strs = |v: &[String]| v.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    let a2 = args("2");
    let stdout = run_ok(&a2.iter().map(String::as_str).collect::<Vec<_>>(), &run);
    assert!(stdout.contains("skipped 39 empty lines"), "{stdout}");
    assert!(
        stdout.contains("epoch 2:") && stdout.contains("nats/token") && stdout.contains("samples"),
        "{stdout}"
    );
    let straight = std::fs::read(run.join("model.safetensors")).unwrap();
    // One epoch, then --resume to two: the same model, byte for byte.
    let resumed = out.join("resumed");
    run_ok(
        &args("1").iter().map(String::as_str).collect::<Vec<_>>(),
        &resumed,
    );
    let mut more = args("2");
    more.push("--resume".into());
    let stdout = run_ok(
        &more.iter().map(String::as_str).collect::<Vec<_>>(),
        &resumed,
    );
    assert!(
        stdout.contains("epoch 2:") && !stdout.contains("epoch 1:"),
        "{}: {stdout}",
        strs(&more)
    );
    assert!(
        std::fs::read(resumed.join("model.safetensors")).unwrap() == straight,
        "resume is not exact"
    );
    // `sample` writes sentences from the checkpoint alone.
    let (code, stdout, err) = run_any(&[
        "sample",
        "--n",
        "4",
        "--temperature",
        "0.5",
        "--checkpoint",
        run.join("model.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    // Not exportable yet, and said so.
    let onnx = out.join("text.onnx");
    let (code, _, err) = run_any(&[
        "export",
        "--checkpoint",
        run.join("model.safetensors").to_str().unwrap(),
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert!(code == Some(2) && err.contains("no ONNX export"), "{err}");
    // Bytes that are not UTF-8 name the file and the line; an empty file is refused.
    let bad = out.join("bad.txt");
    std::fs::write(&bad, b"fine\nbroken \xff\n").unwrap();
    let (code, _, err) = run_any(&[
        "train",
        "text-vae",
        "--text",
        bad.to_str().unwrap(),
        "--out",
        out.join("x").to_str().unwrap(),
    ]);
    assert!(
        code != Some(0) && err.contains("bad.txt") && err.contains("line 2"),
        "{err}"
    );
    let empty = out.join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    let (code, _, err) = run_any(&[
        "train",
        "text-vae",
        "--text",
        empty.to_str().unwrap(),
        "--out",
        out.join("y").to_str().unwrap(),
    ]);
    assert!(
        code != Some(0) && err.contains("empty.txt") && err.lines().count() == 1,
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_text_gan_and_its_judge_train_evaluate_interpolate_and_encode() {
    let out = tmp("text-gan");
    let sizes = [
        "--sentences",
        "300",
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--embed",
        "8",
        "--batch-size",
        "16",
        "--quiet",
        "--no-tensorboard",
    ];
    fn with<'a>(sizes: &[&'a str], cmd: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["train", cmd];
        v.extend(sizes);
        v.extend(extra);
        v
    }
    let lm = out.join("lm");
    let stdout = run_ok(&with(&sizes, "text-lm", &[]), &lm);
    assert!(
        stdout.contains("perplexity") && stdout.contains("samples"),
        "{stdout}"
    );
    let gan = out.join("gan");
    let stdout = run_ok(
        &with(
            &sizes,
            "text-gan",
            &["--code", "8", "--noise", "4", "--gan-hidden", "16"],
        ),
        &gan,
    );
    assert!(
        stdout.contains("epoch 2:") && stdout.contains("critic gap"),
        "{stdout}"
    );
    // One epoch, then --resume to two: the same model, byte for byte.
    let resumed = out.join("resumed");
    let mut one = with(
        &sizes,
        "text-gan",
        &["--code", "8", "--noise", "4", "--gan-hidden", "16"],
    );
    one[5] = "1";
    run_ok(&one, &resumed);
    let mut two = with(
        &sizes,
        "text-gan",
        &[
            "--code",
            "8",
            "--noise",
            "4",
            "--gan-hidden",
            "16",
            "--resume",
        ],
    );
    two[5] = "2";
    run_ok(&two, &resumed);
    let model = |dir: &std::path::Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(
        model(&resumed) == model(&gan),
        "an ARAE's resume is not exact"
    );

    let (g, l) = (gan.join("model.safetensors"), lm.join("model.safetensors"));
    let (g, l) = (g.to_str().unwrap(), l.to_str().unwrap());
    let (code, stdout, err) = run_any(&[
        "eval",
        "text",
        "--sentences",
        "300",
        "--checkpoint",
        g,
        "--judge",
        l,
        "--samples",
        "50",
    ]);
    assert_eq!(code, Some(0), "{err}");
    for key in [
        "tokens decoded right",
        "forward perplexity of 50 samples",
        "real held-out lines",
        "distinct",
    ] {
        assert!(stdout.contains(key), "{key}: {stdout}");
    }
    let (code, stdout, err) = run_any(&["sample", "--n", "3", "--checkpoint", g]);
    assert!(
        code == Some(0) && stdout.lines().count() == 3,
        "{stdout}{err}"
    );
    let (code, stdout, err) = run_any(&[
        "interpolate",
        "--checkpoint",
        g,
        "--from-text",
        "the dog sees the moon .",
        "--to-text",
        "a small bird reads a book .",
        "--steps",
        "4",
    ]);
    assert!(
        code == Some(0) && stdout.lines().count() == 4,
        "{stdout}{err}"
    );
    let lines = out.join("lines.txt");
    std::fs::write(&lines, "the dog sees the moon .\n\na cat .\n").unwrap();
    let (code, stdout, err) = run_any(&[
        "encode",
        "--checkpoint",
        g,
        "--lines",
        lines.to_str().unwrap(),
        "--out",
        out.join("enc").to_str().unwrap(),
    ]);
    assert!(
        code == Some(0) && stdout.contains("encoded 2 sentences"),
        "{stdout}{err}"
    );
    let csv = std::fs::read_to_string(out.join("enc").join("latents.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");

    // Refused, with the reason: a judge that is no language model, another
    // vocabulary, a language model's latent space.
    let refused = |args: &[&str], says: &str| {
        let (code, _, err) = run_any(args);
        assert!(
            code != Some(0) && err.contains(says) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    };
    refused(
        &[
            "eval",
            "text",
            "--sentences",
            "300",
            "--checkpoint",
            l,
            "--judge",
            g,
        ],
        "not a language model",
    );
    refused(
        &[
            "eval",
            "text",
            "--sentences",
            "300",
            "--seed",
            "9",
            "--level",
            "char",
            "--checkpoint",
            g,
        ],
        "vocabulary",
    );
    refused(
        &[
            "interpolate",
            "--checkpoint",
            l,
            "--from-text",
            "a",
            "--to-text",
            "b",
        ],
        "no latent space",
    );
    let _ = std::fs::remove_dir_all(&out);
}
