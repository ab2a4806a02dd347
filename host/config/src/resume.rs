//! What a resumed run may change: the config stored with a run against the one it resumes with.

use crate::Config;

/// Keys (and sections) that change nothing the trainer computes: where files go, how progress is
/// shown and kept, when to stop, and the evaluation after each stage.
const FREE_ON_RESUME: &[&str] = &[
    "run_dir",
    "plugins",
    "train.progress_bar",
    "train.tensorboard",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.max_steps",
    "eval",
    "data.eval_files",
    "data.max_eval_examples",
    "data.cache_lengths",
];

/// One changed key: its dotted path and both values as TOML (`-` when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub stored: String,
    pub now: String,
}

/// The keys in which `now` differs from the `stored` config of a run (as `config.toml` holds it)
/// that change what the trainer computes, so that a resumed run would not be the run it continues.
pub fn changes_on_resume(stored: &toml::Table, now: &Config) -> anyhow::Result<Vec<Change>> {
    let toml::Value::Table(now) = toml::Value::try_from(now)? else { anyhow::bail!("a config is a table") };
    let (mut before, mut after) = (Vec::new(), Vec::new());
    flatten("", stored, &mut before);
    flatten("", &now, &mut after);
    let mut keys: Vec<&String> = before.iter().chain(&after).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    let find = |list: &[(String, toml::Value)], key: &str| list.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let shown = |v: &Option<toml::Value>| v.as_ref().map_or("-".to_string(), ToString::to_string);
    Ok(keys
        .into_iter()
        .filter(|key| !FREE_ON_RESUME.iter().any(|free| *key == free || key.starts_with(&format!("{free}."))))
        .filter_map(|key| {
            let (a, b) = (find(&before, key), find(&after, key));
            (a != b).then(|| Change { key: key.clone(), stored: shown(&a), now: shown(&b) })
        })
        .collect())
}

/// Leaves of `table` as dotted keys; arrays are leaves.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (key, value) in table {
        let dotted = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(inner) => flatten(&dotted, inner, out),
            other => out.push((dotted, other.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(config: &Config) -> toml::Table {
        config.to_toml().unwrap().parse().unwrap()
    }

    #[test]
    fn only_keys_that_change_the_training_count() {
        let config = Config::default();
        assert!(changes_on_resume(&stored(&config), &config).unwrap().is_empty());
        let mut now = config.clone();
        now.run_dir = "elsewhere".into();
        now.train.max_steps = 10;
        now.train.progress_bar = false;
        now.eval.limit = 3;
        assert!(changes_on_resume(&stored(&config), &now).unwrap().is_empty(), "none of these change the trajectory");
        now.train.optim.lr = 1e-5;
        now.algorithm.config = serde_json::json!({"clip_high": 0.28});
        let changes = changes_on_resume(&stored(&config), &now).unwrap();
        let shown = |x: f64| toml::Value::Float(x).to_string();
        assert_eq!(
            changes,
            vec![
                Change { key: "algorithm.config.clip_high".into(), stored: "-".into(), now: shown(0.28) },
                Change { key: "train.lr".into(), stored: shown(2e-6), now: shown(1e-5) },
            ]
        );
    }
}
