//! The sweep's command-line arguments and the `NAME:KEY=VALUE,...` variant syntax.

use std::path::PathBuf;
use std::str::FromStr;

/// `longrl sweep` (the config and `--set` overrides are the global options of `longrl`).
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// Seeds, comma-separated: each run gets `--set seed=S`, and `{seed}` in any override is replaced by S.
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub seeds: Vec<u64>,
    /// A named variant, `NAME:KEY=VALUE,KEY=VALUE` (repeatable; `NAME` or `NAME:` alone: the config as
    /// it is). The first variant is the baseline of the paired differences. None given: one variant `base`.
    #[arg(long = "variant", value_name = "NAME:KEY=VALUE,...")]
    pub variants: Vec<Variant>,
    /// Sweep directory: runs in OUT/runs/VARIANT/seed-S, logs in OUT/logs, tables and plots in OUT.
    #[arg(long, value_name = "DIR", default_value = "runs/sweep")]
    pub out: PathBuf,
    /// Runs at a time, each a `longrl train` process (mind the config's `threads`).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Make each seed's data with `longrl data synth --seed S --out OUT/data/seed-S ARGS` (ARGS one
    /// string, e.g. "--train 600 --eval 240 --lengths 128,256,512") and point `data.train_files`,
    /// `data.sft_files` and `data.eval_files` at it; `{data}` in any override is that directory.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub synth: Option<String>,
    /// Run nothing: rebuild the tables and plots from the run directories there are.
    #[arg(long)]
    pub report_only: bool,
}

/// One variant: a name and the `--set` overrides that make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: String,
    pub overrides: Vec<String>,
}

impl FromStr for Variant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, rest) = text.split_once(':').unwrap_or((text, ""));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!(
                "variant `{text}`: the name before `:` must be letters, digits, `-`, `_` or `.` (it names a directory)"
            ));
        }
        let overrides = split_overrides(rest)?;
        for o in &overrides {
            if !o.contains('=') {
                return Err(format!("variant `{name}`: `{o}` is not KEY=VALUE"));
            }
        }
        Ok(Variant { name: name.to_string(), overrides })
    }
}

/// Split `a=1,b=[1, 2],c="x,y"` at the commas outside brackets, braces and quotes.
fn split_overrides(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if quote.is_some() || depth != 0 {
        return Err(format!("`{text}`: unbalanced quotes or brackets"));
    }
    out.push(current);
    Ok(out.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse_with_commas_inside_values() {
        let v: Variant =
            "uniform:sampler.name=\"uniform\",data.train_files=[\"a,b\", \"c\"],train.lr=1e-4".parse().unwrap();
        assert_eq!(v.name, "uniform");
        assert_eq!(v.overrides, vec!["sampler.name=\"uniform\"", "data.train_files=[\"a,b\", \"c\"]", "train.lr=1e-4"]);
        assert_eq!("base".parse::<Variant>().unwrap(), Variant { name: "base".into(), overrides: vec![] });
        assert_eq!("base:".parse::<Variant>().unwrap().overrides, Vec::<String>::new());
    }

    #[test]
    fn bad_variants_are_refused_with_the_reason() {
        assert!("a/b:x=1".parse::<Variant>().unwrap_err().contains("the name before `:`"));
        assert!(":x=1".parse::<Variant>().is_err());
        assert!("v:train.lr".parse::<Variant>().unwrap_err().contains("`train.lr` is not KEY=VALUE"));
        assert!("v:x=[1,2".parse::<Variant>().unwrap_err().contains("unbalanced"));
    }
}
