//! `longrl plugins new`: a plugin crate to start from, outside any workspace. The crate builds with
//! plain `cargo build`; reward, sampler and curriculum plugins need no libtorch (they depend on
//! longrl-core without its `tensor` feature).

use std::path::{Path, PathBuf};

use anyhow::Context;
use longrl_core::CORE_VERSION;
use longrl_core::api::ComponentKind;

/// Where the new crate finds longrl-core.
#[derive(Debug, Clone)]
pub enum CoreSource {
    /// A checkout of longrl: `longrl-core = { path = ".../core" }`.
    Path(PathBuf),
    /// The published crate of this host's version.
    Version,
}

#[derive(Debug, Clone)]
pub struct Scaffold {
    /// Crate name and component name (`my-reward`).
    pub name: String,
    pub kind: ComponentKind,
    /// The directory to create.
    pub out: PathBuf,
    pub core: CoreSource,
}

fn template(kind: ComponentKind) -> Option<&'static str> {
    match kind {
        ComponentKind::Reward => Some(include_str!("templates/reward.rs.tmpl")),
        ComponentKind::Sampler => Some(include_str!("templates/sampler.rs.tmpl")),
        ComponentKind::Curriculum => Some(include_str!("templates/curriculum.rs.tmpl")),
        ComponentKind::Algorithm => Some(include_str!("templates/algorithm.rs.tmpl")),
        ComponentKind::Policy => None,
    }
}

/// Policies and algorithms hand tensors across the boundary, so they need longrl-core's `tensor`
/// feature (tch, and libtorch to build and run).
fn needs_tensor(kind: ComponentKind) -> bool {
    matches!(kind, ComponentKind::Policy | ComponentKind::Algorithm)
}

/// `my-reward` -> `MyReward`; the kind is appended unless the name already ends with it
/// (`exact` -> `ExactReward`).
fn type_name(name: &str, kind: ComponentKind) -> String {
    let camel: String = name
        .split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    let suffix = type_suffix(kind);
    if camel.ends_with(suffix) { camel } else { camel + suffix }
}

fn type_suffix(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Policy => "Policy",
        ComponentKind::Algorithm => "Algorithm",
        ComponentKind::Curriculum => "Curriculum",
        ComponentKind::Sampler => "Sampler",
        ComponentKind::Reward => "Reward",
    }
}

/// A crate name cargo accepts and that reads as a component name in a config file.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        anyhow::bail!(
            "plugin name `{name}`: use lower-case letters, digits, `-` and `_`, starting with a letter (it names the crate and the component)"
        );
    }
    Ok(())
}

fn config_snippet(name: &str, kind: ComponentKind) -> String {
    match kind {
        ComponentKind::Reward => format!("[[reward.components]]\nname = \"{name}\"\nconfig = {{ score = 1.0 }}"),
        _ => format!("[{kind}]\nname = \"{name}\"\nconfig = {{}}"),
    }
}

impl Scaffold {
    /// The files of the new crate, relative to its directory, with their contents.
    pub fn files(&self) -> anyhow::Result<Vec<(PathBuf, String)>> {
        check_name(&self.name)?;
        let Some(lib_template) = template(self.kind) else {
            anyhow::bail!(
                "`--kind policy` is not scaffolded: a policy wraps a whole model (tokenizer, generation, log-probs with gradients, checkpoints); start from plugins/policy-qwen in the longrl repository"
            );
        };
        let tensor = needs_tensor(self.kind);
        let core_source = match &self.core {
            CoreSource::Path(dir) => format!("path = \"{}\"", dir.display().to_string().replace('\\', "/")),
            CoreSource::Version => format!("version = \"{CORE_VERSION}\""),
        };
        let (core_comment, core_features) = if tensor {
            (
                "# Algorithms handle tensors: longrl-core's default `tensor` feature brings tch, and building needs\n\
                 # the libtorch `longrl` runs on (set LIBTORCH as for building longrl).",
                "",
            )
        } else {
            (
                "# Without the default `tensor` feature: no tch, no libtorch to build against, and the plugin\n\
                 # loads into a longrl built with any libtorch.",
                ", default-features = false",
            )
        };
        let tensor_note = if tensor {
            "- It handles tensors, so it builds against libtorch (set `LIBTORCH` as for building longrl) and\n  \
             loads only into a `longrl` running the same libtorch release.\n"
        } else {
            "- It needs no libtorch: it builds without one and loads into any `longrl` of the same plugin ABI.\n"
        };
        let fill = |text: &str| {
            text.replace("__CORE_COMMENT__", core_comment)
                .replace("__CORE_SOURCE__", &core_source)
                .replace("__CORE_FEATURES__", core_features)
                .replace("__TENSOR_NOTE__", tensor_note)
                .replace("__CONFIG_SNIPPET__", &config_snippet(&self.name, self.kind))
                .replace("__CRATE__", &self.name)
                .replace("__LIB__", &self.name.replace('-', "_"))
                .replace("__TYPE__", &type_name(&self.name, self.kind))
                .replace("__KIND__", self.kind.as_str())
                .replace("__NAME__", &self.name)
        };
        Ok(vec![
            (PathBuf::from("Cargo.toml"), fill(include_str!("templates/Cargo.toml.tmpl"))),
            (PathBuf::from("README.md"), fill(include_str!("templates/README.md.tmpl"))),
            (PathBuf::from("src/lib.rs"), fill(lib_template)),
            (PathBuf::from(".gitignore"), "/target\n".to_string()),
        ])
    }

    /// Write the crate. Refuses a directory that exists and is not empty.
    pub fn write(&self) -> anyhow::Result<Vec<PathBuf>> {
        let files = self.files()?;
        if std::fs::read_dir(&self.out).is_ok_and(|mut entries| entries.next().is_some()) {
            anyhow::bail!("{} exists and is not empty; choose another `--out`", self.out.display());
        }
        let mut written = Vec::new();
        for (relative, text) in files {
            let path = self.out.join(relative);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }
}

/// A `--core-path` as Cargo.toml needs it: absolute (the manifest lives elsewhere than the current
/// directory) and pointing at longrl-core's manifest.
pub fn core_path(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = dir.canonicalize().with_context(|| format!("--core-path {}", dir.display()))?;
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
        .with_context(|| format!("--core-path {}: no Cargo.toml", dir.display()))?;
    if !manifest.lines().any(|l| l.trim() == "name = \"longrl-core\"") {
        anyhow::bail!(
            "--core-path {}: its Cargo.toml is not longrl-core's (the `core` directory of longrl)",
            dir.display()
        );
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaffold(name: &str, kind: ComponentKind) -> Scaffold {
        Scaffold { name: name.into(), kind, out: PathBuf::from("/nonexistent"), core: CoreSource::Version }
    }

    fn file(files: &[(PathBuf, String)], name: &str) -> String {
        files.iter().find(|(p, _)| p == Path::new(name)).map(|(_, t)| t.clone()).unwrap()
    }

    #[test]
    fn names_become_types_and_bad_names_are_refused() {
        assert_eq!(type_name("my-exact", ComponentKind::Reward), "MyExactReward");
        assert_eq!(type_name("strict_reward", ComponentKind::Reward), "StrictReward");
        assert_eq!(type_name("walk", ComponentKind::Sampler), "WalkSampler");
        for bad in ["", "9lives", "My-Reward", "a b", "a/b"] {
            assert!(scaffold(bad, ComponentKind::Reward).files().is_err(), "{bad}");
        }
        let err = scaffold("x", ComponentKind::Policy).files().unwrap_err().to_string();
        assert!(err.contains("policy-qwen"), "{err}");
    }

    #[test]
    fn every_placeholder_is_filled_and_only_tensor_kinds_need_libtorch() {
        for kind in [ComponentKind::Reward, ComponentKind::Sampler, ComponentKind::Curriculum, ComponentKind::Algorithm]
        {
            let files = scaffold("my-thing", kind).files().unwrap();
            for (path, text) in &files {
                assert!(!text.contains("__"), "{kind}: {} keeps a placeholder", path.display());
            }
            let manifest = file(&files, "Cargo.toml");
            assert_eq!(manifest.contains("default-features = false"), kind != ComponentKind::Algorithm, "{kind}");
            assert!(manifest.contains(&format!("version = \"{CORE_VERSION}\"")), "{manifest}");
            let lib = file(&files, "src/lib.rs");
            assert!(lib.contains(&format!("longrl_core::export_plugin!({kind}: [")), "{kind}");
            assert!(lib.contains("#[test]"), "{kind}: a unit test");
        }
    }
}
