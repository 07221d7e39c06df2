//! A checkpoint directory on arbitrary input, as `--resume` reads it: the
//! bytes are cut into a module file, an optimizer file and the progress
//! file (each behind a 2-byte length), parsed, and restored into a small
//! model, an Adam updater, a generator and the run's numbers. Each must
//! restore or fail with an error — never panic, never allocate without
//! bound.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use deepgen_nn::{checkpoint, Linear, Module};
use deepgen_train::{OptimizerConfig, Restored, StepConfig, Updater};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The next part: a 2-byte little-endian length, then that many bytes.
fn part<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    if data.len() < 2 {
        return &[];
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (p, rest) = data[2..].split_at(n);
    *data = rest;
    p
}

fuzz_target!(|data: &[u8]| {
    deepgen_nn::budget::set_limit(1 << 30);
    let mut rest = data;
    let dir = Path::new("fuzzed-checkpoint");
    let mut files = BTreeMap::new();
    for stem in ["model", "optimizer_model"] {
        let bytes = part(&mut rest);
        if let Ok(loaded) = checkpoint::from_bytes(&dir.join(stem), bytes) {
            files.insert(stem.to_string(), loaded);
        }
    }
    if let Ok(loaded) = checkpoint::from_bytes(&dir.join("trainer"), rest) {
        files.insert("trainer".to_string(), loaded);
    }
    let Ok(restored) = Restored::from_files(dir, files) else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let model = Linear::<f32>::new(3, 2, true, &mut rng).expect("a small layer");
    let _ = restored.module("model", &model);
    let opt = OptimizerConfig::default()
        .build(model.parameters(), 1e-3)
        .expect("Adam");
    let mut updater = Updater::new("model", opt, &StepConfig::default(), 10, 2).expect("an updater");
    let _ = restored.updater(&mut updater);
    let _ = restored.rng("noise", &mut rng);
    let _ = restored.number("best");
});
