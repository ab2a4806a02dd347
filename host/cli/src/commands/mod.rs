//! One module per subcommand: its arguments and its `run`.

pub mod behaviours;
pub mod config;
pub mod data;
pub mod difficulty;
pub mod eval;
pub mod generate;
pub mod model;
pub mod plot;
pub mod plugins;
pub mod report;
pub mod score;
pub mod serve;
pub mod train;

use clap::Subcommand;

use crate::cli::GlobalArgs;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List, inspect and scaffold plugin libraries.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Show the merged configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Generate text with a model directory (HF layout).
    Generate(generate::Args),
    /// Create models.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Serve a model over an OpenAI-compatible HTTP API.
    Serve(serve::Args),
    /// Score saved responses with the configured rewards.
    Score(score::Args),
    /// Run the recipe: SFT warm-up, then the RL phases of the curriculum.
    Train(train::Args),
    /// Score a dataset's difficulty offline (G rollouts per example).
    Difficulty(difficulty::Args),
    /// Draw PNG curves of a run's metrics.
    Plot(plot::Args),
    /// Run the config over seeds and named variants: one run each (finished ones skipped), tables of
    /// the mean over seeds with its interval, paired differences between variants, curves per variant.
    Sweep(longrl_sweep::SweepArgs),
    /// Rebuild a run's report as one self-contained web page (RUN_DIR/report.html).
    Report(report::Args),
    /// Count the reasoning behaviours (grounding, subgoals, backtracking, verification) in a run's logged rollouts.
    Behaviours(behaviours::Args),
    /// Make data sets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Evaluate a model on the long-context DocQA benchmarks.
    Eval(eval::Args),
}

pub fn run(command: Command, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        Command::Plugins(c) => plugins::run(c, global),
        Command::Config(c) => config::run(c, global),
        Command::Generate(a) => generate::run(a, global),
        Command::Model(c) => model::run(c, global),
        Command::Serve(a) => serve::run(a, global),
        Command::Score(a) => score::run(a, global),
        Command::Train(a) => train::run(a, global),
        Command::Difficulty(a) => difficulty::run(a, global),
        Command::Plot(a) => plot::run(a, global),
        Command::Sweep(a) => longrl_sweep::run_cli(&a, global.config.clone(), global.overrides.clone()),
        Command::Report(a) => report::run(a, global),
        Command::Behaviours(a) => behaviours::run(a, global),
        Command::Data(c) => data::run(c, global),
        Command::Eval(a) => eval::run(a, global),
    }
}
