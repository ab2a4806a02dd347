//! Configurations that cannot run, refused by `longrl train --dry-run` and before training starts,
//! each problem naming the keys that make it: better a clear error now than a run that stalls,
//! never ends, or learns nothing hours later.

use longrl_config::Config;
use longrl_core::api::{PhaseLength, PhaseSpec};
use serde_json::{Map, Value};

/// Component config tables with the plugin's defaults filled in (the keys a rule reads may be unset).
pub struct PluginTables<'a> {
    pub algorithm: &'a Map<String, Value>,
    pub sampler: &'a Map<String, Value>,
}

/// Every problem found, one per line; `Ok` when none.
pub fn refuse_impossible(config: &Config, phases: &[PhaseSpec], tables: &PluginTables<'_>) -> anyhow::Result<()> {
    let problems = impossible(config, phases, tables);
    if problems.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "this configuration cannot run:\n{}",
        problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
    )
}

/// The problems of `config`, each naming its keys.
pub fn impossible(config: &Config, phases: &[PhaseSpec], tables: &PluginTables<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    let t = &config.train;
    for (enabled, stage, files_key, files) in [
        (t.enabled, "train.enabled", "data.train_files", &config.data.train_files),
        (config.sft.enabled, "sft.enabled", "data.sft_files", &config.data.sft_files),
    ] {
        if enabled && files.is_empty() {
            problems.push(format!("`{stage}` is true but `{files_key}` is empty: there is nothing to train on"));
        }
    }
    if config.eval.enabled && config.data.eval_files.is_empty() && config.eval.benchmarks.is_empty() {
        problems.push(
            "`eval.enabled` is true but both `data.eval_files` and `eval.benchmarks` are empty: there is nothing to evaluate"
                .into(),
        );
    }
    if !t.enabled {
        return problems;
    }
    if phases.is_empty() {
        problems.push(format!("the curriculum (`curriculum.name` = `{}`) declares no phases", config.curriculum.name));
    }
    let per_round = if t.gen_batch_prompts > 0 { t.gen_batch_prompts } else { t.batch_prompts } as u64;
    let rounds = if t.dynamic_sampling { t.max_gen_batches.max(1) } else { 1 } as u64;
    if per_round * rounds < t.batch_prompts as u64 {
        problems.push(format!(
            "`train.gen_batch_prompts` ({}) x {} generation round(s) ({}) draw fewer prompts than `train.batch_prompts` ({}) \
             needs per step",
            t.gen_batch_prompts,
            rounds,
            if t.dynamic_sampling { "`train.max_gen_batches`" } else { "no `train.dynamic_sampling`" },
            t.batch_prompts
        ));
    }
    if t.dynamic_sampling && t.rollouts == 1 {
        problems.push(
            "`train.dynamic_sampling` with `train.rollouts` = 1: a group of one rollout has equal rewards, so dynamic \
             sampling keeps no group; set `train.rollouts` >= 2 or `train.dynamic_sampling = false`"
                .into(),
        );
    }
    let buffer = tables.algorithm.get("overlong_buffer").and_then(Value::as_u64).unwrap_or(0);
    for (k, phase) in phases.iter().enumerate() {
        let budget = if t.max_response_tokens > 0 {
            t.max_response_tokens.min(phase.max_output_tokens)
        } else {
            phase.max_output_tokens
        };
        if buffer > 0 && buffer >= budget as u64 {
            let budget_key = if t.max_response_tokens > 0 && t.max_response_tokens < phase.max_output_tokens {
                "`train.max_response_tokens`".to_string()
            } else {
                format!("phase {k} (`{}`)'s `max_output_tokens`", phase.name)
            };
            problems.push(format!(
                "`algorithm.config.overlong_buffer` ({buffer}) is at least the response budget of phase {k} (`{}`), {budget} \
                 tokens ({budget_key}): DAPO's overlong shaping would penalise every response; keep the buffer below it",
                phase.name
            ));
        }
    }
    if config.sampler.name == "retrospective" {
        // Without a `mixing` key the sampler knows only its fixed-share mode.
        let fixed_share = tables.sampler.get("mixing").is_none_or(|m| m.as_str() == Some("fixed_share"));
        let share = tables.sampler.get("retained_share").and_then(Value::as_f64).unwrap_or(0.0);
        let retained_per_batch = (per_round as f64 * share).round() as u64;
        if fixed_share && retained_per_batch >= per_round {
            for (k, phase) in phases.iter().enumerate().skip(1) {
                if let PhaseLength::Epochs(epochs) = phase.length {
                    problems.push(format!(
                        "`sampler.config.retained_share` ({share}) makes the retrospective sampler draw all {per_round} \
                         prompts of a batch from retained examples, but phase {k} (`{}`) lasts {epochs} epoch(s) of its own \
                         pool, which is then never drawn: the phase would never end; lower the share or give the phase \
                         `steps`",
                        phase.name
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn phase(name: &str, max_out: u32, length: PhaseLength) -> PhaseSpec {
        PhaseSpec {
            name: name.into(),
            min_input_tokens_exclusive: 0,
            max_input_tokens: 1000,
            max_output_tokens: max_out,
            length,
        }
    }

    fn config() -> Config {
        let mut config = Config::default();
        config.data.train_files = vec!["train.parquet".into()];
        config
    }

    fn problems(config: &Config, phases: &[PhaseSpec], algorithm: Value, sampler: Value) -> Vec<String> {
        let (a, s) = (algorithm.as_object().unwrap().clone(), sampler.as_object().unwrap().clone());
        impossible(config, phases, &PluginTables { algorithm: &a, sampler: &s })
    }

    #[test]
    fn the_recipe_defaults_can_run() {
        let phases = [phase("p1", 10_000, PhaseLength::Epochs(1)), phase("p2", 10_000, PhaseLength::Epochs(1))];
        assert_eq!(problems(&config(), &phases, json!({"overlong_buffer": 1000}), json!({})), Vec::<String>::new());
    }

    #[test]
    fn an_overlong_buffer_covering_the_budget_is_refused_naming_the_keys() {
        let phases = [phase("short", 64, PhaseLength::Steps(3)), phase("long", 2048, PhaseLength::Steps(3))];
        let found = problems(&config(), &phases, json!({"overlong_buffer": 64}), json!({}));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("`algorithm.config.overlong_buffer` (64)") && found[0].contains("phase 0 (`short`)"));
        assert!(found[0].contains("`max_output_tokens`"), "{}", found[0]);
        let mut capped = config();
        capped.train.max_response_tokens = 32;
        let found = problems(&capped, &phases, json!({"overlong_buffer": 40}), json!({}));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|p| p.contains("`train.max_response_tokens`")), "{found:?}");
    }

    #[test]
    fn a_retrospective_sampler_drawing_only_retained_examples_in_an_epoch_phase_is_refused() {
        let mut c = config();
        c.sampler.name = "retrospective".into();
        let phases = [phase("p1", 100, PhaseLength::Epochs(1)), phase("p2", 100, PhaseLength::Epochs(2))];
        let found = problems(&c, &phases, json!({}), json!({"mixing": "fixed_share", "retained_share": 1.0}));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("`sampler.config.retained_share` (1)") && found[0].contains("phase 1 (`p2`)"));
        // A share below the whole batch, a phase of steps, or pool mixing can all run.
        assert!(problems(&c, &phases, json!({}), json!({"mixing": "fixed_share", "retained_share": 0.25})).is_empty());
        let steps = [phase("p1", 100, PhaseLength::Epochs(1)), phase("p2", 100, PhaseLength::Steps(5))];
        assert!(problems(&c, &steps, json!({}), json!({"mixing": "fixed_share", "retained_share": 1.0})).is_empty());
        assert!(problems(&c, &phases, json!({}), json!({"mixing": "pool", "retained_share": 1.0})).is_empty());
        // Another sampler's key of the same name means nothing here.
        c.sampler.name = "uniform".into();
        assert!(problems(&c, &phases, json!({}), json!({"retained_share": 1.0})).is_empty());
    }

    #[test]
    fn batch_schedules_that_cannot_fill_a_step_are_refused() {
        let phases = [phase("p", 100, PhaseLength::Steps(1))];
        let mut c = config();
        c.train.dynamic_sampling = false;
        c.train.gen_batch_prompts = 64;
        let found = problems(&c, &phases, json!({}), json!({}));
        assert!(found.len() == 1 && found[0].contains("`train.gen_batch_prompts` (64)"), "{found:?}");
        c.train.dynamic_sampling = true;
        c.train.max_gen_batches = 2;
        assert!(problems(&c, &phases, json!({}), json!({})).is_empty(), "two rounds of 64 fill 128");
        c.train.rollouts = 1;
        let found = problems(&c, &phases, json!({}), json!({}));
        assert!(found.len() == 1 && found[0].contains("`train.rollouts` = 1"), "{found:?}");
    }

    #[test]
    fn enabled_stages_without_data_are_refused() {
        let mut c = Config::default();
        c.sft.enabled = true;
        c.eval.enabled = true;
        c.eval.benchmarks.clear();
        let found = problems(&c, &[phase("p", 100, PhaseLength::Steps(1))], json!({}), json!({}));
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("`data.train_files`") && found[1].contains("`data.sft_files`"));
        assert!(found[2].contains("`eval.benchmarks`"));
    }
}
