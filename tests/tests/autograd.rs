//! A loss built by plugin code joins the host's autograd graph.

use longrl_core::api::{ComponentContext, LossInputs, LossNormalizer};
use longrl_plugins::PluginSet;
use longrl_tests::plugin_library;
use tch::{Kind, Tensor};

#[test]
fn gradients_flow_through_a_loss_made_in_a_plugin() {
    let set = PluginSet::load(&[plugin_library("longrl-fixture-faulty")]).unwrap();
    let algorithm = set.algorithm("square", &serde_json::json!({}), &ComponentContext::default()).unwrap();

    // A host-side leaf standing in for the policy's log-probs.
    let logprobs = Tensor::from_slice(&[-0.5f32, -1.0, -2.0, -0.25]).reshape([2, 2]).set_requires_grad(true);
    let advantages = Tensor::from_slice(&[1.0f32, -2.0]);
    let mask = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 0.0]).reshape([2, 2]);
    let inputs = LossInputs {
        logprobs: logprobs.shallow_clone(),
        old_logprobs: logprobs.detach(),
        ref_logprobs: None,
        entropy: None,
        advantages: advantages.shallow_clone(),
        mask: mask.shallow_clone(),
        normalizer: LossNormalizer { tokens: 3.0, sequences: 2.0, max_response_len: 2.0 },
    };
    let out = algorithm.loss(&inputs).unwrap();
    assert_eq!(out.metrics["tokens"], 3.0);
    // loss = (1*(0.25 + 1) + -2*(4)) / 3
    let loss = f64::try_from(&out.loss).unwrap();
    assert!((loss - (1.25 - 8.0) / 3.0).abs() < 1e-6, "{loss}");

    out.loss.backward();
    // d/dx (a * m * x^2 / N) = 2 a m x / N
    let expected = (&logprobs.detach() * 2.0 * advantages.unsqueeze(1) * &mask) / 3.0;
    let grad = logprobs.grad();
    let diff = f64::try_from((grad - expected).abs().max()).unwrap();
    assert!(diff < 1e-6, "gradient differs by {diff}");
    assert_eq!(out.loss.kind(), Kind::Float);
}
