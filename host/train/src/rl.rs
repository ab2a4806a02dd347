//! One RL step: draw prompts, roll out G responses each, reward, shape, filter groups (dynamic
//! sampling), compute advantages, then `epochs` x mini-batches x micro-batches of policy updates.

use std::collections::BTreeMap;
use std::time::Instant;

use longrl_core::api::{
    FinishReason, GenerationParams, LogprobOptions, LossInputs, LossNormalizer, PhaseProgress, PhaseTransition,
    Sequence,
};
use longrl_rollout::{LocalPolicy, RolloutPrompt, RolloutSpec, roll_out};
use tch::{Device, Kind, Tensor};

use longrl_metrics::{Record, mean_std};

use crate::optim::StepOutcome;
use crate::schedule::lr_at;
use crate::seeds;
use crate::servers::ServerGenerator;
use crate::trainer::{Outcome, Trainer};

/// One rollout.
pub(crate) struct Rollout {
    pub(crate) response: Vec<u32>,
    /// The sampler's log-prob of each response token (the server's, with rollout servers).
    sampled_logprobs: Vec<f32>,
    /// `None` never comes out of generation; kept as the pipeline gives it.
    pub(crate) finish: Option<FinishReason>,
    /// NaN when no reward could decide the response (unscored: masked out of its group and the loss).
    pub(crate) raw: f32,
    pub(crate) shaped: f32,
    pub(crate) text: String,
    pub(crate) decided_by: String,
    pub(crate) reward_details: serde_json::Value,
}

impl Rollout {
    pub(crate) fn unscored(&self) -> bool {
        !self.raw.is_finite()
    }
}

/// The rollouts of one prompt.
pub(crate) struct Group {
    pub(crate) index: u32,
    pub(crate) rollouts: Vec<Rollout>,
}

/// A rollout ready for the update: its sequence, rollout-time log-probs, advantage and mask.
struct TrainItem {
    seq: Sequence,
    old: Vec<f32>,
    reference: Option<Vec<f32>>,
    advantage: f32,
    /// 0 when the response is excluded from the loss (truncated under `mask_truncated`).
    weight: f32,
}

#[derive(Default)]
struct Timings {
    generate: f64,
    reward: f64,
    old_logprobs: f64,
    reference: f64,
    update: f64,
}

impl Trainer<'_> {
    pub(super) fn run_rl(&mut self) -> anyhow::Result<Outcome> {
        if !self.counters.rl_started {
            self.start_rl()?;
        }
        let planned = self.rl_planned_steps();
        loop {
            let max_steps = self.opts.train.max_steps;
            if max_steps > 0 && self.counters.rl_steps >= max_steps {
                tracing::info!(steps = self.counters.rl_steps, "train.max_steps reached");
                self.counters.rl_done = true;
                let name = self.phases[self.counters.phase].name.clone();
                self.end_stage(&name)?;
                return Ok(Outcome::Finished);
            }
            let phase = self.counters.phase;
            let mut values = self.rl_step(planned)?;
            self.counters.rl_steps += 1;
            self.counters.phase_steps += 1;
            self.counters.global_step += 1;
            values.extend(self.c.sampler.metrics()?.into_iter().map(|(k, v)| (format!("sampler/{k}"), v)));
            let progress = PhaseProgress {
                steps: self.counters.phase_steps,
                epochs: self.c.sampler.epochs_completed()?,
                accuracy: values.get("accuracy").copied(),
            };
            values.insert("phase_epochs".into(), progress.epochs as f64);
            let record = Record {
                step: self.counters.global_step,
                stage: "rl".into(),
                phase: Some(phase),
                phase_name: Some(self.phases[phase].name.clone()),
                values,
            };
            let transition = self.c.curriculum.advance(progress)?;
            let phase_name = self.phases[phase].name.clone();
            match transition {
                PhaseTransition::Continue => {
                    if self.after_step(record)? {
                        return Ok(Outcome::Stopped);
                    }
                }
                PhaseTransition::Enter(next) => {
                    self.metrics.write(&record)?;
                    self.begin_phase(next)?;
                    self.end_stage(&phase_name)?;
                    if self.stop_point()? {
                        return Ok(Outcome::Stopped);
                    }
                }
                PhaseTransition::Finished => {
                    self.metrics.write(&record)?;
                    self.counters.rl_done = true;
                    self.end_stage(&phase_name)?;
                    self.progress.set_position(self.counters.global_step);
                    return Ok(Outcome::Finished);
                }
            }
        }
    }

    /// After a phase change (already checkpointed): only the test stop point remains to check.
    fn stop_point(&mut self) -> anyhow::Result<bool> {
        self.progress.set_position(self.counters.global_step);
        self.bump_steps()
    }

    fn max_response_tokens(&self) -> u32 {
        let phase_limit = self.phases[self.counters.phase].max_output_tokens;
        match self.opts.train.max_response_tokens {
            0 => phase_limit,
            cap => cap.min(phase_limit),
        }
    }

    /// Generate, reward and filter until `batch_prompts` groups are kept.
    fn collect_groups(&mut self, values: &mut BTreeMap<String, f64>, t: &mut Timings) -> anyhow::Result<Vec<Group>> {
        let train = &self.opts.train;
        let want = train.batch_prompts as usize;
        let per_round = if train.gen_batch_prompts > 0 { train.gen_batch_prompts as usize } else { want };
        let rounds_allowed = if train.dynamic_sampling { train.max_gen_batches.max(1) } else { 1 };
        let max_new = self.max_response_tokens();
        let mut kept = Vec::new();
        let mut unscored = 0usize;
        let (mut all_raw, mut lengths, mut truncated) = (Vec::new(), Vec::new(), 0usize);
        let mut by_source: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let (mut gen_tokens, mut generated_groups) = (0u64, 0usize);
        let mut rounds = 0u32;
        while kept.len() < want {
            if rounds == rounds_allowed {
                anyhow::bail!(
                    "dynamic sampling: after {rounds} generation rounds ({generated_groups} groups) only {} of the {want} groups \
                     needed had rewards that were not all equal; raise `train.max_gen_batches`, make the task \
                     easier for the model, or turn `train.dynamic_sampling` off",
                    kept.len()
                );
            }
            let indices = self.c.sampler.next_batch(per_round)?;
            self.check_drawn(&indices, per_round)?;
            self.rl_data.as_mut().expect("RL data").tokenize(self.c.policy.as_ref(), &indices)?;
            let data = self.rl_data.as_ref().expect("RL data");
            let prompts: Vec<RolloutPrompt<'_>> = indices.iter().map(|&i| data.rollout_prompt(i)).collect();
            let (run_seed, step) = (self.opts.seed, self.counters.rl_steps);
            let seed_of_call = |call: u64| seeds::derive(run_seed, "generate", step, ((rounds as u64) << 32) | call);
            let spec = RolloutSpec {
                params: GenerationParams {
                    max_new_tokens: max_new,
                    temperature: train.temperature,
                    top_p: train.top_p,
                    top_k: train.top_k,
                    seed: 0,
                    stop: train.stop.clone(),
                    rollouts: train.rollouts,
                    prefill_chunk: 0,
                },
                // Rollout servers take the whole round at once and spread it themselves.
                batch_prompts: if self.servers.is_some() { 0 } else { train.generate_batch_prompts as usize },
                seed_of_call: &seed_of_call,
                strip_responses: false,
            };
            let rolled = match &self.servers {
                Some(servers) => {
                    let mut generator = ServerGenerator::new(&servers.remote);
                    roll_out(&mut generator, &self.c.rewards, &prompts, &spec, &mut |_| {})
                }
                None => {
                    let mut generator = LocalPolicy::new(self.c.policy.as_mut(), &self.c.names.policy);
                    roll_out(&mut generator, &self.c.rewards, &prompts, &spec, &mut |_| {})
                }
            };
            let rolled = match rolled {
                Ok(rolled) => rolled,
                Err(e) if self.uses_servers() => return Err(self.servers_failed(e)),
                Err(e) => return Err(e),
            };
            t.generate += rolled.generate_seconds;
            t.reward += rolled.reward_seconds;
            gen_tokens += rolled.generated_tokens;

            for (&index, group) in indices.iter().zip(rolled.groups) {
                let ex = &data.examples[index as usize];
                let mut rollouts = Vec::with_capacity(group.rollouts.len());
                for r in group.rollouts {
                    let raw = r.score.score;
                    let len = r.tokens.len() as u32;
                    lengths.push(len as f64);
                    let shaped = if raw.is_finite() {
                        all_raw.push(raw as f64);
                        by_source.entry(ex.data_source.clone()).or_default().push(raw as f64);
                        self.c.algorithm.shape_reward(raw, len, max_new)?
                    } else {
                        unscored += 1;
                        f32::NAN
                    };
                    truncated += (r.finish == Some(FinishReason::Length)) as usize;
                    rollouts.push(Rollout {
                        response: r.tokens,
                        sampled_logprobs: r.logprobs,
                        finish: r.finish,
                        raw,
                        shaped,
                        text: r.text,
                        decided_by: r.score.decided_by,
                        reward_details: r.score.details,
                    });
                }
                // Unscored rollouts say nothing about the prompt: the sampler and the group filter
                // see the scored ones only.
                let raw: Vec<f32> = rollouts.iter().filter(|r| !r.unscored()).map(|r| r.raw).collect();
                if !raw.is_empty() {
                    self.c.sampler.observe(index, &raw)?;
                }
                generated_groups += 1;
                // Groups are filtered on the raw reward (verl's filter_groups metric `acc`), not the shaped one.
                if !train.dynamic_sampling || self.c.algorithm.keep_group(&raw)? {
                    kept.push(Group { index, rollouts });
                }
            }
            rounds += 1;
        }
        kept.truncate(want);
        let generated = lengths.len();
        let allowed = self.opts.max_unscored_fraction;
        if unscored as f64 > allowed * generated as f64 {
            anyhow::bail!(
                "RL step {}: {unscored} of {generated} rollouts are unscored (no reward could decide them: the judge \
                 unreachable or failing where the rule did not match), above `reward.max_unscored_fraction` = {allowed}; \
                 the latest checkpoint is intact: fix the judge and resume",
                self.counters.rl_steps + 1
            );
        }
        values.insert("reward/unscored".into(), unscored as f64);

        let threshold = self.opts.accuracy_threshold as f64;
        let (mean, std) = mean_std(&all_raw);
        values.insert("reward/mean".into(), mean);
        values.insert("reward/std".into(), std);
        values.insert(
            "accuracy".into(),
            all_raw.iter().filter(|&&r| r >= threshold).count() as f64 / all_raw.len() as f64,
        );
        for (source, rewards) in &by_source {
            let (m, s) = mean_std(rewards);
            values.insert(format!("reward/{source}/mean"), m);
            values.insert(format!("reward/{source}/std"), s);
            values.insert(
                format!("accuracy/{source}"),
                rewards.iter().filter(|&&r| r >= threshold).count() as f64 / rewards.len() as f64,
            );
        }
        let kept_raw: Vec<f64> = kept.iter().flat_map(|g| g.rollouts.iter().map(|r| r.raw as f64)).collect();
        let kept_shaped: Vec<f64> = kept.iter().flat_map(|g| g.rollouts.iter().map(|r| r.shaped as f64)).collect();
        values.insert("reward/kept_mean".into(), mean_std(&kept_raw).0);
        values.insert("reward/shaped_mean".into(), mean_std(&kept_shaped).0);
        let (len_mean, _) = mean_std(&lengths);
        values.insert("response/length_mean".into(), len_mean);
        values.insert("response/length_max".into(), lengths.iter().cloned().fold(0.0, f64::max));
        values.insert("response/overlong_frac".into(), truncated as f64 / lengths.len() as f64);
        values.insert("dynamic/gen_rounds".into(), rounds as f64);
        values.insert("dynamic/generated_groups".into(), generated_groups as f64);
        values.insert("dynamic/kept_groups".into(), kept.len() as f64);
        values.insert("gen_tokens_per_s".into(), gen_tokens as f64 / t.generate.max(1e-9));
        Ok(kept)
    }

    /// Per-token log-probs of `seqs` without gradients, one `Vec` per sequence.
    fn score_no_grad(
        policy: &mut dyn longrl_core::api::Policy,
        seqs: &[Sequence],
        micro: usize,
        options: &LogprobOptions,
    ) -> anyhow::Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(seqs.len());
        for part in seqs.chunks(micro.max(1)) {
            let lp = policy.logprobs(part, options)?;
            let rows = lp.logprobs.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?;
            let width = rows.size().get(1).copied().unwrap_or(0) as usize;
            let flat = Vec::<f32>::try_from(rows.f_flatten(0, -1)?)?;
            for (i, s) in part.iter().enumerate() {
                if s.response.len() > width {
                    anyhow::bail!(
                        "policy log-probs have {width} columns for a response of {} tokens",
                        s.response.len()
                    );
                }
                out.push(flat[i * width..i * width + s.response.len()].to_vec());
            }
        }
        Ok(out)
    }

    pub(super) fn rl_step(&mut self, planned_steps: u64) -> anyhow::Result<BTreeMap<String, f64>> {
        let step_started = Instant::now();
        let mut values = BTreeMap::new();
        let mut t = Timings::default();
        // The servers must hold this step's weights (the first step, or a resumed run).
        self.sync_servers(self.counters.global_step, &mut values)?;
        let groups = self.collect_groups(&mut values, &mut t)?;
        let data = self.rl_data.as_ref().expect("RL data");
        let micro = self.opts.train.micro_batch_size as usize;
        // Old log-probs are recomputed with the training forward pass (verl's "old_log_prob")
        // rather than taken from the sampler: the generation path's numerics (KV cache, chunked
        // prefill, other kernels) differ slightly, and the importance ratio must be exactly 1 on the
        // first update of on-policy data.
        let temperature = if self.opts.train.temperature > 0.0 { self.opts.train.temperature } else { 1.0 };
        let no_grad = LogprobOptions {
            with_grad: false,
            entropy: false,
            chunk_tokens: self.opts.train.logprob_chunk_tokens,
            temperature,
        };
        let seqs: Vec<Sequence> = groups
            .iter()
            .flat_map(|g| {
                g.rollouts.iter().map(|r| Sequence { prompt: data.ids(g.index).to_vec(), response: r.response.clone() })
            })
            .collect();
        let started = Instant::now();
        let old = Self::score_no_grad(self.c.policy.as_mut(), &seqs, micro, &no_grad)?;
        t.old_logprobs = started.elapsed().as_secs_f64();
        let reference = match &mut self.c.reference {
            Some(reference) => {
                let started = Instant::now();
                let r = Self::score_no_grad(reference.as_mut(), &seqs, micro, &no_grad)?;
                t.reference = started.elapsed().as_secs_f64();
                Some(r)
            }
            None => None,
        };
        // Group statistics over the scored rollouts only; an unscored one gets advantage 0 and
        // weight 0 (out of the loss and its normaliser).
        let shaped: Vec<f32> =
            groups.iter().flat_map(|g| g.rollouts.iter().filter(|r| !r.unscored()).map(|r| r.shaped)).collect();
        let sizes: Vec<u32> = groups
            .iter()
            .map(|g| g.rollouts.iter().filter(|r| !r.unscored()).count() as u32)
            .filter(|&n| n > 0)
            .collect();
        let scored_advantages =
            if shaped.is_empty() { Vec::new() } else { self.c.algorithm.advantages(&shaped, &sizes)? };
        if scored_advantages.len() != shaped.len() {
            anyhow::bail!(
                "algorithm `{}` returned {} advantages for {} rollouts",
                self.c.names.algorithm,
                scored_advantages.len(),
                shaped.len()
            );
        }
        let mut scored = scored_advantages.into_iter();
        let advantages: Vec<f32> = groups
            .iter()
            .flat_map(|g| g.rollouts.iter())
            .map(|r| if r.unscored() { 0.0 } else { scored.next().expect("one advantage per scored rollout") })
            .collect();
        let mask_truncated = self.opts.train.mask_truncated;
        let finishes: Vec<(Option<FinishReason>, bool)> =
            groups.iter().flat_map(|g| g.rollouts.iter().map(|r| (r.finish, r.unscored()))).collect();
        let mut reference = reference.map(Vec::into_iter);
        let sampled: Vec<Vec<f32>> = if self.uses_servers() {
            groups.iter().flat_map(|g| g.rollouts.iter().map(|r| r.sampled_logprobs.clone())).collect()
        } else {
            Vec::new()
        };
        let is_weights = self.off_policy_correction(&sampled, &old, &mut values)?;
        let mut items: Vec<TrainItem> = seqs
            .into_iter()
            .zip(old)
            .zip(advantages.iter().zip(finishes))
            .map(|((seq, old), (&advantage, (finish, unscored)))| TrainItem {
                seq,
                old,
                reference: reference.as_mut().and_then(Iterator::next),
                advantage,
                weight: if unscored || (mask_truncated && finish == Some(FinishReason::Length)) { 0.0 } else { 1.0 },
            })
            .collect();
        if let Some(weights) = is_weights {
            // Sequence-level truncated importance sampling: the weight scales the response's
            // policy-gradient term, which is linear in its advantage.
            for (item, w) in items.iter_mut().zip(weights) {
                item.advantage *= w;
            }
        }
        values.insert("advantage/mean".into(), mean_std(&advantages.iter().map(|&a| a as f64).collect::<Vec<_>>()).0);
        let step = self.counters.global_step + 1;
        if self.logs_rollouts(step) {
            values.extend(self.log_rollouts(step, &groups, &advantages)?);
        }

        let started = Instant::now();
        let lr = lr_at(&self.opts.train.optim, self.counters.rl_steps, planned_steps);
        let update = self.update(&items, groups.iter().map(|g| g.rollouts.len()).collect(), lr)?;
        t.update = started.elapsed().as_secs_f64();
        let processed: usize = items.iter().map(|i| i.seq.prompt.len() + i.seq.response.len()).sum::<usize>()
            * self.opts.train.epochs as usize;
        values.extend(update);
        values.insert("lr".into(), lr);
        values.extend(self.c.rewards.take_metrics()?.into_iter().map(|(k, v)| (format!("reward_metrics/{k}"), v)));
        values.insert("train_tokens_per_s".into(), processed as f64 / t.update.max(1e-9));
        values.insert("time/generate".into(), t.generate);
        values.insert("time/reward".into(), t.reward);
        values.insert("time/old_logprobs".into(), t.old_logprobs);
        values.insert("time/reference".into(), t.reference);
        values.insert("time/update".into(), t.update);
        // The next rollouts need this step's weights on the servers.
        self.sync_servers(self.counters.global_step + 1, &mut values)?;
        values.insert("time/step".into(), step_started.elapsed().as_secs_f64());
        Ok(values)
    }

    /// `epochs` passes; each mini-batch of `mini_batch_prompts` groups is one optimizer step whose
    /// gradient accumulates over micro-batches of `micro_batch_size` sequences.
    fn update(
        &mut self,
        items: &[TrainItem],
        group_sizes: Vec<usize>,
        lr: f64,
    ) -> anyhow::Result<BTreeMap<String, f64>> {
        let max_response_len = self.max_response_tokens() as f64;
        let micro = self.opts.train.micro_batch_size.max(1) as usize;
        let grad_clip = self.opts.train.optim.grad_clip;
        let temperature = if self.opts.train.temperature > 0.0 { self.opts.train.temperature } else { 1.0 };
        let options = LogprobOptions {
            with_grad: true,
            entropy: self.settings.needs_entropy,
            chunk_tokens: self.opts.train.logprob_chunk_tokens,
            temperature,
        };
        // Item ranges of each mini-batch.
        let mut starts = vec![0usize];
        for size in &group_sizes {
            starts.push(starts.last().unwrap() + size);
        }
        let groups_per_mini = self.opts.train.mini_batch_prompts.max(1) as usize;
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut weights: BTreeMap<String, f64> = BTreeMap::new();
        let (mut grad_norms, mut optimizer_steps, mut skipped, mut nonfinite) = (Vec::new(), 0u64, 0u64, 0u64);
        for _epoch in 0..self.opts.train.epochs.max(1) {
            for first_group in (0..group_sizes.len()).step_by(groups_per_mini) {
                let last_group = (first_group + groups_per_mini).min(group_sizes.len());
                let mini = &items[starts[first_group]..starts[last_group]];
                let tokens: f64 = mini.iter().map(|i| i.seq.response.len() as f64 * i.weight as f64).sum();
                if tokens == 0.0 {
                    skipped += 1;
                    continue;
                }
                // Sequences with an unmasked token: seq-mean divisors leave fully masked ones out, as verl does.
                let sequences = mini.iter().filter(|i| i.weight > 0.0 && !i.seq.response.is_empty()).count() as f64;
                let normalizer = LossNormalizer { tokens, sequences, max_response_len };
                let opt = self.optimizer.as_mut().expect("RL optimizer");
                opt.zero_grad()?;
                let mut mini_sums: BTreeMap<String, f64> = BTreeMap::new();
                for part in mini.chunks(micro) {
                    let seqs: Vec<Sequence> = part.iter().map(|i| i.seq.clone()).collect();
                    let out = self.c.policy.logprobs(&seqs, &options)?;
                    let device = out.logprobs.device();
                    let width = out.logprobs.size()[1];
                    let old = padded(part.iter().map(|i| i.old.as_slice()), width, device)?;
                    let ref_logprobs = match part.first().map(|i| i.reference.is_some()) {
                        Some(true) => {
                            Some(padded(part.iter().map(|i| i.reference.as_deref().unwrap_or(&[])), width, device)?)
                        }
                        _ => None,
                    };
                    let weight =
                        Tensor::from_slice(&part.iter().map(|i| i.weight).collect::<Vec<f32>>()).f_to_device(device)?;
                    let mask = out.mask.f_to_kind(Kind::Float)?.f_mul(&weight.f_unsqueeze(1)?)?;
                    let advantages = Tensor::from_slice(&part.iter().map(|i| i.advantage).collect::<Vec<f32>>())
                        .f_to_device(device)?;
                    let micro_tokens: f64 = part.iter().map(|i| i.seq.response.len() as f64 * i.weight as f64).sum();
                    let inputs = LossInputs {
                        logprobs: out.logprobs,
                        old_logprobs: old,
                        ref_logprobs,
                        entropy: out.entropy,
                        advantages,
                        mask,
                        normalizer,
                    };
                    let loss = self.c.algorithm.loss(&inputs)?;
                    loss.loss.f_backward()?;
                    for (key, v) in loss.metrics {
                        if key == "loss" || key == "pg_loss" || key == "tokens" {
                            // Already divided by the mini-batch's sizes: they add up.
                            *mini_sums.entry(key).or_default() += v;
                        } else if micro_tokens > 0.0 {
                            *sums.entry(key.clone()).or_default() += v * micro_tokens;
                            *weights.entry(key).or_default() += micro_tokens;
                        }
                    }
                }
                for (key, v) in mini_sums {
                    *sums.entry(key.clone()).or_default() += v;
                    *weights.entry(key).or_default() += 1.0;
                }
                let opt = self.optimizer.as_mut().expect("RL optimizer");
                let grad_norm = opt.clip_grad_norm(grad_clip)?;
                if opt.step(lr)? == StepOutcome::Applied {
                    grad_norms.push(grad_norm);
                    optimizer_steps += 1;
                } else {
                    nonfinite += 1;
                }
            }
        }
        let mut out: BTreeMap<String, f64> = sums
            .into_iter()
            .map(|(k, v)| (format!("actor/{k}"), v / weights.get(&k).copied().unwrap_or(1.0).max(1e-12)))
            .collect();
        out.insert("actor/grad_norm".into(), mean_std(&grad_norms).0);
        out.insert("actor/optimizer_steps".into(), optimizer_steps as f64);
        out.insert("actor/skipped_mini_batches".into(), skipped as f64);
        out.insert("actor/nonfinite_grad_skipped".into(), nonfinite as f64);
        Ok(out)
    }
}

/// Rows right-padded with zeros to `width`: `[rows, width]` on `device`.
fn padded<'a>(rows: impl Iterator<Item = &'a [f32]>, width: i64, device: Device) -> anyhow::Result<Tensor> {
    let mut flat = Vec::new();
    let mut n = 0i64;
    for row in rows {
        if row.len() as i64 > width {
            anyhow::bail!("a rollout has {} log-probs but the batch is {width} wide", row.len());
        }
        flat.extend_from_slice(row);
        flat.extend(std::iter::repeat_n(0.0f32, width as usize - row.len()));
        n += 1;
    }
    Ok(Tensor::from_slice(&flat).f_reshape([n, width])?.f_to_device(device)?)
}
