//! AdamW (`torch.optim.AdamW` semantics: decoupled weight decay, bias-corrected moments) with
//! float32 master weights for reduced-precision parameters.
//!
//! A bfloat16 weight of size 0.02 has an ulp of 1.2e-4: an update of lr 2e-6 is below half of it
//! and rounds away, so stepping the bfloat16 tensor directly loses most updates (and all weight
//! decay). Here each bfloat16/float16 group keeps float32 master weights, moments and a float32
//! gradient buffer, flat per group; the step updates the master and writes its cast back into the
//! model's tensors. Float32 parameters are their own master (no copy).
//!
//! Per step: gradients are gathered into the float32 buffers (one foreach copy), their global norm
//! is computed and clipped on the device, the norm is read once (the step's one host
//! synchronisation), then libtorch's fused AdamW kernel runs once per group and one foreach copy
//! casts the masters back. A non-finite norm skips the step (see [`AdamWConfig`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context;
use tch::{Kind, Tensor};

use crate::groups::{GroupLayout, ParamGroup};
use crate::kernels::{self, AdamWHyper};
use crate::state_file::{self, StateFile};

/// The `format` metadata of a state file written by [`AdamW::save`].
const FORMAT: &str = "longrl-adamw";
const FORMAT_VERSION: &str = "1";

/// Settings shared by every group (the group's own are in [`ParamGroup`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Weight decay of the groups [`AdamW::new`] forms.
    pub weight_decay: f64,
    /// [`AdamW::new`] puts parameters of fewer than two dimensions (norm weights, biases) in a
    /// group without weight decay.
    pub no_decay_for_vectors: bool,
    /// A step whose global gradient norm is not finite is skipped: no parameter, moment or step
    /// count changes, and [`AdamW::skipped_steps`] counts it (verl and Megatron skip the same
    /// way; one overflowing mini-batch should not end a long run). After this many skipped steps
    /// in a row the step fails instead: gradients that stay non-finite are a bug, not noise.
    /// 0 fails at the first one.
    pub max_consecutive_nonfinite: u32,
}

impl Default for AdamWConfig {
    /// verl's actor optimizer: betas (0.9, 0.999), eps 1e-8, weight decay 0.01 on every parameter.
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            no_decay_for_vectors: false,
            max_consecutive_nonfinite: 5,
        }
    }
}

/// Bytes of optimizer state per parameter element of dtype `kind`, for memory plans: float32
/// moments (8), and for bfloat16/float16 also the float32 master weight and gradient copy (8).
pub fn state_bytes_per_element(kind: Kind) -> u64 {
    match kind {
        Kind::BFloat16 | Kind::Half => 16,
        _ => 8,
    }
}

/// What [`AdamW::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Applied,
    /// The global gradient norm was not finite; nothing changed.
    SkippedNonFinite,
}

/// Float32 master weights of a reduced-precision group and the float32 copy of its gradients, flat.
struct Master {
    weights: Tensor,
    grad: Tensor,
    weight_views: Vec<Tensor>,
    grad_views: Vec<Tensor>,
}

struct GroupState {
    name: String,
    lr_scale: f64,
    weight_decay: f64,
    layout: GroupLayout,
    /// The model's tensors, in layout order.
    params: Vec<Tensor>,
    kind: Kind,
    /// Flat float32 moments and their per-parameter views.
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    exp_avg_views: Vec<Tensor>,
    exp_avg_sq_views: Vec<Tensor>,
    /// `None` for float32 groups: the parameters are the master weights.
    master: Option<Master>,
    /// The step number as a float32 0-dim tensor on the group's device (the fused kernel reads it there).
    step: Tensor,
}

/// Gradients gathered for the coming step, and their norm once computed.
struct Pending {
    /// Per float32 group, each parameter's gradient (zeros where it has none).
    direct_grads: Vec<Vec<Tensor>>,
    norm: Option<f64>,
}

pub struct AdamW {
    groups: Vec<GroupState>,
    config: AdamWConfig,
    step: u64,
    skipped: u64,
    consecutive_skipped: u32,
    pending: Option<Pending>,
    /// Whether parameters without a gradient were reported already (once per optimizer).
    reported_missing: bool,
}

fn needs_master(kind: Kind) -> anyhow::Result<bool> {
    match kind {
        Kind::BFloat16 | Kind::Half => Ok(true),
        Kind::Float => Ok(false),
        other => anyhow::bail!("dtype {other:?} is not supported (float32, bfloat16 or float16)"),
    }
}

impl GroupState {
    fn new(group: ParamGroup) -> anyhow::Result<GroupState> {
        let ParamGroup { name, params, lr_scale, weight_decay } = group;
        let what = || format!("parameter group `{name}`");
        let (first_name, first) = params.first().with_context(|| format!("{}: no parameters", what()))?;
        if !(lr_scale.is_finite() && lr_scale >= 0.0 && weight_decay.is_finite() && weight_decay >= 0.0) {
            anyhow::bail!("{}: lr_scale {lr_scale} and weight_decay {weight_decay} must be >= 0", what());
        }
        let (kind, device) = (first.kind(), first.device());
        let master = needs_master(kind).with_context(|| format!("{}, parameter `{first_name}`", what()))?;
        for (n, p) in &params {
            if !(p.requires_grad() && p.f_is_leaf()?) {
                anyhow::bail!(
                    "{}: `{n}` is not a leaf tensor that requires grad, so backward never fills its gradient \
                     (pass the model's trainable parameters themselves)",
                    what()
                );
            }
            if (p.kind(), p.device()) != (kind, device) {
                anyhow::bail!(
                    "{}: `{n}` is {:?} on {:?} but `{first_name}` is {kind:?} on {device:?}; a group holds one \
                     dtype on one device (give the others a group of their own)",
                    what(),
                    p.kind(),
                    p.device()
                );
            }
        }
        let layout = GroupLayout::new(params.iter().map(|(n, p)| (n.clone(), p.size())));
        let params: Vec<Tensor> = params.into_iter().map(|(_, p)| p).collect();
        let zeros = || Tensor::f_zeros([layout.numel()], (Kind::Float, device));
        let allocate = || -> anyhow::Result<(Tensor, Tensor, Option<Master>, Tensor)> {
            let _guard = tch::no_grad_guard();
            let master = if master {
                let (weights, grad) = (zeros()?, zeros()?);
                let m =
                    Master { weight_views: layout.views(&weights)?, grad_views: layout.views(&grad)?, weights, grad };
                kernels::foreach_copy(&m.weight_views.iter().collect::<Vec<_>>(), &params.iter().collect::<Vec<_>>())?;
                Some(m)
            } else {
                None
            };
            Ok((zeros()?, zeros()?, master, Tensor::f_zeros([], (Kind::Float, device))?))
        };
        let (exp_avg, exp_avg_sq, master, step) =
            allocate().with_context(|| format!("allocating the optimizer state of {}", what()))?;
        Ok(GroupState {
            exp_avg_views: layout.views(&exp_avg)?,
            exp_avg_sq_views: layout.views(&exp_avg_sq)?,
            exp_avg,
            exp_avg_sq,
            master,
            step,
            name,
            lr_scale,
            weight_decay,
            layout,
            params,
            kind,
        })
    }

    /// The float32 weights the optimizer updates: the master views, or the parameters themselves.
    fn weights(&self) -> &[Tensor] {
        self.master.as_ref().map_or(&self.params, |m| &m.weight_views)
    }

    fn state_tensors(&self) -> impl Iterator<Item = (String, &Tensor)> {
        let names = self.layout.names();
        let masters = self.master.as_ref().map(|m| &m.weight_views);
        (0..names.len()).flat_map(move |i| {
            [("exp_avg", Some(&self.exp_avg_views[i])), ("exp_avg_sq", Some(&self.exp_avg_sq_views[i]))]
                .into_iter()
                .chain(std::iter::once(("master", masters.map(|m| &m[i]))))
                .filter_map(move |(prefix, t)| Some((format!("{prefix}.{}", names[i]), t?)))
        })
    }
}

impl AdamW {
    /// One group of every parameter (two, decay and no decay, with
    /// [`AdamWConfig::no_decay_for_vectors`]), each split further by dtype and device where the
    /// parameters mix them. `params` share storage and `.grad` with the model.
    pub fn new(params: Vec<(String, Tensor)>, config: &AdamWConfig) -> anyhow::Result<AdamW> {
        let groups = if config.no_decay_for_vectors {
            ParamGroup::split_decay(params, config.weight_decay)
        } else {
            vec![ParamGroup::all(params, config.weight_decay)]
        };
        let mut split = Vec::new();
        for group in groups {
            let mut by_type: BTreeMap<String, Vec<(String, Tensor)>> = BTreeMap::new();
            for (n, p) in group.params {
                by_type.entry(format!("{:?}.{:?}", p.kind(), p.device())).or_default().push((n, p));
            }
            let several = by_type.len() > 1;
            for (suffix, params) in by_type {
                let name = if several { format!("{}.{suffix}", group.name) } else { group.name.clone() };
                split.push(ParamGroup { name, params, lr_scale: group.lr_scale, weight_decay: group.weight_decay });
            }
        }
        AdamW::with_groups(split, config)
    }

    /// Groups as given: each holds one dtype on one device; parameter and group names are unique.
    pub fn with_groups(groups: Vec<ParamGroup>, config: &AdamWConfig) -> anyhow::Result<AdamW> {
        let c = config;
        if !(0.0..1.0).contains(&c.beta1) || !(0.0..1.0).contains(&c.beta2) || c.eps.is_nan() || c.eps <= 0.0 {
            anyhow::bail!("AdamW: betas ({}, {}) must be in [0, 1) and eps ({}) > 0", c.beta1, c.beta2, c.eps);
        }
        let (mut group_names, mut param_names) = (BTreeSet::new(), BTreeSet::new());
        for g in &groups {
            if !group_names.insert(g.name.clone()) {
                anyhow::bail!("two parameter groups are named `{}`", g.name);
            }
            for (n, _) in &g.params {
                if !param_names.insert(n.clone()) {
                    anyhow::bail!("parameter `{n}` is listed twice (group `{}` and an earlier one)", g.name);
                }
            }
        }
        let groups = groups.into_iter().map(GroupState::new).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(AdamW {
            groups,
            config: config.clone(),
            step: 0,
            skipped: 0,
            consecutive_skipped: 0,
            pending: None,
            reported_missing: false,
        })
    }

    /// Optimizer steps applied (bias correction uses it); skipped steps do not count.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Steps skipped for a non-finite gradient norm since this optimizer was made or loaded.
    pub fn skipped_steps(&self) -> u64 {
        self.skipped
    }

    /// Bytes of optimizer state: moments, master weights and float32 gradient copies.
    pub fn state_bytes(&self) -> u64 {
        self.groups.iter().map(|g| g.layout.numel() as u64 * state_bytes_per_element(g.kind)).sum()
    }

    /// Each group's name and flat layout, in order.
    pub fn group_layouts(&self) -> impl Iterator<Item = (&str, &GroupLayout)> {
        self.groups.iter().map(|g| (g.name.as_str(), &g.layout))
    }

    /// The float32 weights the optimizer updates for parameter `name`: its master copy for a
    /// reduced-precision parameter, the parameter itself for a float32 one.
    pub fn master(&self, name: &str) -> Option<Tensor> {
        self.groups.iter().find_map(|g| {
            let i = g.layout.names().iter().position(|n| n == name)?;
            Some(g.weights()[i].shallow_clone())
        })
    }

    /// Clears every gradient (before a new accumulation).
    pub fn zero_grad(&mut self) -> anyhow::Result<()> {
        self.pending = None;
        let grads: Vec<Tensor> =
            self.groups.iter().flat_map(|g| g.params.iter().map(Tensor::grad)).filter(Tensor::defined).collect();
        kernels::foreach_zero(&grads.iter().collect::<Vec<_>>()).context("clearing gradients")
    }

    /// Gathers the gradients for the coming step (once): reduced-precision groups' into their
    /// float32 buffers, float32 groups' by reference. A parameter without a gradient counts as
    /// zero (as in DeepSpeed's and FSDP's flat buffers), so every group steps as one block.
    fn gather(&mut self) -> anyhow::Result<&mut Pending> {
        if self.pending.is_none() {
            let _guard = tch::no_grad_guard();
            let (mut dst, mut src) = (Vec::new(), Vec::new());
            let (mut direct_grads, mut missing) = (Vec::new(), Vec::new());
            for g in &self.groups {
                let mut direct = Vec::new();
                for (i, p) in g.params.iter().enumerate() {
                    let grad = p.grad();
                    if !grad.defined() {
                        missing.push(g.layout.names()[i].as_str());
                    }
                    match (&g.master, grad.defined()) {
                        (Some(m), true) => {
                            dst.push(&m.grad_views[i]);
                            src.push(grad);
                        }
                        (Some(m), false) => {
                            let _ = m.grad_views[i].shallow_clone().f_zero_()?;
                        }
                        (None, true) => direct.push(grad),
                        (None, false) => direct.push(p.f_zeros_like()?),
                    }
                }
                if g.master.is_none() {
                    direct_grads.push(direct);
                }
            }
            if !missing.is_empty() && !self.reported_missing {
                tracing::warn!(
                    count = missing.len(),
                    first = %missing.iter().take(5).copied().collect::<Vec<_>>().join(", "),
                    "parameters without a gradient step with a zero gradient (reported once)"
                );
                self.reported_missing = true;
            }
            kernels::foreach_copy(&dst, &src.iter().collect::<Vec<_>>()).context("gathering gradients")?;
            self.pending = Some(Pending { direct_grads, norm: None });
        }
        Ok(self.pending.as_mut().expect("gathered above"))
    }

    /// The float32 gradients the step uses, all groups together.
    fn step_grads(&self) -> Vec<&Tensor> {
        let pending = self.pending.as_ref().expect("gradients gathered");
        let mut direct = pending.direct_grads.iter();
        let mut out = Vec::new();
        for g in &self.groups {
            match &g.master {
                Some(m) => out.push(&m.grad),
                None => out.extend(direct.next().expect("one list per float32 group")),
            }
        }
        out
    }

    /// Global L2 norm of the gradients (accumulated in float32), then scaled so it is at most
    /// `max_norm` (`clip_grad_norm_`: by `max_norm / (norm + 1e-6)` when that is below 1; 0: no
    /// clipping). Returns the norm before clipping; it is the step's one read from the device.
    /// Float32 parameters' gradients are scaled in place; reduced-precision parameters' are left
    /// as they are and their float32 copies scaled.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> anyhow::Result<f64> {
        let _guard = tch::no_grad_guard();
        self.gather()?;
        let grads = self.step_grads();
        let total = kernels::global_norm(&grads)?;
        if max_norm > 0.0 {
            kernels::clip(&grads, &total, max_norm)?;
        }
        let norm = total.f_double_value(&[]).context("reading the gradient norm")?;
        self.pending.as_mut().expect("gathered").norm = Some(norm);
        Ok(norm)
    }

    /// Global L2 norm of the gradients as they are now (no clipping).
    pub fn grad_norm(&mut self) -> anyhow::Result<f64> {
        self.clip_grad_norm(0.0)
    }

    /// One AdamW update at learning rate `lr` (times each group's `lr_scale`), on the gradients
    /// accumulated since [`AdamW::zero_grad`] (clipped if [`AdamW::clip_grad_norm`] ran).
    pub fn step(&mut self, lr: f64) -> anyhow::Result<StepOutcome> {
        if !(lr.is_finite() && lr >= 0.0) {
            anyhow::bail!("AdamW step: learning rate {lr} must be finite and >= 0");
        }
        let norm = match self.pending.as_ref().and_then(|p| p.norm) {
            Some(norm) => norm,
            None => self.grad_norm()?,
        };
        if !norm.is_finite() {
            self.pending = None;
            self.skipped += 1;
            self.consecutive_skipped += 1;
            if self.consecutive_skipped > self.config.max_consecutive_nonfinite {
                anyhow::bail!(
                    "gradient norm is {norm} in {} optimizer steps in a row (limit {}): the loss keeps producing \
                     non-finite gradients (learning rate too high, or a bug in the loss)",
                    self.consecutive_skipped,
                    self.config.max_consecutive_nonfinite
                );
            }
            tracing::warn!(
                norm,
                step = self.step + 1,
                skipped = self.skipped,
                "non-finite gradient norm: step skipped"
            );
            return Ok(StepOutcome::SkippedNonFinite);
        }
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let grads = self.step_grads();
        let mut grads = grads.into_iter();
        for g in &self.groups {
            let mut step = g.step.shallow_clone();
            let _ = step.f_fill_(self.step as f64)?;
            let h = AdamWHyper {
                lr: lr * g.lr_scale,
                beta1: self.config.beta1,
                beta2: self.config.beta2,
                weight_decay: g.weight_decay,
                eps: self.config.eps,
            };
            let mut update = || -> anyhow::Result<()> {
                match &g.master {
                    Some(m) => {
                        let _ = grads.next();
                        kernels::fused_adamw(&[&m.weights], &[&m.grad], &[&g.exp_avg], &[&g.exp_avg_sq], &step, h)
                    }
                    None => {
                        let n = g.params.len();
                        let group_grads: Vec<&Tensor> = grads.by_ref().take(n).collect();
                        kernels::fused_adamw(
                            &g.params.iter().collect::<Vec<_>>(),
                            &group_grads,
                            &g.exp_avg_views.iter().collect::<Vec<_>>(),
                            &g.exp_avg_sq_views.iter().collect::<Vec<_>>(),
                            &step,
                            h,
                        )
                    }
                }
            };
            update().with_context(|| format!("parameter group `{}` ({:?})", g.name, g.kind))?;
        }
        self.write_back()?;
        self.pending = None;
        self.consecutive_skipped = 0;
        Ok(StepOutcome::Applied)
    }

    /// Casts every master into its parameter (one foreach copy).
    fn write_back(&self) -> anyhow::Result<()> {
        let (params, masters): (Vec<&Tensor>, Vec<&Tensor>) = self
            .groups
            .iter()
            .filter_map(|g| Some(g.params.iter().zip(&g.master.as_ref()?.weight_views)))
            .flatten()
            .unzip();
        kernels::foreach_copy(&params, &masters).context("writing master weights back into the parameters")
    }

    /// Writes what an exact resume needs, tensor by tensor: per parameter `exp_avg.<name>`,
    /// `exp_avg_sq.<name>` and (reduced-precision parameters) `master.<name>`, all float32, and
    /// the step count and group settings as metadata.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let groups: Vec<serde_json::Value> = self
            .groups
            .iter()
            .map(|g| {
                serde_json::json!({
                    "name": g.name,
                    "lr_scale": g.lr_scale,
                    "weight_decay": g.weight_decay,
                    "dtype": format!("{:?}", g.kind),
                    "params": g.layout.names(),
                })
            })
            .collect();
        let metadata = BTreeMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("step".to_string(), self.step.to_string()),
            ("skipped_steps".to_string(), self.skipped.to_string()),
            ("groups".to_string(), serde_json::to_string(&groups)?),
        ]);
        let tensors: Vec<(String, &Tensor)> = self.groups.iter().flat_map(GroupState::state_tensors).collect();
        state_file::write(path, metadata, &tensors)
    }

    /// Restores a state written by [`AdamW::save`] for the same parameters (by name and shape;
    /// the grouping may differ). `steps_taken` is the caller's own count of this optimizer's
    /// steps, checked against the file's. Also reads the moments-only files of the previous
    /// optimizer (`m.<name>`, `v.<name>`): exact for float32 parameters; reduced-precision ones
    /// then start their master weights from the parameters.
    pub fn load(&mut self, path: &Path, steps_taken: u64) -> anyhow::Result<()> {
        let file = StateFile::open(path)?;
        let meta = file.metadata();
        let legacy = !meta.contains_key("format") && file.names().iter().any(|n| n.starts_with("m."));
        let (prefixes, step) = if legacy {
            (["m", "v"], steps_taken)
        } else {
            match (meta.get("format").map(String::as_str), meta.get("format_version").map(String::as_str)) {
                (Some(FORMAT), Some(FORMAT_VERSION)) => {}
                (format, version) => anyhow::bail!(
                    "optimizer state {}: format {format:?} version {version:?}, expected `{FORMAT}` version \
                     {FORMAT_VERSION}",
                    path.display()
                ),
            }
            let number = |key: &str| -> anyhow::Result<u64> {
                meta.get(key).and_then(|s| s.parse().ok()).with_context(|| {
                    format!("optimizer state {}: metadata `{key}` missing or not a number", path.display())
                })
            };
            let step = number("step")?;
            if step != steps_taken {
                anyhow::bail!(
                    "optimizer state {} holds {step} steps but the checkpoint's counters say {steps_taken}",
                    path.display()
                );
            }
            self.skipped = number("skipped_steps")?;
            (["exp_avg", "exp_avg_sq"], step)
        };
        let _guard = tch::no_grad_guard();
        let mut expected = BTreeSet::new();
        for g in &self.groups {
            for (i, name) in g.layout.names().iter().enumerate() {
                for (prefix, dest) in prefixes.iter().zip([&g.exp_avg_views[i], &g.exp_avg_sq_views[i]]) {
                    let key = format!("{prefix}.{name}");
                    file.copy_into(&key, dest)?;
                    expected.insert(key);
                }
                let key = format!("master.{name}");
                match (&g.master, file.contains(&key)) {
                    (Some(m), true) => file.copy_into(&key, &m.weight_views[i])?,
                    // A float32 run resuming a reduced-precision one: the master is the better weight.
                    (None, true) => file.copy_into(&key, &g.params[i])?,
                    (Some(m), false) => {
                        if !legacy {
                            tracing::warn!(
                                param = %name,
                                file = %file.path().display(),
                                "no master weights saved (written with float32 parameters): starting from the parameter"
                            );
                        }
                        kernels::foreach_copy(&[&m.weight_views[i]], &[&g.params[i]])?;
                    }
                    (None, false) => {}
                }
                expected.insert(key);
            }
        }
        let unknown: Vec<String> = file.names().into_iter().filter(|n| !expected.contains(n)).collect();
        if !unknown.is_empty() {
            anyhow::bail!(
                "optimizer state {} has state for parameters this model does not have: {}{}",
                file.path().display(),
                unknown.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                if unknown.len() > 5 { format!(" and {} more", unknown.len() - 5) } else { String::new() }
            );
        }
        if legacy && self.groups.iter().any(|g| g.master.is_some()) {
            tracing::warn!(
                file = %path.display(),
                "optimizer state without master weights (an older longrl): master weights start from the parameters"
            );
        }
        // Masters loaded from the file are what the parameters were cast from; write the cast
        // again so the two agree even if the parameters came from elsewhere.
        self.write_back()?;
        for g in &self.groups {
            let _ = g.step.shallow_clone().f_fill_(step as f64)?;
        }
        self.step = step;
        self.consecutive_skipped = 0;
        self.pending = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
