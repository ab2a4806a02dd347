//! Finding, checking and loading plugin libraries, and making components from them.

mod discovery;
mod library;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use longrl_core::abi::{HostAlgorithm, HostCurriculum, HostPolicy, HostReward, HostSampler};
use longrl_core::api::{self, ComponentContext, ComponentInfo, ComponentKind};

pub use discovery::search_paths;
pub use library::{LoadError, PluginLibrary};

/// Every plugin library found, indexed by (kind, name).
pub struct PluginSet {
    libraries: Vec<PluginLibrary>,
    index: BTreeMap<(ComponentKind, String), usize>,
    /// Plugins found by scanning a directory that could not be used, with the reason.
    skipped: Vec<LoadError>,
}

impl PluginSet {
    /// Load every plugin in `paths` (directories are scanned, files are loaded as given).
    ///
    /// A library named directly must load. In a scanned directory, other shared libraries are
    /// ignored and a longrl plugin that fails its checks (built for another ABI or libtorch) is
    /// skipped with a warning naming the file and the cause, and named again if a component it
    /// might have provided is asked for. Two components with one kind and name are always an error.
    pub fn load(paths: &[PathBuf]) -> Result<Self, LoadError> {
        let mut set = PluginSet { libraries: Vec::new(), index: BTreeMap::new(), skipped: Vec::new() };
        for candidate in discovery::candidates(paths) {
            let library = match PluginLibrary::load(&candidate.path) {
                Ok(library) => library,
                Err(LoadError::NotAPlugin { .. }) if candidate.scanned => {
                    tracing::debug!("skipping {}: not a longrl plugin", candidate.path.display());
                    continue;
                }
                Err(error) if candidate.scanned && !matches!(error, LoadError::Duplicate { .. }) => {
                    tracing::warn!("skipping plugin {error}");
                    set.skipped.push(error);
                    continue;
                }
                Err(error) => return Err(error),
            };
            set.add(library)?;
        }
        Ok(set)
    }

    /// Plugins found by scanning that could not be used.
    pub fn skipped(&self) -> &[LoadError] {
        &self.skipped
    }

    fn add(&mut self, library: PluginLibrary) -> Result<(), LoadError> {
        let slot = self.libraries.len();
        for info in library.components() {
            let key = (info.kind, info.name.clone());
            if let Some(&other) = self.index.get(&key) {
                return Err(LoadError::Duplicate {
                    kind: info.kind,
                    name: info.name.clone(),
                    first: self.libraries[other].path().to_path_buf(),
                    second: library.path().to_path_buf(),
                });
            }
            self.index.insert(key, slot);
        }
        self.libraries.push(library);
        Ok(())
    }

    pub fn libraries(&self) -> &[PluginLibrary] {
        &self.libraries
    }

    /// Every component with the library that provides it, sorted by kind and name.
    pub fn components(&self) -> Vec<(&ComponentInfo, &Path)> {
        self.index
            .values()
            .zip(self.index.keys())
            .filter_map(|(&slot, (kind, name))| {
                let lib = &self.libraries[slot];
                lib.components().iter().find(|c| c.kind == *kind && &c.name == name).map(|c| (c, lib.path()))
            })
            .collect()
    }

    pub fn info(&self, kind: ComponentKind, name: &str) -> Option<&ComponentInfo> {
        let slot = *self.index.get(&(kind, name.to_string()))?;
        self.libraries[slot].components().iter().find(|c| c.kind == kind && c.name == name)
    }

    fn library_for(&self, kind: ComponentKind, name: &str) -> anyhow::Result<&PluginLibrary> {
        match self.index.get(&(kind, name.to_string())) {
            Some(&slot) => Ok(&self.libraries[slot]),
            None => {
                let known: Vec<&str> = self.index.keys().filter(|(k, _)| *k == kind).map(|(_, n)| n.as_str()).collect();
                let skipped: String = self.skipped.iter().map(|e| format!("\n  skipped {e}")).collect();
                anyhow::bail!(
                    "no {kind} plugin named `{name}` was found (available: {}); loaded libraries: {}{skipped}",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") },
                    self.searched()
                )
            }
        }
    }

    fn searched(&self) -> String {
        let dirs: Vec<String> = self.libraries.iter().map(|l| l.path().display().to_string()).collect();
        if dirs.is_empty() { "no plugin libraries".into() } else { dirs.join(", ") }
    }

    pub fn policy(
        &self,
        name: &str,
        config: &serde_json::Value,
        ctx: &ComponentContext,
    ) -> anyhow::Result<Box<dyn api::Policy>> {
        let lib = self.library_for(ComponentKind::Policy, name)?;
        let (inner, label) =
            lib.create(ComponentKind::Policy, name, config, ctx, |m, n, c, x| (m.create_policy())(n, c, x))?;
        Ok(Box::new(HostPolicy::new(inner, label)))
    }

    pub fn algorithm(
        &self,
        name: &str,
        config: &serde_json::Value,
        ctx: &ComponentContext,
    ) -> anyhow::Result<Box<dyn api::Algorithm>> {
        let lib = self.library_for(ComponentKind::Algorithm, name)?;
        let (inner, label) =
            lib.create(ComponentKind::Algorithm, name, config, ctx, |m, n, c, x| (m.create_algorithm())(n, c, x))?;
        Ok(Box::new(HostAlgorithm::new(inner, label)))
    }

    pub fn curriculum(
        &self,
        name: &str,
        config: &serde_json::Value,
        ctx: &ComponentContext,
    ) -> anyhow::Result<Box<dyn api::Curriculum>> {
        let lib = self.library_for(ComponentKind::Curriculum, name)?;
        let (inner, label) =
            lib.create(ComponentKind::Curriculum, name, config, ctx, |m, n, c, x| (m.create_curriculum())(n, c, x))?;
        Ok(Box::new(HostCurriculum::new(inner, label)))
    }

    pub fn sampler(
        &self,
        name: &str,
        config: &serde_json::Value,
        ctx: &ComponentContext,
    ) -> anyhow::Result<Box<dyn api::Sampler>> {
        let lib = self.library_for(ComponentKind::Sampler, name)?;
        let (inner, label) =
            lib.create(ComponentKind::Sampler, name, config, ctx, |m, n, c, x| (m.create_sampler())(n, c, x))?;
        Ok(Box::new(HostSampler::new(inner, label)))
    }

    pub fn reward(
        &self,
        name: &str,
        config: &serde_json::Value,
        ctx: &ComponentContext,
    ) -> anyhow::Result<Box<dyn api::Reward>> {
        let lib = self.library_for(ComponentKind::Reward, name)?;
        let (inner, label) =
            lib.create(ComponentKind::Reward, name, config, ctx, |m, n, c, x| (m.create_reward())(n, c, x))?;
        Ok(Box::new(HostReward::new(inner, label)))
    }
}
