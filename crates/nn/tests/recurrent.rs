//! GRU and LSTM: PyTorch's state-dict names and shapes, padding that does
//! not change the real tokens' results, layouts, and bad input. (Outputs
//! and gradients against PyTorch: torch_fixtures.rs; derivatives of both
//! orders: the gradient-check table.)

use deepgen_nn::prelude::*;

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(3)
}

fn config(layers: usize, bidirectional: bool, batch_first: bool) -> RnnConfig {
    RnnConfig {
        num_layers: layers,
        bidirectional,
        batch_first,
        ..Default::default()
    }
}

#[test]
fn state_dict_names_and_shapes_are_pytorchs() {
    let gru = Gru::<f32>::new(5, 4, config(2, true, false), &mut rng()).unwrap();
    let names: Vec<(String, Vec<usize>)> = gru
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.shape()))
        .collect();
    let want = |l: usize, rev: &str, inputs: usize| {
        vec![
            (format!("weight_ih_l{l}{rev}"), vec![12, inputs]),
            (format!("weight_hh_l{l}{rev}"), vec![12, 4]),
            (format!("bias_ih_l{l}{rev}"), vec![12]),
            (format!("bias_hh_l{l}{rev}"), vec![12]),
        ]
    };
    let expected: Vec<_> = [
        want(0, "", 5),
        want(0, "_reverse", 5),
        want(1, "", 8),
        want(1, "_reverse", 8),
    ]
    .concat();
    assert_eq!(names, expected);
    let lstm = Lstm::<f32>::new(
        3,
        2,
        RnnConfig {
            bias: false,
            ..Default::default()
        },
        &mut rng(),
    )
    .unwrap();
    let names: Vec<(String, Vec<usize>)> = lstm
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.shape()))
        .collect();
    assert_eq!(
        names,
        [
            ("weight_ih_l0".to_string(), vec![8, 3]),
            ("weight_hh_l0".to_string(), vec![8, 2])
        ]
    );
    // PyTorch's initialisation: U(-1/sqrt(hidden), 1/sqrt(hidden)).
    for (_, p) in gru.named_parameters() {
        assert!(p.value().to_vec().iter().all(|v| v.abs() <= 0.5));
    }
}

/// Runs `net` on one padded batch and on each sequence alone; the real
/// tokens' outputs and the final states must agree.
fn padding_does_not_change_real_tokens(lstm: bool) {
    let lengths = [5usize, 3, 1];
    let (b, t, n, h) = (3, 5, 4, 3);
    let cfg = config(2, true, true);
    let (gru, lstm_net) = (
        Gru::<f64>::new(n, h, cfg, &mut rng()).unwrap(),
        Lstm::<f64>::new(n, h, cfg, &mut rng()).unwrap(),
    );
    let run = |x: &Var<f64>, lens: Option<&[usize]>| match lstm {
        true => lstm_net.forward_with(x, None, lens).unwrap(),
        false => gru.forward_with(x, None, lens).unwrap(),
    };
    // Padding of random values, not zeros: it must be ignored, not harmless.
    let x = Tensor::<f64>::randn(&[b, t, n], 0.0, 1.0, &mut rng());
    let (out, state) = run(&Var::constant(x.clone()), Some(&lengths));
    let out = out.value();
    for (i, &len) in lengths.iter().enumerate() {
        let alone = Var::constant(
            x.narrow(0, i, 1)
                .unwrap()
                .narrow(1, 0, len)
                .unwrap()
                .contiguous(),
        );
        let (o, s) = run(&alone, None);
        let got = out
            .narrow(0, i, 1)
            .unwrap()
            .narrow(1, 0, len)
            .unwrap()
            .to_vec();
        let diff = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max)
        };
        assert!(
            diff(&got, &o.value().to_vec()) < 1e-12,
            "sequence {i}: outputs differ"
        );
        // Past its end a sequence's outputs are zero.
        let rest = out
            .narrow(0, i, 1)
            .unwrap()
            .narrow(1, len, t - len)
            .unwrap()
            .to_vec();
        assert!(
            rest.iter().all(|&v| v == 0.0),
            "sequence {i}: padding output {rest:?}"
        );
        let mut finals = vec![(state.h.value(), s.h.value())];
        if let (Some(c), Some(c1)) = (&state.c, &s.c) {
            finals.push((c.value(), c1.value()));
        }
        for (batch, one) in finals {
            let mine = batch.narrow(1, i, 1).unwrap().to_vec();
            assert!(
                diff(&mine, &one.to_vec()) < 1e-12,
                "sequence {i}: final state differs"
            );
        }
    }
}

#[test]
fn gru_padding_does_not_change_the_real_tokens() {
    padding_does_not_change_real_tokens(false);
}

#[test]
fn lstm_padding_does_not_change_the_real_tokens() {
    padding_does_not_change_real_tokens(true);
}

#[test]
fn batch_first_is_the_same_computation_transposed() {
    let x = Tensor::<f64>::randn(&[4, 2, 3], 0.0, 1.0, &mut rng());
    let time_major = Lstm::<f64>::new(3, 5, config(2, false, false), &mut rng()).unwrap();
    let batch_first = Lstm::<f64>::new(3, 5, config(2, false, true), &mut rng()).unwrap();
    let a = time_major
        .forward(&Var::constant(x.clone()))
        .unwrap()
        .value();
    let xt = x.transpose(0, 1).unwrap().contiguous();
    let b = batch_first.forward(&Var::constant(xt)).unwrap().value();
    assert_eq!(a.shape(), [4, 2, 5]);
    assert_eq!(b.transpose(0, 1).unwrap().contiguous().to_vec(), a.to_vec());
}

#[test]
fn a_given_initial_state_is_used_and_dropout_is_off_in_eval() {
    let cfg = RnnConfig {
        num_layers: 2,
        dropout: 0.5,
        ..Default::default()
    };
    let gru = Gru::<f64>::new(2, 3, cfg, &mut rng()).unwrap();
    let x = Var::constant(Tensor::randn(&[4, 2, 2], 0.0, 1.0, &mut rng()));
    gru.eval();
    let (a, _) = gru.forward_with(&x, None, None).unwrap();
    let (b, _) = gru.forward_with(&x, None, None).unwrap();
    assert_eq!(a.value().to_vec(), b.value().to_vec(), "eval: no dropout");
    let h0 = RnnState {
        h: Var::constant(Tensor::ones(&[2, 2, 3])),
        c: None,
    };
    let (c, _) = gru.forward_with(&x, Some(&h0), None).unwrap();
    assert_ne!(
        a.value().to_vec(),
        c.value().to_vec(),
        "the initial state matters"
    );
    gru.train();
    let (d, _) = gru.forward_with(&x, None, None).unwrap();
    assert_ne!(
        a.value().to_vec(),
        d.value().to_vec(),
        "training: dropout between layers"
    );
}

#[test]
fn bad_input_is_an_error_naming_the_shape() {
    let lstm = Lstm::<f32>::new(3, 2, RnnConfig::default(), &mut rng()).unwrap();
    let x = Var::constant(Tensor::zeros(&[4, 2, 3]));
    let err = |r: deepgen_nn::Result<(Var, RnnState)>| r.err().expect("an error").to_string();
    let e = err(lstm.forward_with(&Var::constant(Tensor::zeros(&[4, 2, 5])), None, None));
    assert!(
        e.contains("[time, batch, 3]") && e.contains("[4, 2, 5]"),
        "{e}"
    );
    let e = err(lstm.forward_with(&x, None, Some(&[4, 0])));
    assert!(e.contains("lengths [4, 0]"), "{e}");
    assert!(lstm.forward_with(&x, None, Some(&[5, 1])).is_err());
    let gru_state = RnnState {
        h: Var::constant(Tensor::zeros(&[1, 2, 2])),
        c: None,
    };
    let e = err(lstm.forward_with(&x, Some(&gru_state), None));
    assert!(e.contains("h and c"), "{e}");
    assert!(Gru::<f32>::new(0, 2, RnnConfig::default(), &mut rng()).is_err());
}
