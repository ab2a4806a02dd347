//! AdamW (decoupled weight decay, PyTorch's `torch.optim.AdamW` semantics) over the policy's
//! parameter tensors, with gradient clipping by global norm. State (m, v, step) saves to
//! safetensors so a resumed run continues bit for bit.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use tch::{Kind, Tensor};

use longrl_config::OptimConfig;

pub struct AdamW {
    params: Vec<(String, Tensor)>,
    /// First and second moments, by parameter name, in float32 whatever the parameter dtype.
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Optimizer steps taken (bias correction uses it).
    step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    /// `params` share storage and `.grad` with the model (as `Policy::parameters` returns them).
    pub fn new(params: Vec<(String, Tensor)>, optim: &OptimConfig) -> anyhow::Result<Self> {
        let _guard = tch::no_grad_guard();
        let mut m = Vec::with_capacity(params.len());
        let mut v = Vec::with_capacity(params.len());
        for (name, p) in &params {
            let zeros =
                p.f_zeros_like()?.f_to_kind(Kind::Float).with_context(|| format!("optimizer state of `{name}`"))?;
            m.push(zeros.f_zeros_like()?);
            v.push(zeros);
        }
        Ok(AdamW {
            params,
            m,
            v,
            step: 0,
            beta1: optim.beta1,
            beta2: optim.beta2,
            eps: optim.eps,
            weight_decay: optim.weight_decay,
        })
    }

    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Clear every gradient (before a new accumulation).
    pub fn zero_grad(&mut self) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        for (_, p) in &mut self.params {
            let grad = p.grad();
            if grad.defined() {
                let mut grad = grad;
                let _ = grad.f_zero_()?;
            }
        }
        Ok(())
    }

    /// L2 norm of all gradients together (missing gradients count as zero).
    pub fn grad_norm(&self) -> anyhow::Result<f64> {
        let _guard = tch::no_grad_guard();
        let mut total = 0.0f64;
        for (_, p) in &self.params {
            let grad = p.grad();
            if grad.defined() {
                total += grad.f_to_kind(Kind::Double)?.f_square()?.f_sum(Kind::Double)?.f_double_value(&[])?;
            }
        }
        Ok(total.sqrt())
    }

    /// Scale gradients so their global norm is at most `max_norm` (as `clip_grad_norm_`, which
    /// multiplies by `max_norm / (norm + 1e-6)` when that is below 1). Returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> anyhow::Result<f64> {
        let norm = self.grad_norm()?;
        if !norm.is_finite() {
            anyhow::bail!("gradient norm is {norm}: the loss produced non-finite gradients");
        }
        if max_norm > 0.0 {
            let coef = max_norm / (norm + 1e-6);
            if coef < 1.0 {
                let _guard = tch::no_grad_guard();
                for (_, p) in &self.params {
                    let mut grad = p.grad();
                    if grad.defined() {
                        let _ = grad.f_mul_scalar_(coef)?;
                    }
                }
            }
        }
        Ok(norm)
    }

    /// One AdamW update at learning rate `lr`. Parameters without a gradient are left alone.
    pub fn step(&mut self, lr: f64) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let t = self.step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2 = 1.0 - self.beta2.powi(t);
        for (i, (name, p)) in self.params.iter_mut().enumerate() {
            let grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let mut update = || -> anyhow::Result<()> {
                let g = grad.f_to_kind(Kind::Float)?;
                // m = b1 m + (1 - b1) g ; v = b2 v + (1 - b2) g^2
                let _ = self.m[i].f_mul_scalar_(self.beta1)?;
                let _ = self.m[i].f_add_(&g.f_mul_scalar(1.0 - self.beta1)?)?;
                let _ = self.v[i].f_mul_scalar_(self.beta2)?;
                let _ = self.v[i].f_add_(&g.f_square()?.f_mul_scalar(1.0 - self.beta2)?)?;
                // p = p (1 - lr wd) - lr * (m / bias1) / (sqrt(v / bias2) + eps)
                let denom = self.v[i].f_div_scalar(bias2)?.f_sqrt()?.f_add_scalar(self.eps)?;
                let delta = self.m[i].f_div(&denom)?.f_mul_scalar(lr / bias1)?;
                let p_kind = p.kind();
                let mut new = p.f_to_kind(Kind::Float)?;
                if self.weight_decay != 0.0 {
                    let _ = new.f_mul_scalar_(1.0 - lr * self.weight_decay)?;
                }
                let _ = new.f_sub_(&delta)?;
                let _ = p.f_copy_(&new.f_to_kind(p_kind)?)?;
                Ok(())
            };
            update().with_context(|| format!("AdamW step of parameter `{name}`"))?;
        }
        Ok(())
    }

    /// Moments as named tensors (`m.<param>`, `v.<param>`) for a checkpoint.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut named: Vec<(String, &Tensor)> = Vec::with_capacity(self.params.len() * 2);
        for (i, (name, _)) in self.params.iter().enumerate() {
            named.push((format!("m.{name}"), &self.m[i]));
            named.push((format!("v.{name}"), &self.v[i]));
        }
        Tensor::write_safetensors(&named, path).with_context(|| format!("writing optimizer state {}", path.display()))
    }

    /// Restore moments saved by [`AdamW::save`] and the step count (kept in the trainer's counters).
    pub fn load(&mut self, path: &Path, steps_taken: u64) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        let saved: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
            .with_context(|| format!("reading optimizer state {}", path.display()))?
            .into_iter()
            .collect();
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{prefix}.{name}");
                let t =
                    saved.get(&key).with_context(|| format!("optimizer state {} has no `{key}`", path.display()))?;
                if t.size() != p.size() {
                    anyhow::bail!(
                        "optimizer state {}: `{key}` has shape {:?}, parameter has {:?}",
                        path.display(),
                        t.size(),
                        p.size()
                    );
                }
                let _ = slot.f_copy_(t)?;
            }
        }
        self.step = steps_taken;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use longrl_config::LrSchedule;

    fn optim(weight_decay: f64) -> OptimConfig {
        OptimConfig {
            lr: 0.1,
            warmup_steps: 0,
            schedule: LrSchedule::Constant,
            min_lr_ratio: 0.0,
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            grad_clip: 0.0,
        }
    }

    fn param(values: &[f32]) -> Tensor {
        Tensor::from_slice(values).set_requires_grad(true)
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.detach()).unwrap()
    }

    /// Hand-computed: with g constant, step 1 moves each weight by lr * sign(g) (m̂ = g, v̂ = g²),
    /// after decay p (1 - lr wd).
    #[test]
    fn first_step_matches_hand_computation() {
        let p = param(&[1.0, -2.0]);
        let mut opt = AdamW::new(vec![("w".into(), p.shallow_clone())], &optim(0.5)).unwrap();
        (&p * Tensor::from_slice(&[3.0f32, -0.5])).sum(Kind::Float).backward();
        opt.step(0.1).unwrap();
        let got = values(&p);
        // 1 * (1 - 0.05) - 0.1 * 3/(3 + 1e-8) ; -2 * 0.95 + 0.1
        let want = [0.95 - 0.1 * 3.0 / (3.0 + 1e-8), -1.9 + 0.1 * 0.5 / (0.5 + 1e-8)];
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    /// Second step against the formulas with bias correction, gradients differing per step.
    #[test]
    fn two_steps_follow_the_adamw_recurrence() {
        let p = param(&[0.5]);
        let mut opt = AdamW::new(vec![("w".into(), p.shallow_clone())], &optim(0.01)).unwrap();
        let (lr, b1, b2, eps, wd) = (0.1f64, 0.9f64, 0.999f64, 1e-8f64, 0.01f64);
        let mut w = 0.5f64;
        let (mut m, mut v) = (0.0f64, 0.0f64);
        for (t, scale) in [(1, 2.0f64), (2, -1.0)] {
            opt.zero_grad().unwrap();
            // d/dw (scale * w^2) = 2 scale w
            (&p * &p * scale).sum(Kind::Float).backward();
            let g = 2.0 * scale * w;
            opt.step(lr).unwrap();
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let mhat = m / (1.0 - b1.powi(t));
            let vhat = v / (1.0 - b2.powi(t));
            w = w * (1.0 - lr * wd) - lr * mhat / (vhat.sqrt() + eps);
            assert!((values(&p)[0] as f64 - w).abs() < 1e-6, "step {t}: {} vs {w}", values(&p)[0]);
        }
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let p = param(&[0.0, 0.0]);
        let mut opt = AdamW::new(vec![("w".into(), p.shallow_clone())], &optim(0.0)).unwrap();
        (&p * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float).backward();
        let norm = opt.clip_grad_norm(1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        assert!((opt.grad_norm().unwrap() - 1.0).abs() < 1e-5);
        // Under the limit nothing changes.
        let before = opt.clip_grad_norm(10.0).unwrap();
        assert!((opt.grad_norm().unwrap() - before).abs() < 1e-9);
        opt.zero_grad().unwrap();
        assert_eq!(opt.grad_norm().unwrap(), 0.0);
    }

    #[test]
    fn state_round_trips_and_resumes_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let run = |steps: std::ops::Range<i32>, opt: &mut AdamW, p: &Tensor| {
            for s in steps {
                opt.zero_grad().unwrap();
                (p * p * (s as f64 + 1.0)).sum(Kind::Float).backward();
                opt.step(0.05).unwrap();
            }
        };
        let straight = param(&[1.0, 2.0, 3.0]);
        let mut opt = AdamW::new(vec![("w".into(), straight.shallow_clone())], &optim(0.1)).unwrap();
        run(0..4, &mut opt, &straight);

        let first = param(&[1.0, 2.0, 3.0]);
        let mut opt1 = AdamW::new(vec![("w".into(), first.shallow_clone())], &optim(0.1)).unwrap();
        run(0..2, &mut opt1, &first);
        let path = dir.path().join("optimizer.safetensors");
        opt1.save(&path).unwrap();
        let resumed = param(&values(&first));
        let mut opt2 = AdamW::new(vec![("w".into(), resumed.shallow_clone())], &optim(0.1)).unwrap();
        opt2.load(&path, opt1.steps_taken()).unwrap();
        run(2..4, &mut opt2, &resumed);
        assert_eq!(values(&straight), values(&resumed));
    }
}
