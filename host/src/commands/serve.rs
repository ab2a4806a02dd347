//! `longrl serve` (in progress).

use crate::cli::GlobalArgs;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("`longrl serve` is not available in this build yet")
}
