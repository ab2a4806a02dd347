//! The run configuration: built-in defaults, then the TOML file (`--config`), then `LONGRL_*`
//! environment variables (`__` nests), then `--set key=value` flags; the last one wins.
//! Unknown keys are errors that name the key and where it came from.

mod data;
mod dist;
mod eval;
mod resume;
mod train;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use longrl_core::device::DeviceChoice;
use serde::{Deserialize, Serialize};

pub use longrl_inference::config::RolloutConfig;

pub use data::*;
pub use dist::*;
pub use eval::*;
pub use resume::{Change, changes_on_resume};
pub use train::*;

/// Environment variables with the `LONGRL_` prefix that are not config keys.
const NON_CONFIG_ENV: &[&str] = &["PLUGIN_PATH", "LOG"];

/// Keys of the batch schedule the host executes, which algorithm tables held before they moved to
/// `[train]`: an algorithm table naming one is refused with where it went.
const MOVED_TO_TRAIN: &[&str] =
    &["mini_batch_prompts", "epochs", "dynamic_sampling", "max_gen_batches", "mask_truncated"];

/// One component: which one (`name`) and its own config table, passed to it as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    pub name: String,
    #[serde(default = "empty_table")]
    pub config: serde_json::Value,
}

fn empty_table() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl ComponentConfig {
    pub fn named(name: &str) -> Self {
        ComponentConfig { name: name.to_string(), config: empty_table() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Directories or library files searched for plugins, before `LONGRL_PLUGIN_PATH` and the
    /// directory of the `longrl` binary.
    pub paths: Vec<PathBuf>,
}

/// Rewards are scored in order; with `cascade`, a later reward is asked only for responses whose best
/// score so far is below `max_score` (the hybrid reward: the judge only when the rule fails).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    pub components: Vec<ComponentConfig>,
    pub cascade: bool,
    pub max_score: f32,
    /// A rollout no reward could decide (the judge unreachable where the rule failed) is unscored:
    /// left out of its group's statistics and of the loss, and counted (`reward/unscored`). A step
    /// whose unscored share is above this stops the run with an error.
    pub max_unscored_fraction: f64,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            components: vec![ComponentConfig::named("rule")],
            cascade: true,
            max_score: 1.0,
            max_unscored_fraction: 0.1,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub seed: u64,
    /// `auto` (CUDA when available), `cpu` or `cuda:N`.
    pub device: DeviceChoice,
    /// libtorch's CPU threads; 0 keeps its default (one per core). Tiny models run faster on one:
    /// thread synchronisation then costs more than the matrix products.
    pub threads: u32,
    /// Where metrics, checkpoints and reports go.
    pub run_dir: PathBuf,
    pub plugins: PluginsConfig,
    pub policy: ComponentConfig,
    pub algorithm: ComponentConfig,
    pub curriculum: ComponentConfig,
    pub sampler: ComponentConfig,
    pub reward: RewardConfig,
    pub data: DataConfig,
    pub sft: SftConfig,
    pub train: TrainConfig,
    /// Where RL rollouts are generated: the policy itself, or vLLM / SGLang servers.
    pub rollout: RolloutConfig,
    pub eval: EvalConfig,
    pub dist: DistConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 0,
            device: DeviceChoice::Auto,
            threads: 0,
            run_dir: PathBuf::from("runs/default"),
            plugins: PluginsConfig::default(),
            policy: ComponentConfig::named("qwen"),
            algorithm: ComponentConfig::named("grpo"),
            curriculum: ComponentConfig::named("phased"),
            sampler: ComponentConfig::named("uniform"),
            reward: RewardConfig::default(),
            data: DataConfig::default(),
            sft: SftConfig::default(),
            train: TrainConfig::default(),
            rollout: RolloutConfig::default(),
            eval: EvalConfig::default(),
            dist: DistConfig::default(),
        }
    }
}

/// Where the layers come from.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    pub file: Option<PathBuf>,
    /// `key=value` pairs; the value is read as TOML (`3`, `true`, `"x"`, `[1, 2]`), else as a string.
    pub overrides: Vec<String>,
}

impl Config {
    pub fn figment(sources: &ConfigSources) -> anyhow::Result<Figment> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = &sources.file {
            if !file.exists() {
                anyhow::bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(environment_layer());
        for item in &sources.overrides {
            let (key, value) = parse_override(item)?;
            let (key, value) = into_array_element(&figment, item, &key, value)?;
            figment = figment.merge(SetFlag { item: item.clone(), data: Serialized::global(&key, value) });
        }
        Ok(figment)
    }

    /// Merge every layer and check the result.
    pub fn load(sources: &ConfigSources) -> anyhow::Result<Config> {
        let figment = Self::figment(sources)?;
        let config: Config = figment.extract().map_err(|error| {
            // serde buffers flattened keys (the optimizer keys of `[sft]` and `[train]`), so their
            // errors name only the section: read those keys on their own to name the key.
            let precise = ["sft", "train"].into_iter().find_map(|section| {
                figment.focus(section).extract::<OptimConfig>().err().map(|mut e| {
                    e.path.insert(0, section.to_string());
                    e
                })
            });
            anyhow::anyhow!(describe_figment_error(precise.unwrap_or(error)))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks serde cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.reward.components.is_empty() {
            anyhow::bail!("config key `reward.components`: at least one reward is needed");
        }
        let fraction = self.reward.max_unscored_fraction;
        if !(0.0..=1.0).contains(&fraction) {
            anyhow::bail!("config key `reward.max_unscored_fraction`: must be in [0, 1], got {fraction}");
        }
        if let Some(table) = self.algorithm.config.as_object() {
            let moved: Vec<&str> = MOVED_TO_TRAIN.iter().copied().filter(|key| table.contains_key(*key)).collect();
            if !moved.is_empty() {
                let keys = |prefix: &str| moved.iter().map(|k| format!("`{prefix}{k}`")).collect::<Vec<_>>().join(", ");
                anyhow::bail!(
                    "config key(s) {}: the batch schedule moved to `[train]`: set {} instead",
                    keys("algorithm.config."),
                    keys("train.")
                );
            }
        }
        self.rollout.validate()?;
        self.dist.validate()
    }

    pub fn to_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

/// `LONGRL_<SECTION>[__<KEY>...]` variables whose first segment is a config key. Others (a tool's
/// `LONGRL_SOMETHING` that is no config key) are left out with a warning rather than failing every
/// command; a variable naming a real section with an unknown key stays an error naming it.
fn environment_layer() -> Env {
    let top_level: Vec<String> = match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(keys)) => keys.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let is_config = |section: &str| top_level.iter().any(|key| key.eq_ignore_ascii_case(section));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let Some(rest) = name.strip_prefix("LONGRL_") else { continue };
        let section = rest.split("__").next().unwrap_or_default();
        if !NON_CONFIG_ENV.contains(&rest) && !is_config(section) {
            tracing::warn!(
                "environment variable {name} is not a config key (no top-level key `{}`): ignored",
                section.to_lowercase()
            );
        }
    }
    Env::prefixed("LONGRL_").split("__").ignore(NON_CONFIG_ENV).filter(move |key| {
        let section = key.as_str().split('.').next().unwrap_or_default();
        top_level.iter().any(|k| k.eq_ignore_ascii_case(section))
    })
}

/// `a.b.c=value` → (`a.b.c`, value parsed as a TOML value, or the raw string).
pub fn parse_override(item: &str) -> anyhow::Result<(String, toml::Value)> {
    let Some((key, raw)) = item.split_once('=') else {
        anyhow::bail!("--set `{item}`: expected key=value");
    };
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        anyhow::bail!("--set `{item}`: `{key}` is not a dotted key");
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    Ok((key.to_string(), value))
}

/// A key with a numeric segment that indexes an array of the layers merged so far
/// (`curriculum.config.phases.0.steps=2`) becomes an override of the whole array with that
/// element changed: figment merges keys into tables only, and would replace the array by a table
/// `{ "0" = ... }`. Keys without such a segment come back unchanged.
fn into_array_element(
    figment: &Figment,
    item: &str,
    key: &str,
    value: toml::Value,
) -> anyhow::Result<(String, toml::Value)> {
    let segments: Vec<&str> = key.split('.').collect();
    for at in 1..segments.len() {
        if segments[at].parse::<usize>().is_err() {
            continue;
        }
        let prefix = segments[..at].join(".");
        let Ok(current) = figment.find_value(&prefix) else { continue };
        if current.as_array().is_none() {
            continue;
        }
        let mut array = toml::Value::deserialize(&current)
            .map_err(|e| anyhow::anyhow!("--set `{item}`: reading `{prefix}`: {e}"))?;
        set_path(&mut array, &segments[at..], value).map_err(|e| anyhow::anyhow!("--set `{item}`: {e}"))?;
        return Ok((prefix, array));
    }
    Ok((key.to_string(), value))
}

/// Set `path` inside `target`: numeric segments index arrays (an existing element), others name
/// table keys (created when missing).
fn set_path(target: &mut toml::Value, path: &[&str], value: toml::Value) -> anyhow::Result<()> {
    let Some((first, rest)) = path.split_first() else {
        *target = value;
        return Ok(());
    };
    let slot = match target {
        toml::Value::Array(items) => {
            let len = items.len();
            let index: usize =
                first.parse().map_err(|_| anyhow::anyhow!("`{first}` is not an index into an array of {len}"))?;
            items
                .get_mut(index)
                .ok_or_else(|| anyhow::anyhow!("index {index} is out of range: the array has {len} element(s)"))?
        }
        toml::Value::Table(table) => {
            table.entry(first.to_string()).or_insert_with(|| toml::Value::Table(Default::default()))
        }
        other => anyhow::bail!("`{first}` reaches into a {}, which has no keys", other.type_str()),
    };
    set_path(slot, rest, value)
}

/// A `--set` flag as a figment provider, so errors name the flag it came from.
struct SetFlag {
    item: String,
    data: Serialized<toml::Value>,
}

impl figment::Provider for SetFlag {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("--set {}", self.item))
    }
    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.data.data()
    }
}

/// One line per error: the dotted key, what is wrong, and the layer it came from.
fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let origin = match &e.metadata {
                Some(meta) => match &meta.source {
                    Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
                    Some(figment::Source::Custom(c)) => format!(" (from {c})"),
                    _ if meta.name.contains("environment") => " (from LONGRL_* environment variables)".to_string(),
                    _ if meta.name.starts_with("--set") => format!(" (from {})", meta.name),
                    _ => format!(" (from {})", meta.name),
                },
                None => String::new(),
            };
            if key.is_empty() {
                format!("config error: {}{origin}", e.kind)
            } else {
                format!("config key `{key}`: {}{origin}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Resolve a path from the config against the current directory (the convention of every key).
pub fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) }
}

#[cfg(test)]
mod tests;
