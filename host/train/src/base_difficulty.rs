//! The base model's difficulty file, scored as RL starts. QwenLong-L1 weighs its retrospective
//! sampling by Eq. 10, 1 / mean reward of the *base model's* G rollouts; the base model of RL is the
//! policy after the warm-up SFT, so the file can only be written here, between SFT and the first
//! phase. A resumed run finds the file and keeps it.

use std::collections::BTreeSet;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use longrl_core::api::GenerationParams;
use longrl_rollout::{LocalPolicy, RolloutPrompt, score_difficulty, write_difficulty};

use crate::seeds;
use crate::trainer::Trainer;

impl Trainer<'_> {
    /// Score every example some phase admits with `train.rollouts` rollouts of the current policy
    /// (each under its first phase's response budget) and write `path` for the sampler.
    pub(super) fn write_base_difficulty(&mut self, path: &Path) -> anyhow::Result<()> {
        let train = self.opts.train.clone();
        let data = self.rl_data.as_ref().expect("RL data is prepared when RL is enabled");
        let mut seen = BTreeSet::new();
        let mut phases: Vec<(usize, u32, Vec<u32>)> = Vec::new();
        for (phase, spec) in self.phases.iter().enumerate() {
            let fresh: Vec<u32> = data.pool(spec).iter().map(|item| item.index).filter(|&i| seen.insert(i)).collect();
            let budget = match train.max_response_tokens {
                0 => spec.max_output_tokens,
                cap => cap.min(spec.max_output_tokens),
            };
            phases.push((phase, budget, fresh));
        }
        let total: usize = phases.iter().map(|(_, _, indices)| indices.len()).sum();
        tracing::info!(
            examples = total,
            rollouts = train.rollouts,
            file = %path.display(),
            "scoring the base model's difficulty (QwenLong-L1 Eq. 10) before the first RL phase"
        );
        let bar = if train.progress_bar { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
        if let Ok(style) = ProgressStyle::with_template("{spinner} base difficulty {bar:30} {pos}/{len} ETA {eta}") {
            bar.set_style(style);
        }
        let batch = match (train.generate_batch_prompts, train.batch_prompts) {
            (0, b) => b.max(1) as usize,
            (g, _) => g as usize,
        };
        let mut rows = Vec::with_capacity(total);
        for (phase, budget, indices) in &phases {
            self.rl_data.as_mut().expect("RL data").tokenize(self.c.policy.as_ref(), indices)?;
            let data = self.rl_data.as_ref().expect("RL data");
            let prompts: Vec<RolloutPrompt<'_>> = indices.iter().map(|&i| data.rollout_prompt(i)).collect();
            let ids: Vec<&str> = indices.iter().map(|&i| data.examples[i as usize].id.as_str()).collect();
            let params = GenerationParams {
                max_new_tokens: *budget,
                temperature: train.temperature,
                top_p: train.top_p,
                top_k: train.top_k,
                seed: 0,
                stop: train.stop.clone(),
                rollouts: train.rollouts,
                prefill_chunk: 0,
            };
            let run_seed = self.opts.seed;
            let seed_of_batch = |b: u64| seeds::derive(run_seed, "base-difficulty", *phase as u64, b);
            let mut generator = LocalPolicy::new(self.c.policy.as_mut(), &self.c.names.policy);
            rows.extend(score_difficulty(
                &mut generator,
                &self.c.rewards,
                &prompts,
                &ids,
                &params,
                batch,
                &seed_of_batch,
                &mut |done| bar.inc(done as u64),
            )?);
        }
        bar.finish_and_clear();
        let unscored: Vec<&str> = rows.iter().filter(|r| r.mean_reward.is_none()).map(|r| r.id.as_str()).collect();
        if !unscored.is_empty() {
            anyhow::bail!(
                "base-model difficulty: the rewards could not score any rollout of {} example(s) (first: {}); \
                 Eq. 10 needs every example's mean reward. Make the judge reachable, or give \
                 `sampler.config.difficulty_file` from `longrl difficulty`",
                unscored.len(),
                unscored.iter().take(5).copied().collect::<Vec<_>>().join(", ")
            );
        }
        write_difficulty(path, &rows, 0.0)?;
        let never = rows.iter().filter(|r| r.mean_reward.is_some_and(|m| m <= 0.0)).count();
        tracing::info!(examples = rows.len(), never_solved = never, file = %path.display(), "base-model difficulty written");
        Ok(())
    }
}
