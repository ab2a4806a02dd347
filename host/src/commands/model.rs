//! `longrl model init` (in progress).

use crate::cli::GlobalArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ModelCommand {
    /// Create a randomly initialised model in HF layout.
    Init {},
}

pub fn run(_command: ModelCommand, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("`longrl model init` is not available in this build yet")
}
