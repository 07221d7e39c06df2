//! deepgen's 28x28 DCGAN checkpoints load into the same nets written in
//! PyTorch (`nn.Sequential` named `net`) with strict=True and give the same
//! outputs: tests/fixtures/check_torch_dcgan.py checks it when python3 has
//! torch and safetensors; without them the test says so and passes.

use std::path::PathBuf;
use std::process::Command;

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_gan::{
    save_net, DcganConfig, DcganDiscriminator, DcganGenerator, Discriminator, Generator,
};
use deepgen_nn::checkpoint::{self, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn python_has_torch() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, safetensors"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn dcgan_checkpoints_load_into_pytorch_with_the_same_outputs() {
    // Width 32: channel counts in blocks of 32, so the direct f32 conv
    // kernels run (D's second layer, G's transposed convolutions).
    let config = DcganConfig {
        width: 32,
        latent: 12,
        ..Default::default()
    };
    let g: DcganGenerator = DcganGenerator::new(&config, 3).unwrap();
    let d: DcganDiscriminator = DcganDiscriminator::new(&config, 4).unwrap();
    let dir = std::env::temp_dir().join(format!("deepgen-torch-dcgan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    save_net(&g, &g.spec(), &dir.join("generator.safetensors")).unwrap();
    save_net(&d, &d.spec(), &dir.join("discriminator.safetensors")).unwrap();
    let z = Tensor::randn(&[6, 12], 0.0, 1.0, &mut ChaCha8Rng::seed_from_u64(5));
    // Train mode (batch statistics), as the training loop runs both nets;
    // the state dicts were saved before, so running statistics match.
    let (x, logits) = no_grad(|| {
        let x = g.generate(&Var::constant(z.clone()), None).unwrap();
        let logits = d.score(&x, None).unwrap();
        (x.value(), logits.value())
    });
    let io = [
        ("z".to_string(), TensorData::F32(z)),
        ("x".to_string(), TensorData::F32(x)),
        ("logits".to_string(), TensorData::F32(logits)),
    ];
    checkpoint::save_tensors(&dir.join("io.safetensors"), &io, None).unwrap();
    if !python_has_torch() {
        std::fs::remove_dir_all(&dir).unwrap();
        eprintln!("note: python3 with torch and safetensors not found; PyTorch side skipped");
        return;
    }
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check_torch_dcgan.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .args(["32", "12"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{}", stdout.trim_end());
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
