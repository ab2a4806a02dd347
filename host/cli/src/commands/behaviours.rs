//! `longrl behaviours RUN_DIR`: count the four reasoning behaviours of the QwenLong-L1 paper
//! (grounding, subgoals, backtracking, verification) in the rollouts a run logged, with the textual-cue
//! analyser or an LLM judge; write `behaviours.jsonl` (per response) and `behaviours_summary.jsonl`
//! (means per step, split by correct and wrong), TensorBoard scalars, a plot, and the report page.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use longrl_report::behaviours::cues::CueAnalyser;
use longrl_report::behaviours::judge::{JudgeAnalyser, JudgeSettings};
use longrl_report::behaviours::summary::{self, ResponseBehaviour};
use longrl_report::behaviours::{Analyser, Behaviour};
use longrl_report::html::{PageOptions, write_report};
use longrl_report::rollout_log::{self, ROLLOUTS_FILE};

use crate::cli::GlobalArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AnalyserKind {
    /// Documented textual cues (fast, deterministic).
    Cues,
    /// An LLM over an OpenAI-compatible endpoint (`--judge-url`, `--judge-model`).
    Judge,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run directory (holding rollouts.jsonl; see `train.log_rollouts_every`).
    pub run_dir: PathBuf,
    #[arg(long, value_enum, default_value = "cues")]
    pub analyser: AnalyserKind,
    /// Base URL of the judge's OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1.
    #[arg(long)]
    pub judge_url: Option<String>,
    #[arg(long)]
    pub judge_model: Option<String>,
    /// Environment variable holding the judge's API key.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub judge_api_key_env: String,
    #[arg(long, default_value_t = 8)]
    pub judge_max_in_flight: usize,
    /// Seconds one judge request may take once it has its slot.
    #[arg(long, default_value_t = 120.0)]
    pub judge_timeout_s: f64,
}

pub fn run(args: Args, _global: &GlobalArgs) -> anyhow::Result<()> {
    let path = args.run_dir.join(ROLLOUTS_FILE);
    if !path.exists() {
        anyhow::bail!("{} does not exist: the run logged no rollouts (set `train.log_rollouts_every`)", path.display());
    }
    let data = rollout_log::read(&path)?;
    let analyser: Box<dyn Analyser> = match args.analyser {
        AnalyserKind::Cues => Box::new(CueAnalyser),
        AnalyserKind::Judge => Box::new(JudgeAnalyser::new(JudgeSettings {
            url: args.judge_url.context("`--analyser judge` needs `--judge-url`")?,
            model: args.judge_model.context("`--analyser judge` needs `--judge-model`")?,
            api_key_env: args.judge_api_key_env,
            max_in_flight: args.judge_max_in_flight,
            timeout_s: args.judge_timeout_s,
            ..JudgeSettings::default()
        })?),
    };
    let progress = indicatif::ProgressBar::new(data.groups.len() as u64);
    let mut responses: Vec<ResponseBehaviour> = Vec::new();
    // A group at a time, so a judge run shows its progress.
    for group in &data.groups {
        let prompt = data.prompt_of(group).map(|p| p.text.as_str()).unwrap_or_default();
        responses.extend(summary::analyse_groups(&[(prompt, group)], analyser.as_ref()));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let phase_names: BTreeMap<usize, String> =
        data.groups.iter().filter_map(|g| Some((g.phase?, g.phase_name.clone()?))).collect();
    let summaries = summary::summarise(&responses, &phase_names);
    let (per_response, per_step) = summary::write(&args.run_dir, &responses, &summaries)?;

    // TensorBoard scalars and a plot of the RL steps' means.
    let name = analyser.name().to_string();
    let mut events = longrl_metrics::tfevents::EventWriter::create(
        &args.run_dir.join("tensorboard").join(format!("behaviours-{name}")),
    )?;
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for s in summaries.iter().filter(|s| s.stage == "rl") {
        let scalars: Vec<(&str, f32)> = s.means.iter().map(|(k, v)| (k.as_str(), *v as f32)).collect();
        events.scalars(s.step as i64, &scalars)?;
        for b in Behaviour::ALL {
            if let Some(v) = s.means.get(&format!("behaviour/{}/all", b.as_str())) {
                series.entry(b.as_str().to_string()).or_default().push((s.step as f64, *v));
            }
        }
    }
    let records = longrl_metrics::read_metrics(&args.run_dir).unwrap_or_default();
    let marks = longrl_metrics::plot::boundaries(&records);
    let plot = args.run_dir.join("plots").join(format!("behaviours_{name}.png"));
    if !series.is_empty() {
        std::fs::create_dir_all(args.run_dir.join("plots"))?;
        let series: Vec<(String, Vec<(f64, f64)>)> = series.into_iter().collect();
        longrl_metrics::plot::plot_series(&plot, &format!("reasoning behaviours ({name})"), &series, &marks)?;
    }

    print_table(&responses);
    let unscored = responses.iter().filter(|r| r.counts.is_none()).count();
    if unscored > 0 {
        println!(
            "{unscored} of {} responses could not be analysed (see `error` in {})",
            responses.len(),
            per_response.display()
        );
    }
    println!("{}\n{}", per_response.display(), per_step.display());
    if plot.exists() {
        println!("{}", plot.display());
    }
    if records.is_empty() {
        println!("(no metrics.jsonl: report.html not rebuilt)");
    } else {
        println!("{}", write_report(&args.run_dir, PageOptions::default())?.display());
    }
    Ok(())
}

/// Mean count per response of each behaviour, per stage and phase, split by correct and wrong.
fn print_table(responses: &[ResponseBehaviour]) {
    let mut by_phase: BTreeMap<(String, Option<usize>), Vec<&ResponseBehaviour>> = BTreeMap::new();
    for r in responses {
        by_phase.entry((r.stage.clone(), r.phase)).or_default().push(r);
    }
    println!("| stage | phase | responses | subset | {} |", Behaviour::ALL.map(Behaviour::as_str).join(" | "));
    println!("|---|---|---|---|{}", "---|".repeat(Behaviour::ALL.len()));
    for ((stage, phase), rs) in by_phase {
        let means = summary::means(&rs);
        for subset in ["all", "correct", "wrong"] {
            let cells: Vec<String> = Behaviour::ALL
                .iter()
                .map(|b| match means.get(&format!("behaviour/{}/{subset}", b.as_str())) {
                    Some(v) => format!("{v:.2}"),
                    None => "-".into(),
                })
                .collect();
            let phase = phase.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            println!("| {stage} | {phase} | {} | {subset} | {} |", rs.len(), cells.join(" | "));
        }
    }
}
