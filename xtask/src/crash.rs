//! `cargo xtask crash-test`: kills training runs at random moments and at
//! every step of a checkpoint write, fills their disk, interrupts them with
//! SIGINT, resumes each to the end, and compares the result with an
//! uninterrupted run byte for byte.
//!
//! Trial kinds:
//! - `point`: `DEEPGEN_CRASH_AT=POINT:K` makes the run abort (no destructor,
//!   no flush: as under kill -9) the K-th time it reaches POINT, one of the
//!   steps of a checkpoint write ([`POINTS`]);
//! - `kill`: SIGKILL after a random delay within the run's length;
//! - `sigint`: SIGINT after a random delay (the run stops with a checkpoint
//!   inside the epoch and exits 130);
//! - `full-disk`: the run directory on a small tmpfs that fills up during a
//!   checkpoint; the tmpfs then grows and the run resumes (needs root to
//!   mount; said as SKIPPED otherwise).
//!
//! Each trial then runs `--resume` until the run completes (a run killed
//! before its first checkpoint starts over: `--resume` says so) and checks:
//! the final model, optimizer and progress files and the metrics (timing
//! columns aside) equal the reference's byte for byte, and no temporary
//! file or lock is left.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The steps of a checkpoint write the `point` trials stop at, with how
/// many times the reference run reaches each per epoch.
const POINTS: [(&str, u64); 7] = [
    ("checkpoint-file", 3),
    ("checkpoint-half-file", 3),
    ("checkpoint-rename", 1),
    ("checkpoint-pointer", 1),
    ("checkpoint-link", 1),
    ("checkpoint-prune", 1),
    ("after-metrics", 1),
];

/// The training run every trial repeats: small, four checkpoints, every
/// output on (grids, TensorBoard events).
const EPOCHS: u64 = 4;
fn train_args() -> Vec<String> {
    let args = "train vae --synthetic-size 1200 --epochs 4 --hidden 64 --latent 8 --batch-size 50 --seed 3 --quiet --threads 2";
    args.split(' ').map(String::from).collect()
}

pub const USAGE: &str = "crash-test [--trials N] [--seed S] [--release] [--dir DIR]";

struct Options {
    trials: usize,
    seed: u64,
    release: bool,
    dir: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        trials: 20,
        seed: 1,
        release: false,
        dir: std::env::temp_dir().join(format!("deepgen-crash-{}", std::process::id())),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--trials" => o.trials = value()?.parse().map_err(|e| format!("--trials: {e}"))?,
            "--seed" => o.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--dir" => o.dir = PathBuf::from(value()?),
            "--release" => o.release = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(o)
}

/// A small seeded generator (xorshift64*): the trials' choices repeat.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub fn run(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("crash-test: {e}\nusage: cargo xtask {USAGE}");
            return ExitCode::from(2);
        }
    };
    match trials(&o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("crash-test: {e}");
            ExitCode::FAILURE
        }
    }
}

fn build(release: bool) -> Result<PathBuf, String> {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["build", "--quiet", "-p", "deepgen-cli"]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err("cargo build -p deepgen-cli failed".into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join("deepgen"))
}

/// What a finished run must equal the reference in.
#[derive(PartialEq, Debug)]
struct Outcome {
    files: Vec<(String, Vec<u8>)>,
    metrics: Vec<String>,
}

fn outcome(out: &Path) -> Result<Outcome, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let ckpt = out.join("checkpoints");
    let last = String::from_utf8_lossy(&read(&ckpt.join("last"))?)
        .trim()
        .to_string();
    let mut files = vec![(
        "model.safetensors".to_string(),
        read(&out.join("model.safetensors"))?,
    )];
    let mut names: Vec<String> = std::fs::read_dir(ckpt.join(&last))
        .map_err(|e| format!("{last}: {e}"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        files.push((format!("{last}/{n}"), read(&ckpt.join(&last).join(&n))?));
    }
    // The last two columns are timings (seconds, items per second).
    let metrics = String::from_utf8_lossy(&read(&out.join("metrics.csv"))?)
        .lines()
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            cells[..cells.len().saturating_sub(2)].join(",")
        })
        .collect();
    Ok(Outcome { files, metrics })
}

/// Files a finished run must not leave: temporaries of interrupted writes,
/// the lock.
fn leftovers(out: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for dir in [out.to_path_buf(), out.join("checkpoints")] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.contains(".tmp-") || n.contains(".link-") || n == ".lock" {
                found.push(format!("{}/{n}", dir.display()));
            }
        }
    }
    found
}

fn command(bin: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(train_args()).arg("--out").arg(out).args(extra);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Runs to the end after a crash: `--resume` when the run recorded its
/// settings (config.json), a fresh start otherwise. Returns whether it
/// completed (with its error text when not).
fn finish(bin: &Path, out: &Path) -> Result<(), String> {
    let resume = out.join("config.json").exists();
    let extra: &[&str] = if resume { &["--resume"] } else { &[] };
    let run = command(bin, out, extra)
        .output()
        .map_err(|e| e.to_string())?;
    match run.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{} failed: {}",
            if resume { "--resume" } else { "a fresh start" },
            String::from_utf8_lossy(&run.stderr).trim()
        )),
    }
}

#[derive(Default)]
struct Tally {
    trials: usize,
    interrupted: usize,
    resumed: usize,
    identical: usize,
}

fn trials(o: &Options) -> Result<bool, String> {
    let bin = build(o.release)?;
    let _ = std::fs::remove_dir_all(&o.dir);
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    let reference = o.dir.join("reference");
    let t0 = Instant::now();
    let run = command(&bin, &reference, &[])
        .output()
        .map_err(|e| e.to_string())?;
    if !run.status.success() {
        return Err(format!(
            "reference run: {}",
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    let length = t0.elapsed();
    let want = outcome(&reference)?;
    println!(
        "deepgen {} | reference run {:.2} s, {} files compared | {} trials",
        bin.display(),
        length.as_secs_f64(),
        want.files.len(),
        o.trials
    );
    let mut rng = Rng(o.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut tallies: std::collections::BTreeMap<&str, Tally> = Default::default();
    let mut all_ok = true;
    for i in 0..o.trials {
        let out = o.dir.join(format!("trial-{i:03}"));
        let (kind, what, interrupted) = match i % 10 {
            0..=4 => point_trial(&bin, &out, i, &mut rng)?,
            5 | 6 | 8 => kill_trial(&bin, &out, length, &mut rng)?,
            7 => sigint_trial(&bin, &out, length, &mut rng)?,
            _ => match full_disk_trial(&bin, &out, &mut rng)? {
                Some(t) => t,
                None => continue,
            },
        };
        let finished = finish(&bin, &out);
        unmount(&out);
        let got = finished.clone().and_then(|()| outcome(&out));
        let left = leftovers(&out);
        let identical = matches!(&got, Ok(g) if *g == want) && left.is_empty();
        let t = tallies.entry(kind).or_default();
        t.trials += 1;
        t.interrupted += usize::from(interrupted);
        t.resumed += usize::from(finished.is_ok());
        t.identical += usize::from(identical);
        let verdict = match (&finished, &got, identical) {
            (_, _, true) => "bit-identical".to_string(),
            (Err(e), _, _) => format!("FAILED to resume: {e}"),
            (_, Err(e), _) => format!("FAILED: {e}"),
            (_, Ok(g), _) if *g != want => format!("FAILED: differs in {}", differing(g, &want)),
            _ => format!("FAILED: left {left:?}"),
        };
        all_ok &= identical;
        println!("trial {i:3} {kind:9} {what:32} -> {verdict}");
        if identical {
            let _ = std::fs::remove_dir_all(&out);
        }
    }
    println!("\n| trial kind | trials | interrupted | resumed | bit-identical |");
    println!("| --- | --- | --- | --- | --- |");
    let mut total = Tally::default();
    for (kind, t) in &tallies {
        println!(
            "| {kind} | {} | {} | {} | {} |",
            t.trials, t.interrupted, t.resumed, t.identical
        );
        total.trials += t.trials;
        total.interrupted += t.interrupted;
        total.resumed += t.resumed;
        total.identical += t.identical;
    }
    println!(
        "| all | {} | {} | {} | {} of {} |",
        total.trials, total.interrupted, total.resumed, total.identical, total.trials
    );
    if all_ok {
        let _ = std::fs::remove_dir_all(&o.dir);
    }
    Ok(all_ok)
}

fn differing(got: &Outcome, want: &Outcome) -> String {
    if got.metrics != want.metrics {
        return "metrics.csv".into();
    }
    let names = |o: &Outcome| o.files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    if names(got) != names(want) {
        return format!("files {:?} vs {:?}", names(got), names(want));
    }
    got.files
        .iter()
        .zip(&want.files)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Dies at the K-th pass through one step of the checkpoint writes.
fn point_trial(
    bin: &Path,
    out: &Path,
    i: usize,
    rng: &mut Rng,
) -> Result<(&'static str, String, bool), String> {
    let (point, per_epoch) = POINTS[(i / 10 * 5 + i % 10) % POINTS.len()];
    let k = 1 + rng.below(per_epoch * EPOCHS);
    let run = command(bin, out, &[])
        .env("DEEPGEN_CRASH_AT", format!("{point}:{k}"))
        .output()
        .map_err(|e| e.to_string())?;
    Ok(("point", format!("{point}:{k}"), !run.status.success()))
}

/// SIGKILL after a random delay.
fn kill_trial(
    bin: &Path,
    out: &Path,
    length: Duration,
    rng: &mut Rng,
) -> Result<(&'static str, String, bool), String> {
    let delay = Duration::from_millis(rng.below(length.as_millis() as u64 + 1));
    let mut child = command(bin, out, &[]).spawn().map_err(|e| e.to_string())?;
    std::thread::sleep(delay);
    let killed = child.try_wait().map_err(|e| e.to_string())?.is_none();
    let _ = child.kill();
    let _ = child.wait();
    Ok(("kill -9", format!("after {} ms", delay.as_millis()), killed))
}

/// SIGINT after a random delay: the run must stop with exit 130 (or have
/// finished).
fn sigint_trial(
    bin: &Path,
    out: &Path,
    length: Duration,
    rng: &mut Rng,
) -> Result<(&'static str, String, bool), String> {
    let delay = Duration::from_millis(
        length.as_millis() as u64 / 4 + rng.below(length.as_millis() as u64 / 2 + 1),
    );
    let child = command(bin, out, &[]).spawn().map_err(|e| e.to_string())?;
    std::thread::sleep(delay);
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let run = child.wait_with_output().map_err(|e| e.to_string())?;
    let code = run.status.code();
    if !matches!(code, Some(0) | Some(130)) {
        return Err(format!(
            "SIGINT after {} ms: exit {code:?}, expected 130: {}",
            delay.as_millis(),
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    Ok((
        "sigint",
        format!(
            "after {} ms, exit {}",
            delay.as_millis(),
            code.unwrap_or(-1)
        ),
        code == Some(130),
    ))
}

/// The run directory on a tmpfs too small for the run's checkpoints; the
/// run must fail cleanly, then resume once the tmpfs has grown. None when
/// no tmpfs can be mounted here (not root).
fn full_disk_trial(
    bin: &Path,
    out: &Path,
    rng: &mut Rng,
) -> Result<Option<(&'static str, String, bool)>, String> {
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    // A checkpoint is ~1.3 MB (model, Adam's two moments, progress); the
    // grids and events add a little: 1.5 to 3.5 MB fills up in the first
    // or second checkpoint, at a different file each time.
    let kib = 1536 + rng.below(2048);
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
        .arg(out)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        println!("full-disk trial SKIPPED: cannot mount a tmpfs here (needs root)");
        return Ok(None);
    }
    let run = command(bin, out, &[]).output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    let full = !run.status.success();
    if full && !stderr.contains("No space left") {
        return Err(format!("a full disk gave another error: {stderr}"));
    }
    Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(out)
        .status()
        .map_err(|e| e.to_string())?;
    Ok(Some(("full-disk", format!("{kib} KiB tmpfs"), full)))
}

fn unmount(out: &Path) {
    let is_mount = std::fs::read_to_string("/proc/mounts")
        .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(1) == out.to_str()));
    if is_mount {
        // Keep the contents for the comparison: copy them out first.
        let copy = out.with_extension("disk");
        let _ = Command::new("cp").arg("-a").arg(out).arg(&copy).status();
        let _ = Command::new("umount").arg(out).status();
        let _ = std::fs::remove_dir_all(out);
        let _ = std::fs::rename(&copy, out);
    }
}
