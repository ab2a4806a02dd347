//! AdamW with groups (decay, no decay, an lr multiplier) and global-norm clipping against
//! `torch.optim.AdamW` + `clip_grad_norm_` of the project's PyTorch (`.venv/bin/python`,
//! `tests/oracle/adamw_oracle.py`), for float32 parameters and for bfloat16 parameters with
//! float32 master weights. Skipped, visibly, where the `.venv` is missing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use longrl_optim::{AdamW, AdamWConfig, ParamGroup};
use serde_json::{Value, json};
use tch::{Kind, Tensor};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Deterministic values in [-scale, scale).
fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let x = (seed * 1_000_003 + i).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            (x as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Parameter name -> (group, shape); the bias is the no-decay group with a smaller lr.
const PARAMS: [(&str, usize, &[i64]); 3] = [("w1", 0, &[4, 3]), ("w2", 0, &[5]), ("bias", 1, &[3])];
const GROUPS: [(&str, f64, f64); 2] = [("decay", 1.0, 0.1), ("no_decay", 0.5, 0.0)];
const STEPS: u64 = 8;
const LR: f64 = 1e-2;
const MAX_NORM: f64 = 1.0;

fn round_to(kind: Kind, v: Vec<f32>) -> Vec<f32> {
    Vec::<f32>::try_from(Tensor::from_slice(&v).to_kind(kind).to_kind(Kind::Float)).unwrap()
}

/// Our run of one case: the case for the oracle, then per parameter the master weights
/// (flattened) and the pre-clip norms.
struct Ours {
    kind: Kind,
    case: Value,
    masters: BTreeMap<&'static str, Vec<f64>>,
    norms: Vec<f64>,
}

fn run_ours(kind: Kind) -> Ours {
    // Inputs representable in `kind`, so both sides see the same numbers; gradients of norm
    // 0.3-3, so clipping acts on some steps only.
    let numel = |shape: &[i64]| shape.iter().product::<i64>() as usize;
    let init: BTreeMap<&str, Vec<f32>> =
        PARAMS.iter().enumerate().map(|(i, (n, _, s))| (*n, round_to(kind, values(i as u64, numel(s), 1.0)))).collect();
    let grads: Vec<BTreeMap<&str, Vec<f32>>> = (0..STEPS)
        .map(|step| {
            let scale = [0.1f32, 1.0, 0.3, 0.05][step as usize % 4];
            PARAMS
                .iter()
                .enumerate()
                .map(|(i, (n, _, s))| (*n, round_to(kind, values(100 + step * 10 + i as u64, numel(s), scale))))
                .collect()
        })
        .collect();

    let params: BTreeMap<&str, Tensor> = PARAMS
        .iter()
        .map(|(n, _, s)| (*n, Tensor::from_slice(&init[n]).view(*s).to_kind(kind).set_requires_grad(true)))
        .collect();
    let groups = GROUPS
        .iter()
        .enumerate()
        .map(|(g, (name, lr_scale, weight_decay))| ParamGroup {
            name: name.to_string(),
            params: PARAMS
                .iter()
                .filter(|(_, pg, _)| *pg == g)
                .map(|(n, _, _)| (n.to_string(), params[n].shallow_clone()))
                .collect(),
            lr_scale: *lr_scale,
            weight_decay: *weight_decay,
        })
        .collect();
    let config = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, ..AdamWConfig::default() };
    let mut opt = AdamW::with_groups(groups, &config).unwrap();
    let mut norms = Vec::new();
    for step_grads in &grads {
        opt.zero_grad().unwrap();
        for (n, p) in &params {
            let g = Tensor::from_slice(&step_grads[n]).view(p.size().as_slice()).to_kind(kind);
            (p * g).sum(Kind::Float).backward();
        }
        norms.push(opt.clip_grad_norm(MAX_NORM).unwrap());
        opt.step(LR).unwrap();
    }
    let mut masters = BTreeMap::new();
    for (n, _, s) in PARAMS {
        let master = opt.master(n).unwrap();
        assert_eq!(master.size(), s.to_vec());
        // The model's weights are the cast of the master.
        assert!(params[n].equal(&master.to_kind(kind)), "{kind:?} {n}");
        masters.insert(n, Vec::<f64>::try_from(master.to_kind(Kind::Double).flatten(0, -1)).unwrap());
    }
    let case = json!({
        "groups": GROUPS.iter().enumerate().map(|(g, (_, lr_scale, wd))| json!({
            "lr_scale": lr_scale,
            "weight_decay": wd,
            "params": PARAMS.iter().filter(|(_, pg, _)| *pg == g).map(|(n, _, _)| (n.to_string(), json!(init[n])))
                .collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
        "betas": [config.beta1, config.beta2],
        "eps": config.eps,
        "lr": LR,
        "max_norm": MAX_NORM,
        "grads": grads,
    });
    Ours { kind, case, masters, norms }
}

#[test]
fn adamw_matches_torch() {
    let python = repo_root().join(".venv/bin/python");
    if !python.exists() {
        println!("SKIPPED adamw_matches_torch: no {} (run `cargo xtask setup`)", python.display());
        return;
    }
    let ours: Vec<Ours> = [Kind::Float, Kind::BFloat16].into_iter().map(run_ours).collect();
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<&Value> = ours.iter().map(|o| &o.case).collect();
    std::fs::write(dir.path().join("cases.json"), serde_json::to_string(&cases).unwrap()).unwrap();
    let status = Command::new(&python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/adamw_oracle.py"))
        .arg(dir.path().join("cases.json"))
        .arg(dir.path().join("out.json"))
        .status()
        .unwrap();
    assert!(status.success(), "oracle failed");
    let outs: Vec<Value> = serde_json::from_slice(&std::fs::read(dir.path().join("out.json")).unwrap()).unwrap();

    for (o, out) in ours.iter().zip(&outs) {
        let kind = o.kind;
        let want_norms: Vec<f64> = serde_json::from_value(out["norms"].clone()).unwrap();
        for (got, want) in o.norms.iter().zip(&want_norms) {
            assert!((got - want).abs() <= 1e-6 * want, "{kind:?}: norms {:?} vs {want_norms:?}", o.norms);
        }
        assert!(want_norms.iter().any(|&n| n > MAX_NORM) && want_norms.iter().any(|&n| n < MAX_NORM));
        let mut worst = 0.0f64;
        for (n, got) in &o.masters {
            let want: Vec<f64> = serde_json::from_value(out["params"][n].clone()).unwrap();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                worst = worst.max((g - w).abs());
            }
        }
        println!("{kind:?}: largest difference to torch.optim.AdamW after {STEPS} steps: {worst:.2e}");
        assert!(worst < 2e-6, "{kind:?}: {worst}");
    }
}
