//! `longrl report RUN_DIR`: rebuild the run report as one self-contained web page
//! (`RUN_DIR/report.html`: accuracy tables, curves, rollouts with highlighted behaviour cues).

use std::path::PathBuf;

use longrl_report::html::{PageOptions, write_report};

use crate::cli::GlobalArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run directory (holding metrics.jsonl).
    pub run_dir: PathBuf,
    /// Steps of logged rollouts shown on the page (spread over the run).
    #[arg(long, default_value_t = PageOptions::default().max_steps)]
    pub max_steps: usize,
}

pub fn run(args: Args, _global: &GlobalArgs) -> anyhow::Result<()> {
    let options = PageOptions { max_steps: args.max_steps, ..PageOptions::default() };
    println!("{}", write_report(&args.run_dir, options)?.display());
    Ok(())
}
