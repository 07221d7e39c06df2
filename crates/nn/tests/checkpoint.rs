//! State dicts on disk: round trips and every bad-checkpoint row of DESIGN.md.

use deepgen_nn::Forward;
use std::path::{Path, PathBuf};

use deepgen_nn::checkpoint::{self, TensorData};
use deepgen_nn::{BatchNorm, BatchNormConfig, Error, Linear, Module, Relu, Sequential, Tensor};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn net(seed: u64) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Sequential::new()
        .add(Linear::new(4, 3, true, &mut rng).unwrap())
        .add(BatchNorm::new1d(3, BatchNormConfig::default()))
        .add(Relu)
        .add(Linear::new(3, 2, false, &mut rng).unwrap())
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("deepgen-nn-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn values(m: &dyn Module) -> Vec<(String, TensorData)> {
    checkpoint::state_dict(m)
}

#[test]
fn state_dict_names_follow_pytorch() {
    let names: Vec<String> = values(&net(0)).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "0.weight",
            "0.bias",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "1.num_batches_tracked",
            "3.weight"
        ]
    );
}

#[test]
fn a_saved_state_dict_loads_back_exactly() {
    let (a, b) = (net(1), net(2));
    let x = deepgen_nn::Var::constant(
        Tensor::<f32>::from_vec((0..20).map(|i| i as f32 * 0.1).collect(), &[5, 4]).unwrap(),
    );
    a.forward(&x).unwrap(); // moves BatchNorm's running statistics and counter
    let path = tmp("roundtrip.safetensors");
    checkpoint::save(&a, &path).unwrap();
    let report = checkpoint::load(&b, &path, true).unwrap();
    assert_eq!(report, Default::default());
    assert_eq!(values(&a), values(&b));
    a.eval();
    b.eval();
    assert_eq!(
        a.forward(&x).unwrap().value(),
        b.forward(&x).unwrap().value()
    );
}

fn write_without(
    path: &Path,
    drop: &str,
    extra: Option<(&str, TensorData)>,
    reshape: Option<&str>,
) {
    let mut entries: Vec<(String, TensorData)> = values(&net(3))
        .into_iter()
        .filter(|(n, _)| n != drop)
        .collect();
    if let Some((n, t)) = extra {
        entries.push((n.to_string(), t));
    }
    if let Some(name) = reshape {
        for (n, t) in &mut entries {
            if n == name {
                *t = TensorData::F32(Tensor::zeros(&[7, 7]));
            }
        }
    }
    checkpoint::save_tensors(path, &entries, None).unwrap();
}

#[test]
fn a_missing_tensor_is_an_error_naming_it_and_changes_nothing() {
    let path = tmp("missing.safetensors");
    write_without(&path, "0.bias", None, None);
    let m = net(4);
    let before = values(&m);
    let err = checkpoint::load(&m, &path, true).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { name, .. } if name == "0.bias"),
        "{err}"
    );
    assert!(err.to_string().contains("0.bias"));
    assert_eq!(values(&m), before);
    // Non-strict: the rest loads, the gap is reported.
    let report = checkpoint::load(&m, &path, false).unwrap();
    assert_eq!(report.missing, ["0.bias"]);
}

#[test]
fn an_extra_tensor_is_an_error_in_strict_mode_and_reported_otherwise() {
    let path = tmp("extra.safetensors");
    write_without(
        &path,
        "",
        Some(("head.weight", TensorData::F32(Tensor::zeros(&[2])))),
        None,
    );
    let err = checkpoint::load(&net(5), &path, true).unwrap_err();
    assert!(
        matches!(&err, Error::UnexpectedTensor { name, .. } if name == "head.weight"),
        "{err}"
    );
    assert_eq!(
        checkpoint::load(&net(5), &path, false).unwrap().unexpected,
        ["head.weight"]
    );
}

#[test]
fn a_mis_shaped_tensor_is_an_error_naming_it_and_both_shapes() {
    let path = tmp("shape.safetensors");
    write_without(&path, "", None, Some("3.weight"));
    let m = net(6);
    let before = values(&m);
    let err = checkpoint::load(&m, &path, false).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("3.weight") && msg.contains("[7, 7]") && msg.contains("[2, 3]"),
        "{msg}"
    );
    assert_eq!(values(&m), before, "a failed load must change nothing");
}

#[test]
fn truncated_and_garbage_files_are_errors() {
    let path = tmp("good.safetensors");
    checkpoint::save(&net(7), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let p = tmp("cut.safetensors");
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let err = checkpoint::load(&net(7), &p, true).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "cut at {cut}: {err}");
    }
    let missing =
        checkpoint::load(&net(7), Path::new("/nonexistent/x.safetensors"), true).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }));
}

#[test]
fn a_failed_write_leaves_the_old_file_and_no_temporary() {
    let dir = tmp("atomic");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    checkpoint::save(&net(8), &path).unwrap();
    let old = std::fs::read(&path).unwrap();
    // A directory where the temporary file would go makes the write fail.
    let blocker = dir.join(format!(".model.safetensors.tmp-{}", std::process::id()));
    std::fs::create_dir_all(&blocker).unwrap();
    assert!(checkpoint::save(&net(9), &path).is_err());
    std::fs::remove_dir(&blocker).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), old);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn corrupting_any_byte_or_length_never_panics(cut in 0usize..2000, pos in 0usize..2000, byte in any::<u8>()) {
        let entries = values(&net(10));
        let mut bytes = checkpoint::to_bytes(&entries, None).unwrap();
        let pos = pos % bytes.len();
        bytes[pos] = byte;
        bytes.truncate(cut.min(bytes.len()));
        let parsed = checkpoint::from_bytes(Path::new("fuzz"), &bytes);
        if let Ok((entries, _)) = parsed {
            let _ = checkpoint::load_entries(&net(10), Path::new("fuzz"), entries, true);
        }
    }
}

#[test]
fn files_with_the_same_state_and_metadata_have_the_same_bytes() {
    use std::collections::HashMap;
    let t = TensorData::F32(Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap());
    let entries = vec![("w".to_string(), t)];
    let meta = || -> HashMap<String, String> {
        (0..8)
            .map(|i| (format!("key{i}"), format!("value {i}")))
            .collect()
    };
    let a = checkpoint::to_bytes(&entries, Some(meta())).unwrap();
    for _ in 0..4 {
        assert_eq!(checkpoint::to_bytes(&entries, Some(meta())).unwrap(), a);
    }
    let (back, m) = checkpoint::from_bytes(std::path::Path::new("mem"), &a).unwrap();
    assert_eq!(back, entries);
    assert_eq!(m, meta());
}

/// A safetensors file whose header is `header` (JSON) over `body`.
fn with_header(header: &str, body: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    while !h.len().is_multiple_of(8) {
        h.push(' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h.as_bytes());
    out.extend(body);
    out
}

#[test]
fn a_tensor_named_twice_is_refused() {
    let entry = r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
    let body = 1.5f32.to_le_bytes();
    let once = with_header(&format!(r#"{{"w":{entry}}}"#), &body);
    assert!(checkpoint::from_bytes(Path::new("once"), &once).is_ok());
    let twice = with_header(&format!(r#"{{"w":{entry},"w":{entry}}}"#), &body);
    let e = checkpoint::from_bytes(Path::new("twice"), &twice).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("\"w\" twice"), "{e}");
}

#[test]
fn metadata_that_describes_more_than_the_file_holds_fails_before_allocating() {
    let path = tmp("small.safetensors");
    checkpoint::save(&net(3), &path).unwrap();
    let (entries, _) = checkpoint::load_tensors(&path).unwrap();
    // The file's own model fits exactly in what it holds...
    checkpoint::within_file(&path, &entries, || {
        Linear::<f32>::new(4, 3, true, &mut ChaCha8Rng::seed_from_u64(0))
    })
    .unwrap();
    // ...a model metadata could claim does not: it fails at the layer's
    // size check, before its weights exist (300 MB, within the memory
    // budget, far beyond the file's few dozen values).
    let e = checkpoint::within_file(&path, &entries, || {
        Linear::<f32>::new(784, 100_000, true, &mut ChaCha8Rng::seed_from_u64(0))
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("its metadata describes a model larger than the"),
        "{e}"
    );
    // Sizes whose product overflows are refused too, not wrapped.
    let e = Linear::<f32>::new(
        usize::MAX,
        usize::MAX,
        true,
        &mut ChaCha8Rng::seed_from_u64(0),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("memory budget"), "{e}");
}
