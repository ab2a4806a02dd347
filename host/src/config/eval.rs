//! `[eval]`: evaluation after each training stage (owned by the evaluation harness).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate after each stage.
    pub enabled: bool,
}
