//! `#[derive(Module)]`: names as PyTorch's attributes and `nn.ModuleList`,
//! the attributes that rename and skip, and train / eval reaching every child.

use deepgen_nn::prelude::*;
use deepgen_nn::{BatchNorm, BatchNormConfig, Linear, Sequential, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A model as a user would write it: children, a list, a renamed field, a
/// learnable scalar, and plain settings.
#[derive(Module)]
struct Net {
    encoder: Sequential,
    blocks: Vec<Linear>,
    #[module(rename = "head")]
    output: Linear,
    scale: Var,
    #[module(skip)]
    _name: &'static str,
    depth: usize,
}

fn net() -> Net {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    Net {
        encoder: Sequential::new()
            .add(Linear::new(3, 4, true, &mut rng).unwrap())
            .add(BatchNorm::new1d(4, BatchNormConfig::default())),
        blocks: (0..2)
            .map(|_| Linear::new(4, 4, false, &mut rng).unwrap())
            .collect(),
        output: Linear::new(4, 2, true, &mut rng).unwrap(),
        scale: Var::parameter(Tensor::ones(&[1])),
        _name: "net",
        depth: 2,
    }
}

impl Forward for Net {
    fn forward(&self, x: &Var) -> deepgen_nn::Result<Var> {
        let mut h = self.encoder.forward(x)?;
        for b in &self.blocks {
            h = b.forward(&h)?.relu();
        }
        Ok(self.output.forward(&h)?.mul(&self.scale)?)
    }
}

#[test]
fn derived_names_follow_pytorchs_attribute_and_module_list_names() {
    let mut names = Vec::new();
    net().visit(&mut |name, _| names.push(name.to_string()));
    assert_eq!(
        names,
        [
            "encoder.0.weight",
            "encoder.0.bias",
            "encoder.1.weight",
            "encoder.1.bias",
            "encoder.1.running_mean",
            "encoder.1.running_var",
            "encoder.1.num_batches_tracked",
            "blocks.0.weight",
            "blocks.1.weight",
            "head.weight",
            "head.bias",
            "scale",
        ]
    );
    let n = net();
    assert_eq!(n.depth, 2);
    // Buffers and counters are state, not parameters.
    assert_eq!(n.parameters().len(), 9);
}

#[test]
fn eval_on_a_derived_model_reaches_the_batch_norm_inside_a_child() {
    let n = net();
    let x = Var::constant(Tensor::from_vec((0..12).map(|v| v as f32).collect(), &[4, 3]).unwrap());
    let running = |n: &Net| {
        let mut v = Vec::new();
        n.visit(&mut |name, slot| {
            if let (true, deepgen_nn::Slot::Buffer(b)) = (name == "encoder.1.running_mean", slot) {
                v = b.value().to_vec();
            }
        });
        v
    };
    n.forward(&x).unwrap();
    let after_train = running(&n);
    assert_ne!(
        after_train,
        vec![0.0; 4],
        "training updates the running mean"
    );
    n.eval();
    let y1 = n.forward(&x).unwrap().value().to_vec();
    assert_eq!(
        running(&n),
        after_train,
        "eval mode leaves the statistics alone"
    );
    // One row alone normalises with the running statistics in eval mode
    // (training mode would refuse a batch of one).
    let row = Var::constant(Tensor::from_vec(vec![0.0, 1.0, 2.0], &[1, 3]).unwrap());
    assert_eq!(n.forward(&row).unwrap().value().to_vec(), y1[..2].to_vec());
    n.train();
    assert!(n.forward(&row).is_err(), "back in training mode");
}
