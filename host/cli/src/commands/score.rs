//! `longrl score`: score saved responses with the configured rewards (by default the rule verifier;
//! `--judge-url` adds the LLM judge for the hybrid reward). Prints one JSON line per response, then
//! one summary line with the count and mean score per data source. A response no reward could
//! decide (the judge unreachable where the rule failed) prints `"score": null` with the reason and is
//! left out of the means (`unscored` counts it).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use longrl_core::api::{ComponentContext, RewardInput};
use serde::Deserialize;
use serde_json::json;

use crate::cli::GlobalArgs;
use longrl_config::ComponentConfig;
use longrl_rollout::{RewardSet, is_unscored};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// JSONL file, one object per line: `response`, `ground_truth`, `data_source`, and optionally
    /// `prompt` (text or chat messages), `question` and `id`.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Base URL of an OpenAI-compatible judge (e.g. http://127.0.0.1:8000/v1): adds the `judge`
    /// reward, asked only where the other rewards score below `reward.max_score`.
    #[arg(long, value_name = "URL", requires = "judge_model")]
    pub judge_url: Option<String>,
    /// The judge's model name.
    #[arg(long, value_name = "NAME", requires = "judge_url")]
    pub judge_model: Option<String>,
    /// Responses handed to the rewards at a time (the judge runs its requests concurrently within one).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
}

/// A ground truth as stored: text, or a bare number or boolean (DocMath).
#[derive(Deserialize)]
#[serde(untagged)]
enum GroundTruth {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

/// A prompt as text, or as verl-style chat messages.
#[derive(Deserialize)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Messages(Vec<Message>),
}

#[derive(Deserialize)]
struct Message {
    content: String,
}

#[derive(Deserialize)]
struct Line {
    response: String,
    ground_truth: GroundTruth,
    data_source: String,
    #[serde(default)]
    prompt: Option<Prompt>,
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// One response to score and where it came from.
pub struct Item {
    pub line: usize,
    pub id: Option<serde_json::Value>,
    pub input: RewardInput,
}

fn to_item(line: usize, parsed: Line) -> Item {
    let ground_truth = match parsed.ground_truth {
        GroundTruth::Text(text) => text,
        GroundTruth::Number(n) => n.to_string(),
        GroundTruth::Bool(b) => if b { "True" } else { "False" }.to_string(),
    };
    let prompt = match parsed.prompt {
        None => String::new(),
        Some(Prompt::Text(text)) => text,
        Some(Prompt::Messages(messages)) => messages.into_iter().map(|m| m.content).collect::<Vec<_>>().join("\n"),
    };
    let input = RewardInput {
        response: parsed.response,
        ground_truth,
        data_source: parsed.data_source,
        prompt,
        question: parsed.question.unwrap_or_default(),
    };
    Item { line, id: parsed.id, input }
}

/// Read every line; malformed lines are all reported, each with its file and line number.
pub fn read_items(path: &Path) -> anyhow::Result<Vec<Item>> {
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| anyhow::anyhow!("{}:{number}: cannot read: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(parsed) => items.push(to_item(number, parsed)),
            Err(e) => problems.push(format!("{}:{number}: {}", path.display(), describe(&e))),
        }
    }
    if !problems.is_empty() {
        let shown = problems.len().min(20);
        let more =
            if problems.len() > shown { format!("\n... and {} more", problems.len() - shown) } else { String::new() };
        anyhow::bail!(
            "{} malformed line(s) (each needs string fields `response` and `data_source`, and `ground_truth`):\n{}{more}",
            problems.len(),
            problems[..shown].join("\n")
        );
    }
    if items.is_empty() {
        anyhow::bail!("{} has no responses to score", path.display());
    }
    Ok(items)
}

/// serde's message without its "at line 1 column N" (there is one JSON value per line).
fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => format!("{} (column {})", &text[..at], error.column()),
        None => text,
    }
}

/// The reward components of this run: the config's `[reward]`, with the judge set to `--judge-url`.
fn reward_config(global: &GlobalArgs, args: &Args) -> anyhow::Result<longrl_config::Config> {
    let mut config = global.load_config()?;
    if let (Some(url), Some(model)) = (&args.judge_url, &args.judge_model) {
        let settings = json!({ "url": url, "model": model });
        match config.reward.components.iter_mut().find(|c| c.name == "judge") {
            Some(judge) => {
                if let (Some(table), Some(new)) = (judge.config.as_object_mut(), settings.as_object()) {
                    table.extend(new.clone());
                }
            }
            None => config.reward.components.push(ComponentConfig { name: "judge".into(), config: settings }),
        }
    }
    Ok(config)
}

#[derive(Default)]
struct Tally {
    /// Scored responses (the mean's divisor).
    n: usize,
    sum: f64,
    unscored: usize,
}

impl Tally {
    /// `None` when nothing was scored: no made-up 0.
    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let items = read_items(&args.data)?;
    let config = reward_config(global, &args)?;
    let plugins = global.load_plugins(&config)?;
    let ctx = ComponentContext { run_dir: None, seed: config.seed, device: "cpu".into() };
    let rewards = RewardSet::from_config(&config.reward, &plugins, &ctx)?;
    let mut sources: Vec<String> = items.iter().map(|i| i.input.data_source.clone()).collect();
    sources.sort();
    sources.dedup();
    rewards.check_sources(&sources).map_err(|e| anyhow::anyhow!("{}: {e:#}", args.data.display()))?;

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut metrics: BTreeMap<String, f64> = BTreeMap::new();
    for chunk in items.chunks(args.batch_size as usize) {
        let inputs: Vec<RewardInput> = chunk.iter().map(|i| i.input.clone()).collect();
        let scores = rewards.score(&inputs)?;
        for (item, score) in chunk.iter().zip(scores) {
            let tally = tallies.entry(item.input.data_source.clone()).or_default();
            let unscored = is_unscored(&score);
            if unscored {
                tally.unscored += 1;
            } else {
                tally.n += 1;
                tally.sum += f64::from(score.score);
            }
            let record = json!({
                "line": item.line,
                "id": item.id,
                "data_source": item.input.data_source,
                "score": (!unscored).then_some(score.score),
                "decided_by": score.decided_by,
                "details": score.details,
            });
            writeln!(out, "{record}")?;
        }
        for (key, value) in rewards.take_metrics()? {
            *metrics.entry(key).or_default() += value;
        }
    }
    let total = tallies.values().fold(Tally::default(), |a, t| Tally {
        n: a.n + t.n,
        sum: a.sum + t.sum,
        unscored: a.unscored + t.unscored,
    });
    let by_source: serde_json::Map<String, serde_json::Value> = tallies
        .iter()
        .map(|(source, t)| (source.clone(), json!({ "n": t.n, "mean_score": t.mean(), "unscored": t.unscored })))
        .collect();
    let summary = json!({ "summary": {
        "n": total.n,
        "mean_score": total.mean(),
        "unscored": total.unscored,
        "by_source": by_source,
        "metrics": metrics,
    } });
    writeln!(out, "{summary}")?;
    out.flush()?;
    for (source, t) in &tallies {
        let mean = t.mean().map_or("-".to_string(), |m| format!("{m:.4}"));
        eprintln!("{source:<32} n={:<6} mean score {mean} unscored {}", t.n, t.unscored);
    }
    Ok(())
}
