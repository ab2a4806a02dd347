//! The cells of a sweep (variant x seed), their run directories and the exact `longrl train`
//! arguments of each.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Inputs, SweepArgs, Variant};

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub variant: String,
    pub seed: u64,
    pub run_dir: PathBuf,
    pub log: PathBuf,
    /// The arguments after `longrl` (`train --config ... --run-dir ... --set ...`), without `--resume`.
    pub args: Vec<String>,
}

impl Cell {
    pub fn label(&self) -> String {
        format!("variant `{}` seed {}", self.variant, self.seed)
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub out: PathBuf,
    pub longrl: PathBuf,
    pub seeds: Vec<u64>,
    pub variants: Vec<Variant>,
    /// `longrl data synth` arguments when the sweep makes each seed's data.
    pub synth: Option<Vec<String>>,
    /// Variant-major: every seed of the first variant, then the next variant's.
    pub cells: Vec<Cell>,
}

/// Where a seed's synthetic data lives.
pub fn data_dir(out: &Path, seed: u64) -> PathBuf {
    out.join("data").join(format!("seed-{seed}"))
}

impl Plan {
    pub fn new(args: &SweepArgs, inputs: &Inputs) -> anyhow::Result<Plan> {
        if args.seeds.is_empty() {
            anyhow::bail!("--seeds: at least one seed is needed");
        }
        let mut seen = BTreeSet::new();
        if let Some(s) = args.seeds.iter().find(|s| !seen.insert(**s)) {
            anyhow::bail!("--seeds: seed {s} is listed twice");
        }
        let variants = if args.variants.is_empty() {
            vec![Variant { name: "base".into(), overrides: vec![] }]
        } else {
            args.variants.clone()
        };
        let mut names = BTreeSet::new();
        if let Some(v) = variants.iter().find(|v| !names.insert(v.name.as_str())) {
            anyhow::bail!("--variant: the name `{}` is used twice", v.name);
        }
        let synth = args.synth.as_ref().map(|s| s.split_whitespace().map(String::from).collect::<Vec<_>>());
        if let Some(words) = &synth
            && let Some(w) = words.iter().find(|w| *w == "--seed" || *w == "--out")
        {
            anyhow::bail!("--synth: leave `{w}` out, the sweep sets it per seed");
        }
        let out = absolute(&args.out)?;
        let mut cells = Vec::new();
        for variant in &variants {
            for &seed in &args.seeds {
                let data = data_dir(&out, seed);
                let expand = |text: &str| -> anyhow::Result<String> {
                    if text.contains("{data}") && synth.is_none() {
                        anyhow::bail!("`{text}`: `{{data}}` needs --synth (it is the seed's synthetic data directory)");
                    }
                    Ok(text.replace("{seed}", &seed.to_string()).replace("{data}", &data.display().to_string()))
                };
                let run_dir = out.join("runs").join(&variant.name).join(format!("seed-{seed}"));
                let mut cell_args = vec!["train".to_string()];
                if let Some(config) = &inputs.config {
                    cell_args.extend(["--config".into(), config.display().to_string()]);
                }
                cell_args.extend(["--run-dir".into(), run_dir.display().to_string()]);
                let mut sets = vec![format!("seed={seed}")];
                if synth.is_some() {
                    for (key, file) in [
                        ("data.train_files", "train.parquet"),
                        ("data.sft_files", "sft.jsonl"),
                        ("data.eval_files", "eval.parquet"),
                    ] {
                        sets.push(format!("{key}=[{}]", toml_string(&data.join(file))));
                    }
                }
                for o in inputs.overrides.iter().chain(&variant.overrides) {
                    sets.push(expand(o)?);
                }
                for s in sets {
                    cell_args.extend(["--set".into(), s]);
                }
                cells.push(Cell {
                    variant: variant.name.clone(),
                    seed,
                    log: out.join("logs").join(format!("{}-seed-{seed}.log", variant.name)),
                    run_dir,
                    args: cell_args,
                });
            }
        }
        Ok(Plan { out, longrl: inputs.longrl.clone(), seeds: args.seeds.clone(), variants, synth, cells })
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) })
}

/// A TOML basic string holding `path`.
fn toml_string(path: &Path) -> String {
    serde_json::Value::String(path.display().to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(seeds: &[u64], variants: &[&str], synth: Option<&str>) -> SweepArgs {
        SweepArgs {
            seeds: seeds.to_vec(),
            variants: variants.iter().map(|v| v.parse().unwrap()).collect(),
            out: "/tmp/sw".into(),
            jobs: 1,
            synth: synth.map(String::from),
            report_only: false,
        }
    }

    fn inputs(overrides: &[&str]) -> Inputs {
        Inputs {
            longrl: "longrl".into(),
            config: Some("configs/tiny.toml".into()),
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn cells_carry_seed_placeholders_and_variant_overrides_last() {
        let plan = Plan::new(
            &args(&[3, 4], &["a", "b:train.lr=1e-4"], Some("--train 8")),
            &inputs(&["policy.config.init.seed={seed}", "policy.config.init.tokenizer=\"{data}/tokenizer.json\""]),
        )
        .unwrap();
        assert_eq!(plan.cells.len(), 4);
        let cell = &plan.cells[3];
        assert_eq!((cell.variant.as_str(), cell.seed), ("b", 4));
        assert_eq!(cell.run_dir, PathBuf::from("/tmp/sw/runs/b/seed-4"));
        let sets: Vec<&str> = cell.args.windows(2).filter(|w| w[0] == "--set").map(|w| w[1].as_str()).collect();
        assert_eq!(
            sets,
            vec![
                "seed=4",
                "data.train_files=[\"/tmp/sw/data/seed-4/train.parquet\"]",
                "data.sft_files=[\"/tmp/sw/data/seed-4/sft.jsonl\"]",
                "data.eval_files=[\"/tmp/sw/data/seed-4/eval.parquet\"]",
                "policy.config.init.seed=4",
                "policy.config.init.tokenizer=\"/tmp/sw/data/seed-4/tokenizer.json\"",
                "train.lr=1e-4",
            ]
        );
        assert_eq!(&cell.args[..5], ["train", "--config", "configs/tiny.toml", "--run-dir", "/tmp/sw/runs/b/seed-4"]);
    }

    #[test]
    fn mistakes_are_refused() {
        let e = |a: SweepArgs, i: Inputs| Plan::new(&a, &i).unwrap_err().to_string();
        assert!(e(args(&[1, 1], &[], None), inputs(&[])).contains("seed 1 is listed twice"));
        assert!(e(args(&[1], &["a", "a:x=1"], None), inputs(&[])).contains("`a` is used twice"));
        assert!(e(args(&[1], &[], None), inputs(&["x=\"{data}\""])).contains("needs --synth"));
        assert!(e(args(&[1], &[], Some("--seed 3")), inputs(&[])).contains("leave `--seed` out"));
        let plan = Plan::new(&args(&[0], &[], None), &inputs(&[])).unwrap();
        assert_eq!(plan.variants[0].name, "base");
    }
}
