//! `longrl plot RUN_DIR`: PNG curves of a run's metrics (reward, accuracy, entropy, response
//! length, SFT loss; phase boundaries marked).

use std::path::PathBuf;

use crate::cli::GlobalArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run directory (holding metrics.jsonl).
    pub run_dir: PathBuf,
    /// Where the PNG files go (default: RUN_DIR/plots).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args, _global: &GlobalArgs) -> anyhow::Result<()> {
    let out = args.out.unwrap_or_else(|| args.run_dir.join("plots"));
    let files = longrl_metrics::plot::plot_run(&args.run_dir, &out)?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}
