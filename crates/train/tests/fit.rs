//! The loop itself on a task small enough to reason about: a linear fit
//! whose held-out metric is scripted, so early stopping, the best
//! checkpoint, hooks and resume can be checked exactly.

mod common;

use std::path::PathBuf;

use common::{line, loader_of};

use deepgen_train::prelude::*;
use deepgen_train::Error;

fn loader() -> DataLoader {
    loader_of(16)
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("deepgen-fit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn config(name: &str, epochs: usize) -> RunConfig {
    RunConfig {
        progress: false,
        images: false,
        ..RunConfig::new(dir(name), epochs)
    }
}

fn pointer(run: &RunConfig, which: &str) -> String {
    std::fs::read_to_string(run.out_dir.join("checkpoints").join(which))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn early_stopping_ends_the_run_and_the_best_checkpoint_is_kept() {
    let held = [5.0, 3.0, 3.5, 3.2, 3.1, 1.0];
    let mut task = line(&held, &StepConfig::default(), 6);
    let run = RunConfig {
        monitor: Some("held_out".into()),
        keep_best: true,
        patience: Some(3),
        ..config("early", 6)
    };
    let fitted = fit(&mut task, &loader(), &run, &serde_json::json!({}), &mut []).unwrap();
    assert_eq!(
        fitted.history.len(),
        5,
        "stopped after 3 epochs without a better 3.0"
    );
    assert_eq!(fitted.best, Some((1, 3.0)));
    assert!(fitted.stopped_early.unwrap().contains("best at epoch 2"));
    assert_eq!(
        (pointer(&run, "last"), pointer(&run, "best")),
        ("epoch-0005".into(), "epoch-0002".into())
    );
}

#[test]
fn a_hook_can_stop_the_run_after_an_epoch() {
    struct StopAt(usize, usize);
    impl Hook for StopAt {
        fn on_step(&mut self, _at: At, _values: &StepValues) {
            self.1 += 1;
        }
        fn on_epoch(&mut self, record: &EpochRecord) -> Control {
            if record.epoch + 1 == self.0 {
                Control::Stop
            } else {
                Control::Continue
            }
        }
    }
    let mut task = line(&[], &StepConfig::default(), 5);
    let mut hook = StopAt(2, 0);
    let fitted = fit(
        &mut task,
        &loader(),
        &config("hook", 5),
        &serde_json::json!({}),
        &mut [&mut hook],
    )
    .unwrap();
    assert_eq!(fitted.history.len(), 2);
    assert_eq!(hook.1, 8, "4 steps an epoch");
    let w = task.w.weight.value().to_vec()[0];
    assert!((w - 2.0).abs() < 1.0, "learning: w = {w}");
}

#[test]
fn accumulation_and_schedules_resume_exactly() {
    let step = StepConfig {
        accumulate: 3,
        schedule: Schedule::Cosine,
        warmup: 2,
        ..Default::default()
    };
    let record = serde_json::json!({ "epochs": 4 });
    let mut straight = line(&[], &step, 4);
    fit(
        &mut straight,
        &loader(),
        &config("straight", 4),
        &record,
        &mut [],
    )
    .unwrap();
    let run = config("resumed", 2);
    fit(&mut line(&[], &step, 4), &loader(), &run, &record, &mut []).unwrap();
    let mut resumed = line(&[], &step, 4);
    let more = RunConfig {
        epochs: 4,
        start: Start::Resume,
        ..run
    };
    fit(
        &mut resumed,
        &loader(),
        &more,
        &serde_json::json!({ "epochs": 2 }),
        &mut [],
    )
    .unwrap();
    assert_eq!(
        resumed.w.weight.value().to_vec(),
        straight.w.weight.value().to_vec()
    );
    assert_eq!(resumed.updater.lr(), straight.updater.lr());
    assert_eq!(resumed.updater.updates(), straight.updater.updates());
}

#[test]
fn settings_that_cannot_work_are_refused_before_anything_is_written() {
    let watch_nothing = RunConfig {
        keep_best: true,
        ..config("nothing", 2)
    };
    let err = fit(
        &mut line(&[], &StepConfig::default(), 2),
        &loader(),
        &watch_nothing,
        &serde_json::json!({}),
        &mut [],
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { .. }) && err.to_string().contains("--monitor"),
        "{err}"
    );
    let typo = RunConfig {
        monitor: Some("held_ot".into()),
        ..config("typo", 2)
    };
    let err = fit(
        &mut line(&[], &StepConfig::default(), 2),
        &loader(),
        &typo,
        &serde_json::json!({}),
        &mut [],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("held_ot") && err.to_string().contains("held_out"),
        "{err}"
    );
    assert!(!typo.out_dir.join("config.json").exists());
}

#[test]
fn a_complete_run_resumed_repairs_its_top_files_and_trains_nothing() {
    let step = StepConfig::default();
    let record = serde_json::json!({ "epochs": 2 });
    let run = config("complete", 2);
    fit(&mut line(&[], &step, 2), &loader(), &run, &record, &mut []).unwrap();
    // A crash after the last pointer moved, before the top file was linked.
    let top = run.out_dir.join("line.safetensors");
    std::fs::remove_file(&top).unwrap();
    let again = RunConfig {
        start: Start::Resume,
        ..run.clone()
    };
    let fitted = fit(
        &mut line(&[], &step, 2),
        &loader(),
        &again,
        &record,
        &mut [],
    )
    .unwrap();
    assert!(fitted.history.is_empty());
    let last = run.out_dir.join("checkpoints").join(pointer(&run, "last"));
    assert_eq!(
        std::fs::read(&top).unwrap(),
        std::fs::read(last.join("line.safetensors")).unwrap()
    );
}
