//! `longrl data synth`: synthetic long-document QA, SFT traces and a tokenizer for the embedded default.

use std::path::PathBuf;

use crate::cli::GlobalArgs;
use longrl_data::synth::{self, Kind, SynthOptions};

#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Generate synthetic long-document QA (verl parquet + JSONL), SFT traces and a BPE tokenizer.
    Synth(SynthArgs),
}

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Output directory (created if missing; files in it are replaced).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// RL training examples.
    #[arg(long, default_value_t = 1000)]
    pub train: usize,
    /// Evaluation examples.
    #[arg(long, default_value_t = 200)]
    pub eval: usize,
    /// SFT traces (from examples of their own); defaults to `--train`.
    #[arg(long)]
    pub sft: Option<usize>,
    /// Target prompt lengths in tokens of the trained tokenizer (approximate, see the docs).
    #[arg(long, value_delimiter = ',', default_value = "512,1024,2048")]
    pub lengths: Vec<u32>,
    /// Target lengths of the SFT examples (default: `--lengths`).
    #[arg(long, value_delimiter = ',')]
    pub sft_lengths: Vec<u32>,
    /// Question kinds: lookup, multihop, numeric, choice.
    #[arg(long, value_delimiter = ',', default_value = "lookup,multihop,numeric,choice")]
    pub kinds: Vec<String>,
    /// Largest BPE vocabulary to train.
    #[arg(long, default_value_t = 8192)]
    pub vocab_size: usize,
}

impl SynthArgs {
    pub fn options(&self) -> anyhow::Result<SynthOptions> {
        let kinds = self
            .kinds
            .iter()
            .map(|k| {
                Kind::parse(k.trim()).ok_or_else(|| {
                    anyhow::anyhow!("--kinds: unknown kind `{k}` (expected lookup, multihop, numeric, choice)")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let options = SynthOptions {
            seed: self.seed,
            train: self.train,
            eval: self.eval,
            sft: self.sft.unwrap_or(self.train),
            lengths: self.lengths.clone(),
            sft_lengths: self.sft_lengths.clone(),
            kinds,
            vocab_size: self.vocab_size,
        };
        options.validate()?;
        Ok(options)
    }
}

pub fn run(command: DataCommand, _global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        DataCommand::Synth(args) => {
            let options = args.options()?;
            let summary = synth::write(&options, &args.out)?;
            println!("wrote {} (tokenizer: {} tokens)", args.out.display(), summary.vocab_size);
            for (split, buckets) in &summary.lengths {
                for (bucket, s) in buckets {
                    println!(
                        "  {split:<5} target {bucket:>5}: {:>5} examples, prompt tokens min {} mean {:.0} max {}",
                        s.examples, s.min_tokens, s.mean_tokens, s.max_tokens
                    );
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_parses_kinds_and_lengths() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            data: DataCommand,
        }
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap();
        let DataCommand::Synth(args) = parse(&[
            "synth",
            "--out",
            "x",
            "--seed",
            "4",
            "--train",
            "10",
            "--lengths",
            "300,600",
            "--kinds",
            "lookup,numeric",
        ])
        .data;
        let options = args.options().unwrap();
        assert_eq!((options.seed, options.train, options.sft), (4, 10, 10));
        assert_eq!(options.lengths, vec![300, 600]);
        assert_eq!(options.kinds, vec![Kind::Lookup, Kind::Numeric]);
        let DataCommand::Synth(bad) = parse(&["synth", "--out", "x", "--kinds", "lookup,riddle"]).data;
        let error = bad.options().unwrap_err().to_string();
        assert!(error.contains("riddle"), "{error}");
    }
}
