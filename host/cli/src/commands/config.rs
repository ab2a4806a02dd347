//! `longrl config show`: the merged configuration, as TOML.

use crate::cli::GlobalArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the config after merging defaults, the file, LONGRL_* variables and --set flags.
    Show,
}

pub fn run(command: ConfigCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show => {
            let config = global.load_config()?;
            print!("{}", config.to_toml()?);
            Ok(())
        }
    }
}
