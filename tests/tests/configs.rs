//! Every file in configs/ parses into the config types (unknown keys are errors, so this catches
//! configs that drifted from the code).

use std::path::PathBuf;

use longrl_config::{Config, ConfigSources};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn every_config_file_parses() {
    let dir = repo_root().join("configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let sources = ConfigSources { file: Some(path.clone()), overrides: Vec::new() };
            Config::load(&sources).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            checked += 1;
        }
    }
    assert!(checked > 0, "no configs found in {}", dir.display());
}
