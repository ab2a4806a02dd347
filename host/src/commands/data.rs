//! `longrl data synth` (in progress).

use crate::cli::GlobalArgs;

#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Generate synthetic long-document QA.
    Synth {},
}

pub fn run(_command: DataCommand, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("`longrl data synth` is not available in this build yet")
}
