//! What every component declares about itself, and what it is given when made.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The five kinds of component the recipe is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    Policy,
    Algorithm,
    Curriculum,
    Sampler,
    Reward,
}

impl ComponentKind {
    pub const ALL: [ComponentKind; 5] = [
        ComponentKind::Policy,
        ComponentKind::Algorithm,
        ComponentKind::Curriculum,
        ComponentKind::Sampler,
        ComponentKind::Reward,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Policy => "policy",
            ComponentKind::Algorithm => "algorithm",
            ComponentKind::Curriculum => "curriculum",
            ComponentKind::Sampler => "sampler",
            ComponentKind::Reward => "reward",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One documented configuration key of a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigKey {
    pub key: String,
    /// The default value, as JSON (`null` when the key is required or has no default).
    pub default: serde_json::Value,
    pub doc: String,
}

/// The self-description every component publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentInfo {
    pub kind: ComponentKind,
    pub name: String,
    pub version: String,
    /// One paragraph: what it does and when to use it.
    pub description: String,
    pub config: Vec<ConfigKey>,
}

impl ComponentInfo {
    /// `kind/name`, the way users refer to a component.
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// Run-wide facts handed to a component's factory beside its own config table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentContext {
    /// The run directory (metrics, audit files, checkpoints), when there is a run.
    pub run_dir: Option<PathBuf>,
    /// The run's seed; components derive their own streams from it.
    pub seed: u64,
    /// Device chosen by the host: `cpu` or `cuda:N`.
    pub device: String,
}
