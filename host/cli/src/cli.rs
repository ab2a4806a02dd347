//! Command-line entry: global options, subcommand dispatch, error reporting.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser};

use crate::commands::Command;
use longrl_config::{Config, ConfigSources};
use longrl_plugins::{PluginSet, search_paths};

use crate::logging::{self, LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "longrl",
    version,
    about = "Long-context reasoning RL (the QwenLong-L1 recipe) with swappable plugins"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// TOML config file (layered over the built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override a config key: `--set train.lr=1e-6`; array elements by index: `--set curriculum.config.phases.0.steps=2` (repeatable; applied last).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Log filter: error, warn, info, debug, trace, or a tracing filter (`longrl=debug`).
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl GlobalArgs {
    pub fn sources(&self) -> ConfigSources {
        ConfigSources { file: self.config.clone(), overrides: self.overrides.clone() }
    }

    /// The merged config of this invocation.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let config = Config::load(&self.sources())?;
        if config.threads > 0 {
            // Process-wide and before any tensor work, so the plugins' libtorch calls use it too.
            tch::set_num_threads(config.threads as i32);
        }
        Ok(config)
    }

    /// Every plugin on the search path of `config`.
    pub fn load_plugins(&self, config: &Config) -> anyhow::Result<PluginSet> {
        Ok(PluginSet::load(&search_paths(&config.plugins.paths))?)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.global.log_level, cli.global.log_format);
    match crate::commands::run(cli.command, &cli.global) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_key_sets_libtorch_threads() {
        let global = GlobalArgs { overrides: vec!["threads=1".into()], ..GlobalArgs::default() };
        assert_eq!(global.load_config().unwrap().threads, 1);
        assert_eq!(tch::get_num_threads(), 1);
    }
}
