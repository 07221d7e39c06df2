//! A stop request (Ctrl-C in the binary) in a process of its own: the
//! request is process-wide, so it must not reach the other tests' runs.

mod common;

use common::{loader_of, Line};
use deepgen_train::prelude::*;
use deepgen_train::{interrupt, Error};

/// The line task with gradient accumulation over 3 micro-batches (so a
/// stop must wait for an update boundary).
fn line() -> Line {
    let step = StepConfig {
        accumulate: 3,
        ..Default::default()
    };
    common::line(&[], &step, 3)
}

fn loader() -> DataLoader {
    loader_of(32)
}

fn config(name: &str, start: Start) -> RunConfig {
    let dir = std::env::temp_dir().join(format!("deepgen-interrupt-{}-{name}", std::process::id()));
    if start != Start::Resume {
        let _ = std::fs::remove_dir_all(&dir);
    }
    RunConfig {
        progress: false,
        images: false,
        start,
        ..RunConfig::new(dir, 3)
    }
}

/// Asks for a stop at one global step, as a Ctrl-C would.
struct StopAt(u64);

impl Hook for StopAt {
    fn on_step(&mut self, at: At, _: &StepValues) {
        if at.global_step == self.0 {
            assert!(interrupt::request(), "a running loop honours the request");
        }
    }
}

#[test]
fn a_stop_request_checkpoints_inside_the_epoch_and_resume_is_exact() {
    let record = serde_json::json!({ "epochs": 3 });
    let mut straight = line();
    fit(
        &mut straight,
        &loader(),
        &config("straight", Start::New),
        &record,
        &mut [],
    )
    .unwrap();
    // Nothing listens between runs: a request then means "exit now".
    assert!(!interrupt::request());
    interrupt::clear();
    // Requested during epoch 2's 4th step (global step 11, 0-based): the
    // loop goes on to the update boundary (3 micro-batches) and stops there.
    let run = config("stopped", Start::New);
    let mut first = line();
    let e = fit(&mut first, &loader(), &run, &record, &mut [&mut StopAt(11)]).unwrap_err();
    interrupt::clear();
    let Error::Interrupted {
        epoch,
        batch,
        checkpoint,
    } = e
    else {
        panic!("expected Interrupted, got {e}");
    };
    assert_eq!((epoch, batch), (1, 6), "stopped after batch 6 of epoch 2");
    assert!(
        checkpoint.ends_with("epoch-0001-batch-000006"),
        "{}",
        checkpoint.display()
    );
    assert!(e_text(epoch, batch, &checkpoint).contains("--resume"));
    let mut resumed = line();
    let again = config("stopped", Start::Resume);
    let fitted = fit(&mut resumed, &loader(), &again, &record, &mut []).unwrap();
    assert_eq!(fitted.history.len(), 2, "the rest of epoch 2, then epoch 3");
    assert_eq!(
        resumed.w.weight.value().to_vec(),
        straight.w.weight.value().to_vec()
    );
    // The metrics equal the uninterrupted run's, timing columns aside.
    let rows = |c: &RunConfig| -> Vec<String> {
        std::fs::read_to_string(c.out_dir.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(rows(&again), rows(&config("straight", Start::Resume)));
}

fn e_text(epoch: usize, batch: usize, checkpoint: &std::path::Path) -> String {
    Error::Interrupted {
        epoch,
        batch,
        checkpoint: checkpoint.to_path_buf(),
    }
    .to_string()
}
