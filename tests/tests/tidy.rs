//! Tidy checks: facts the code states in two places stay in agreement.

use std::path::PathBuf;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn recorded_tch_version_matches_the_lock_file() {
    let lock = read("Cargo.lock");
    let tch = lock.split("[[package]]").find(|p| p.contains("\nname = \"tch\"\n")).expect("tch in Cargo.lock");
    let version = tch.lines().find_map(|l| l.strip_prefix("version = ")).unwrap().trim_matches('"');
    assert_eq!(version, longrl_core::TCH_VERSION);
}

#[test]
fn every_plugin_crate_is_a_cdylib_and_an_rlib() {
    for entry in std::fs::read_dir(repo_root().join("plugins")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let manifest: toml::Table = toml::from_str(&manifest).unwrap();
        let crate_type = manifest.get("lib").and_then(|l| l.get("crate-type")).and_then(|t| t.as_array()).cloned();
        let source = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap_or_default();
        let exports = source
            .lines()
            .map(str::trim_start)
            .any(|l| l.starts_with("longrl_core::export_plugin!") || l.starts_with("export_plugin!"));
        if !exports {
            continue; // a support library shared by plugins, not a plugin
        }
        let types: Vec<&str> = crate_type.as_deref().unwrap_or(&[]).iter().filter_map(|v| v.as_str()).collect();
        assert!(types.contains(&"cdylib") && types.contains(&"rlib"), "{}: crate-type {types:?}", dir.display());
    }
}

#[test]
fn ci_runs_exactly_the_readme_test_command() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    assert!(readme.contains("cargo xtask test"), "README names the test command");
    let command = ci
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("set ") && !l.starts_with("cd "))
        .collect::<Vec<_>>();
    assert_eq!(command, vec!["cargo xtask test"], ".ci/run must run the README's test command and nothing else");
}

/// `longrl help` for every command, as docs/cli.md holds it.
fn cli_reference() -> String {
    fn help(path: &[&str]) -> String {
        let output = std::process::Command::new(longrl_tests::longrl_binary())
            .args(path)
            .arg("--help")
            .env("COLUMNS", "100")
            .output()
            .unwrap();
        assert!(output.status.success(), "longrl {path:?} --help failed");
        String::from_utf8(output.stdout).unwrap()
    }
    fn subcommands(help: &str) -> Vec<String> {
        help.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| *c != "help")
            .map(str::to_string)
            .collect()
    }
    fn walk(path: &mut Vec<String>, out: &mut String) {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        let heading = if path.is_empty() { "longrl".to_string() } else { format!("longrl {}", path.join(" ")) };
        out.push_str(&format!("\n## `{heading}`\n\n```text\n{}\n```\n", text.trim_end()));
        for sub in subcommands(&text) {
            path.push(sub);
            walk(path, out);
            path.pop();
        }
    }
    let mut out = String::from(
        "# CLI reference\n\nGenerated from `longrl --help` by `cargo xtask docs`; a tidy test keeps it in step with the code.\n\
         Every command also takes the global options `--config FILE`, `--set KEY=VALUE` (repeatable),\n\
         `--log-level LEVEL` and `--log-format text|json` (see [configuration](configuration.md)).\n",
    );
    walk(&mut Vec::new(), &mut out);
    out
}

#[test]
fn the_cli_reference_is_generated_from_the_binary() {
    let expected = cli_reference();
    let path = repo_root().join("docs/cli.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(actual == expected, "docs/cli.md is out of date with `longrl --help`: run `cargo xtask docs`");
}

#[test]
fn the_configuration_reference_documents_every_key() {
    let doc = read("docs/configuration.md");
    let defaults = toml::Value::try_from(longrl_config::Config::default()).unwrap();
    let mut missing = Vec::new();
    let toml::Value::Table(top) = defaults else { panic!("config is a table") };
    for (section, value) in &top {
        match value {
            // Component tables (`name` + free-form `config`) are documented by section.
            toml::Value::Table(table) if table.contains_key("name") || section == "reward" => {
                if !doc.contains(&format!("`{section}`")) && !doc.contains(&format!("[{section}]")) {
                    missing.push(section.clone());
                }
            }
            toml::Value::Table(table) => {
                for key in table.keys() {
                    let dotted = format!("{section}.{key}");
                    if !doc.contains(&format!("`{dotted}`")) {
                        missing.push(dotted);
                    }
                }
            }
            _ => {
                if !doc.contains(&format!("`{section}`")) {
                    missing.push(section.clone());
                }
            }
        }
    }
    assert!(missing.is_empty(), "docs/configuration.md does not document: {missing:?}");
}

/// `cargo fmt --all --check`: the tree is formatted (rustfmt.toml). Clippy runs as a step of
/// `cargo xtask test` instead: checking the workspace takes minutes, too long for a test.
#[test]
fn the_tree_is_rustfmt_clean() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .current_dir(repo_root())
        .args(["fmt", "--all", "--check"])
        .output()
        .expect("run cargo fmt");
    assert!(
        output.status.success(),
        "cargo fmt --all --check failed: run `cargo fmt --all`\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
