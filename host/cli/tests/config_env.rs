//! The `LONGRL_*` environment layer sits between the config file and `--set`. It runs the binary in
//! a child process: setting variables in the test process would leak into every other test of the
//! crate that loads a config at the same time (a unit test doing that once made CI fail at random).

use std::process::Command;

fn config_show(file: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> toml::Table {
    let output = Command::new(env!("CARGO_BIN_EXE_longrl"))
        .args(["--config", file.to_str().unwrap(), "--log-level", "warn"])
        .args(args)
        .args(["config", "show"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stderr:\n{}", String::from_utf8_lossy(&output.stderr));
    stdout.parse().unwrap_or_else(|e| panic!("config show printed invalid TOML ({e}):\n{stdout}"))
}

#[test]
fn environment_overrides_the_file_and_set_overrides_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    std::fs::write(&file, "seed = 1\n").unwrap();
    let env = [("LONGRL_SEED", "2"), ("LONGRL_TRAIN__LR", "0.5"), ("LONGRL_PLUGIN_PATH", "/not/a/config/key")];

    let config = config_show(&file, &[], &[]);
    assert_eq!(config["seed"].as_integer(), Some(1));

    let config = config_show(&file, &env, &[]);
    assert_eq!(config["seed"].as_integer(), Some(2));
    assert_eq!(config["train"]["lr"].as_float(), Some(0.5));

    let config = config_show(&file, &env, &["--set", "seed=3"]);
    assert_eq!(config["seed"].as_integer(), Some(3));
}

#[test]
fn unknown_environment_key_names_the_variable_layer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    std::fs::write(&file, "seed = 1\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_longrl"))
        .args(["--config", file.to_str().unwrap(), "config", "show"])
        .env("LONGRL_TRAIN__LEARNING_RATE", "3")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("learning_rate") && stderr.contains("LONGRL_"), "{stderr}");
}

#[test]
fn a_stray_longrl_variable_is_a_warning_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    std::fs::write(&file, "seed = 1\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_longrl"))
        .args(["--config", file.to_str().unwrap(), "config", "show"])
        .env("LONGRL_LONGBENCH_ROWS_DIR", "/data/longbench")
        .env("LONGRL_SEED", "4")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("LONGRL_LONGBENCH_ROWS_DIR is not a config key"), "{stderr}");
    let config: toml::Table = String::from_utf8_lossy(&output.stdout).parse().unwrap();
    assert_eq!(config["seed"].as_integer(), Some(4), "the real config variables still apply");
}
