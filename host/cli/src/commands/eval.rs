//! `longrl eval`: the seven long-context DocQA benchmarks, with a model or on saved predictions.
//! Flags override the `[eval]` config table.

use std::path::{Path, PathBuf};

use anyhow::Context;
use longrl_core::api::ComponentContext;
use longrl_core::device::device_name;

use crate::cli::GlobalArgs;
use longrl_eval::{self as eval, Bench, EvalSpec, Suite};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory (HF layout) handed to the policy plugin as its `model` key.
    #[arg(long, value_name = "DIR", conflicts_with = "predictions", required_unless_present = "predictions")]
    pub model: Option<PathBuf>,
    /// Benchmarks, comma-separated: docmath, frames, 2wikimqa, hotpotqa, musique, narrativeqa, qasper
    /// (default: `eval.benchmarks`).
    #[arg(long, value_name = "NAME[,NAME…]", value_delimiter = ',')]
    pub bench: Vec<String>,
    /// Directory of `<bench>.jsonl` (or `.json`) files, or one file when one benchmark is named.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Evaluate the first N rows of each benchmark.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Responses per question (K): mean accuracy and pass@k.
    #[arg(long, value_name = "K")]
    pub samples: Option<u32>,
    /// OpenAI-compatible base URL of the LLM judge (score = max(rule, judge)).
    #[arg(long, value_name = "URL")]
    pub judge_url: Option<String>,
    /// Model name sent to the judge.
    #[arg(long, value_name = "NAME")]
    pub judge_model: Option<String>,
    /// Score saved responses instead of running a model: JSON lines
    /// `{"bench": NAME, "id": ROW_ID, "response": TEXT}`.
    #[arg(long, value_name = "FILE")]
    pub predictions: Option<PathBuf>,
    /// Write examples.jsonl, summary.md and summary.json here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[arg(long, value_name = "TOKENS")]
    pub max_input_tokens: Option<u32>,
    #[arg(long, value_name = "TOKENS")]
    pub max_output_tokens: Option<u32>,
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Prompts per generation call.
    #[arg(long, value_name = "N")]
    pub batch_prompts: Option<u32>,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut config = global.load_config()?;
    let eval_config = &mut config.eval;
    if !args.bench.is_empty() {
        eval_config.benchmarks = args.bench.clone();
        // Per-benchmark files of the config do not apply to benchmarks named on the command line
        // with their own --data.
        if args.data.is_some() {
            eval_config.files.clear();
        }
    }
    if let Some(data) = &args.data {
        eval_config.data = data.clone();
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = args.$field.clone() { eval_config.$field = v; } )* };
    }
    set!(
        limit,
        samples,
        judge_url,
        judge_model,
        max_input_tokens,
        max_output_tokens,
        temperature,
        top_p,
        batch_prompts
    );
    let eval_config = config.eval.clone();

    let plugins = global.load_plugins(&config)?;
    let device = config.device.resolve()?;
    let ctx = ComponentContext { run_dir: args.out.clone(), seed: config.seed, device: device_name(device) };
    let rewards = eval::eval_rewards(&plugins, &eval_config, &ctx)?;

    let summary = if let Some(predictions) = &args.predictions {
        let benches = Bench::parse_list(&eval_config.benchmarks)?;
        let mut suites = Vec::new();
        for (bench, file) in eval::bench::resolve_files(&benches, &eval_config.data, &eval_config.files)? {
            suites.push(Suite::load(bench, &file, eval_config.limit)?);
        }
        eval::score_predictions(&rewards, &suites, predictions, &label_of(predictions), args.out.as_deref())?
    } else {
        let model = args.model.as_ref().expect("clap requires --model without --predictions");
        if !model.is_dir() {
            anyhow::bail!("--model {}: not a model directory", model.display());
        }
        let spec = EvalSpec::from_config(&eval_config, label_of(model), &config.policy.name)?;
        let mut policy_config = match &config.policy.config {
            serde_json::Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        policy_config.insert("model".into(), serde_json::Value::String(model.display().to_string()));
        let mut policy = plugins
            .policy(&config.policy.name, &serde_json::Value::Object(policy_config), &ctx)
            .with_context(|| format!("loading the policy from {}", model.display()))?;
        let summary = eval::run_eval(policy.as_mut(), &rewards, &spec, args.out.as_deref());
        drop(policy); // before the plugins: its code lives in a plugin library
        summary?
    };
    drop(rewards);
    drop(plugins);
    print!("{}", eval::report::render_markdown(&summary));
    if let Some(out) = &args.out {
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// The model's name in the table: the model directory's or predictions file's name.
fn label_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let name = if path.is_dir() { path.file_name() } else { path.file_stem() };
    name.map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned())
}
