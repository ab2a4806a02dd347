//! The trainer's side of `RUN_DIR/rollouts.jsonl` (see `longrl_report::rollout_log`): every
//! `train.log_rollouts_every` RL steps, the first `train.log_rollout_groups` groups of the step with
//! their texts, rewards, reward breakdowns and advantages; and the textual-cue counts of the four
//! reasoning behaviours of those responses, as that step's `behaviour/...` metrics.

use std::collections::BTreeMap;

use longrl_core::api::FinishReason;
use longrl_report::behaviours::cues::CueAnalyser;
use longrl_report::behaviours::summary::{analyse_groups, means};
use longrl_report::rollout_log::{GroupEntry, PromptEntry, RolloutEntry};

use crate::rl::Group;
use crate::trainer::Trainer;

fn finish_name(finish: Option<FinishReason>) -> &'static str {
    match finish {
        Some(FinishReason::Stop) => "stop",
        Some(FinishReason::Length) => "length",
        None => "none",
    }
}

impl Trainer<'_> {
    /// Whether the step about to be taken (global step `step`) logs its rollouts.
    pub(crate) fn logs_rollouts(&self, step: u64) -> bool {
        let every = self.opts.train.log_rollouts_every;
        self.rollout_log.is_some() && every > 0 && step % every == 0
    }

    /// Log `groups` (advantages in rollout order) as step `step`, and return the behaviour means of
    /// the logged responses.
    pub(crate) fn log_rollouts(
        &mut self,
        step: u64,
        groups: &[Group],
        advantages: &[f32],
    ) -> anyhow::Result<BTreeMap<String, f64>> {
        let data = self.rl_data.as_ref().expect("RL data is prepared when RL is enabled");
        let phase = self.counters.phase;
        let phase_name = self.phases.get(phase).map(|p| p.name.clone());
        let wanted = match self.opts.train.log_rollout_groups {
            0 => groups.len(),
            n => (n as usize).min(groups.len()),
        };
        let threshold = self.opts.accuracy_threshold;
        let mut advantages = advantages.iter();
        let mut entries = Vec::with_capacity(wanted);
        for group in groups {
            let group_advantages: Vec<f32> = advantages.by_ref().take(group.rollouts.len()).copied().collect();
            if entries.len() == wanted {
                continue;
            }
            let example = &data.examples[group.index as usize];
            let prompt = PromptEntry {
                example: example.id.clone(),
                data_source: example.data_source.clone(),
                text: data.user(group.index).to_string(),
                ground_truth: example.ground_truth.clone(),
            };
            let rollouts = group
                .rollouts
                .iter()
                .zip(&group_advantages)
                .map(|(r, &advantage)| {
                    let scored = !r.unscored();
                    RolloutEntry {
                        text: r.text.clone(),
                        tokens: r.response.len() as u32,
                        finish: finish_name(r.finish).to_string(),
                        reward: scored.then_some(r.raw as f64),
                        shaped_reward: scored.then_some(r.shaped as f64),
                        advantage: scored.then_some(advantage as f64),
                        decided_by: r.decided_by.clone(),
                        reward_details: r.reward_details.clone(),
                        correct: scored.then_some(r.raw >= threshold),
                    }
                })
                .collect();
            let entry = GroupEntry {
                step,
                stage: "rl".into(),
                phase: Some(phase),
                phase_name: phase_name.clone(),
                example: example.id.clone(),
                data_source: example.data_source.clone(),
                rollouts,
            };
            entries.push((prompt, entry));
        }
        let log = self.rollout_log.as_mut().expect("checked by logs_rollouts");
        for (prompt, entry) in &entries {
            log.append(prompt, entry)?;
        }
        log.flush()?;
        let pairs: Vec<(&str, &GroupEntry)> = entries.iter().map(|(p, g)| (p.text.as_str(), g)).collect();
        let responses = analyse_groups(&pairs, &CueAnalyser);
        Ok(means(&responses.iter().collect::<Vec<_>>()))
    }
}
