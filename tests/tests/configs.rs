//! Every file in configs/ parses into the host's config types and every component table through
//! its plugin's own parser (unknown keys are errors at both levels, so this catches configs that
//! drifted from the code, a typo in a plugin table included).

use std::path::{Path, PathBuf};

use longrl_config::{ComponentConfig, Config, ConfigSources};
use longrl_core::api::ComponentContext;
use longrl_plugins::PluginSet;
use longrl_tests::artifact_dir;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn load(path: &Path, overrides: &[&str]) -> anyhow::Result<Config> {
    let sources =
        ConfigSources { file: Some(path.to_path_buf()), overrides: overrides.iter().map(|s| s.to_string()).collect() };
    Config::load(&sources)
}

/// The component's own factory, from the plugin libraries built beside the tests (the policy's
/// config parser only: its factory loads a model). Each plugin is a library of its own: linking them
/// all into one test binary would clash on their export symbols.
fn parse(plugins: &PluginSet, kind: &str, component: &ComponentConfig) -> Result<(), String> {
    let ctx = ComponentContext::default();
    let table = &component.config;
    let result = match (kind, component.name.as_str()) {
        ("policy", "qwen") => {
            longrl_core::sdk::parse_config::<longrl_policy_qwen::QwenPolicyConfig>("policy/qwen", table)
                .map(drop)
                .map_err(anyhow::Error::from)
        }
        ("algorithm", name) => plugins.algorithm(name, table, &ctx).map(drop),
        ("curriculum", name) => plugins.curriculum(name, table, &ctx).map(drop),
        ("sampler", name) => plugins.sampler(name, &with_base_difficulty(name, table), &ctx).map(drop),
        ("reward", name) => plugins.reward(name, table, &ctx).map(drop),
        (kind, name) => return Err(format!("no parser known for {kind}/{name}: add it to this test")),
    };
    result.map_err(|e| format!("{e:#}"))
}

/// `longrl train` points the retrospective sampler at the base-model difficulty file it scores at RL
/// start when the config names none; the same here (the file need not exist yet).
fn with_base_difficulty(name: &str, table: &serde_json::Value) -> serde_json::Value {
    let mut table = if table.is_null() { serde_json::json!({}) } else { table.clone() };
    if name == "retrospective"
        && let Some(t) = table.as_object_mut()
        && t.get("difficulty").and_then(|d| d.as_str()) != Some("online")
        && t.get("difficulty_file").is_none_or(|f| f.is_null())
    {
        t.insert("difficulty_file".into(), serde_json::json!("/nonexistent/run/base_difficulty.jsonl"));
    }
    table
}

fn plugins() -> PluginSet {
    PluginSet::load(&[artifact_dir()]).expect("the plugin libraries are built beside the tests (cargo xtask test)")
}

/// Every component table of `config` through its parser.
fn parse_components(plugins: &PluginSet, config: &Config) -> Result<(), String> {
    let mut components = vec![
        ("policy", &config.policy),
        ("algorithm", &config.algorithm),
        ("curriculum", &config.curriculum),
        ("sampler", &config.sampler),
    ];
    components.extend(config.reward.components.iter().map(|c| ("reward", c)));
    for (kind, component) in components {
        parse(plugins, kind, component).map_err(|e| format!("{kind}/{}: {e}", component.name))?;
    }
    Ok(())
}

fn config_files() -> Vec<PathBuf> {
    let dir = repo_root().join("configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no configs found in {}", dir.display());
    files
}

#[test]
fn every_config_file_parses_with_every_component_table() {
    let plugins = plugins();
    for path in config_files() {
        let config = load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        parse_components(&plugins, &config).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn a_typo_in_a_plugin_table_fails() {
    let plugins = plugins();
    let tiny = repo_root().join("configs/tiny.toml");
    for (typo, component) in [
        ("algorithm.config.clip_hihg=0.3", "algorithm/grpo"),
        ("sampler.config.retain_treshold=0.1", "sampler/retrospective"),
        ("policy.config.dtpye=\"float32\"", "policy/qwen"),
        ("curriculum.config.phases.0.stpes=3", "curriculum/phased"),
    ] {
        let config = load(&tiny, &[typo]).unwrap();
        let error = parse_components(&plugins, &config).expect_err(typo);
        let key = typo.split('=').next().unwrap().rsplit('.').next().unwrap();
        assert!(error.starts_with(component) && error.contains(key), "{typo}: {error}");
    }
}
