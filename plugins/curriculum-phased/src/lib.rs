//! Curriculum `phased`: QwenLong-L1's progressive context scaling. Phase k trains on prompts with
//! L(k-1) < tokens <= L(k) (Eq. 9, L(0) = 0), or tokens <= L(k) in cumulative mode, for a number of
//! steps or epochs; then the next phase starts.

use longrl_core::abi::Component;
use longrl_core::api::{
    ComponentContext, ComponentInfo, ComponentKind, Curriculum, PhaseLength, PhaseProgress, PhaseSpec, PhaseTransition,
};
use longrl_core::sdk::{config_keys, parse_config};
use longrl_core::{Error, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const COMPONENT: &str = "curriculum/phased";

/// One phase as written in the config: `{ name, max_input_tokens, max_output_tokens, steps | epochs }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseConfig {
    pub name: String,
    pub max_input_tokens: u64,
    pub max_output_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
}

/// The curriculum's config table. Each field's doc comment is its documentation in `longrl plugins inspect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PhasedConfig {
    /// Required, in order: [{ name, max_input_tokens = L(k), max_output_tokens, steps = N | epochs = N }];
    /// limits must increase. QwenLong-L1: 20000 then 60000 input tokens, 10000 output.
    pub phases: Vec<PhaseConfig>,
    /// Phase k admits every prompt <= L(k) instead of L(k-1) < tokens <= L(k).
    pub cumulative: bool,
}

/// Where the curriculum stands; this is its checkpoint state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PhasedState {
    current: usize,
    finished: bool,
}

pub struct PhasedCurriculum {
    phases: Vec<PhaseSpec>,
    state: PhasedState,
}

impl PhasedCurriculum {
    fn from_config(config: PhasedConfig) -> Result<Self> {
        if config.phases.is_empty() {
            return Err(Error::config("phases", format!("{COMPONENT}: at least one phase is required")));
        }
        let mut phases = Vec::with_capacity(config.phases.len());
        let mut previous_limit = 0u64;
        for (i, p) in config.phases.iter().enumerate() {
            let key = |field: &str| format!("phases[{i}].{field}");
            let bad =
                |field: &str, msg: String| Error::config(key(field), format!("{COMPONENT}: phase `{}`: {msg}", p.name));
            if p.name.trim().is_empty() {
                return Err(Error::config(key("name"), format!("{COMPONENT}: phase {i} needs a name")));
            }
            if p.max_input_tokens == 0 {
                return Err(bad("max_input_tokens", "must be positive".into()));
            }
            if p.max_input_tokens <= previous_limit {
                return Err(bad(
                    "max_input_tokens",
                    format!("{} must exceed the previous phase's limit {previous_limit}", p.max_input_tokens),
                ));
            }
            if p.max_output_tokens == 0 {
                return Err(bad("max_output_tokens", "must be positive".into()));
            }
            let length = match (p.steps, p.epochs) {
                (Some(0), None) => return Err(bad("steps", "must be positive".into())),
                (None, Some(0)) => return Err(bad("epochs", "must be positive".into())),
                (Some(n), None) => PhaseLength::Steps(n),
                (None, Some(n)) => PhaseLength::Epochs(n),
                (Some(_), Some(_)) => {
                    return Err(bad("steps", "give either `steps` or `epochs`, not both".into()));
                }
                (None, None) => {
                    return Err(bad("steps", "give its length as `steps` or `epochs`".into()));
                }
            };
            if phases.iter().any(|q: &PhaseSpec| q.name == p.name) {
                return Err(bad("name", "names must be unique".into()));
            }
            phases.push(PhaseSpec {
                name: p.name.clone(),
                min_input_tokens_exclusive: if config.cumulative { 0 } else { previous_limit },
                max_input_tokens: p.max_input_tokens,
                max_output_tokens: p.max_output_tokens,
                length,
            });
            previous_limit = p.max_input_tokens;
        }
        Ok(PhasedCurriculum { phases, state: PhasedState::default() })
    }

    fn phase_done(&self, progress: PhaseProgress) -> bool {
        match self.phases[self.state.current].length {
            PhaseLength::Steps(n) => progress.steps >= n,
            PhaseLength::Epochs(n) => progress.epochs >= n,
        }
    }
}

impl Component for PhasedCurriculum {
    fn info() -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Curriculum,
            name: "phased".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "QwenLong-L1's progressive context scaling: phases with rising input-length limits \
                          (L(k-1) < tokens <= L(k), Eq. 9, or cumulative), each for a number of steps or epochs."
                .into(),
            config: config_keys::<PhasedConfig>(),
        }
    }

    fn create(config: &serde_json::Value, _context: &ComponentContext) -> Result<Self> {
        let curriculum = Self::from_config(parse_config(COMPONENT, config)?)?;
        for (k, p) in curriculum.phases.iter().enumerate() {
            tracing::info!(phase = k, name = %p.name, min_exclusive = p.min_input_tokens_exclusive,
                max_input = p.max_input_tokens, max_output = p.max_output_tokens, length = ?p.length, "curriculum phase");
        }
        Ok(curriculum)
    }
}

impl Curriculum for PhasedCurriculum {
    fn phases(&self) -> Result<Vec<PhaseSpec>> {
        Ok(self.phases.clone())
    }

    fn current_phase(&self) -> Result<usize> {
        Ok(self.state.current)
    }

    fn advance(&mut self, progress: PhaseProgress) -> Result<PhaseTransition> {
        if self.state.finished {
            return Ok(PhaseTransition::Finished);
        }
        if !self.phase_done(progress) {
            return Ok(PhaseTransition::Continue);
        }
        let done = &self.phases[self.state.current];
        let next = self.state.current + 1;
        if next < self.phases.len() {
            tracing::info!(from = %done.name, to = %self.phases[next].name, phase = next,
                steps = progress.steps, epochs = progress.epochs, "curriculum: entering next phase");
            self.state.current = next;
            Ok(PhaseTransition::Enter(next))
        } else {
            tracing::info!(last = %done.name, steps = progress.steps, epochs = progress.epochs, "curriculum finished");
            self.state.finished = true;
            Ok(PhaseTransition::Finished)
        }
    }

    fn save_state(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(&self.state)?)
    }

    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        let loaded: PhasedState = serde_json::from_slice(state)
            .map_err(|e| Error::msg(format!("{COMPONENT}: malformed saved state: {e}")))?;
        if loaded.current >= self.phases.len() {
            return Err(Error::msg(format!(
                "{COMPONENT}: saved state is in phase {} but the config has only {} phases",
                loaded.current,
                self.phases.len()
            )));
        }
        tracing::info!(phase = loaded.current, name = %self.phases[loaded.current].name, finished = loaded.finished,
            "curriculum state restored");
        self.state = loaded;
        Ok(())
    }
}

longrl_core::export_plugin!(curriculum: [PhasedCurriculum]);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn make(config: serde_json::Value) -> Result<PhasedCurriculum> {
        PhasedCurriculum::create(&config, &ComponentContext::default())
    }

    fn recipe(cumulative: bool) -> PhasedCurriculum {
        make(json!({
            "cumulative": cumulative,
            "phases": [
                {"name": "short", "max_input_tokens": 20000, "max_output_tokens": 10000, "steps": 3},
                {"name": "long", "max_input_tokens": 60000, "max_output_tokens": 10000, "epochs": 2},
            ]
        }))
        .unwrap()
    }

    #[test]
    fn buckets_follow_eq9() {
        let c = recipe(false);
        let p = c.phases().unwrap();
        assert_eq!(p[0].min_input_tokens_exclusive, 0);
        assert_eq!(p[1].min_input_tokens_exclusive, 20000);
        assert_eq!(p[1].length, PhaseLength::Epochs(2));
        // Each length lands in exactly one phase, boundaries inclusive above.
        let cases = [(1, Some(0)), (20000, Some(0)), (20001, Some(1)), (60000, Some(1)), (60001, None), (0, None)];
        for (tokens, want) in cases {
            let got: Vec<usize> = (0..p.len()).filter(|&k| p[k].admits(tokens)).collect();
            assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "{tokens} tokens");
        }
    }

    #[test]
    fn cumulative_mode_admits_everything_below_the_limit() {
        let p = recipe(true).phases().unwrap();
        assert_eq!(p[1].min_input_tokens_exclusive, 0);
        assert!(p[1].admits(100) && p[1].admits(60000) && !p[1].admits(60001));
        assert!(p[0].admits(100) && !p[0].admits(20001));
    }

    #[test]
    fn advance_by_steps_then_epochs() {
        let mut c = recipe(false);
        let at = |steps, epochs| PhaseProgress { steps, epochs };
        assert_eq!(c.advance(at(1, 0)).unwrap(), PhaseTransition::Continue);
        assert_eq!(c.advance(at(2, 5)).unwrap(), PhaseTransition::Continue, "phase 0 counts steps, not epochs");
        assert_eq!(c.advance(at(3, 0)).unwrap(), PhaseTransition::Enter(1));
        assert_eq!(c.current_phase().unwrap(), 1);
        assert_eq!(c.advance(at(100, 1)).unwrap(), PhaseTransition::Continue, "phase 1 counts epochs");
        assert_eq!(c.advance(at(101, 2)).unwrap(), PhaseTransition::Finished);
        assert_eq!(c.advance(at(0, 0)).unwrap(), PhaseTransition::Finished);
        assert_eq!(c.current_phase().unwrap(), 1);
    }

    #[test]
    fn state_round_trips() {
        let mut c = recipe(false);
        c.advance(PhaseProgress { steps: 3, epochs: 0 }).unwrap();
        let saved = c.save_state().unwrap();
        let mut d = recipe(false);
        assert_eq!(d.current_phase().unwrap(), 0);
        d.load_state(&saved).unwrap();
        assert_eq!(d.current_phase().unwrap(), 1);
        assert_eq!(d.advance(PhaseProgress { steps: 0, epochs: 2 }).unwrap(), PhaseTransition::Finished);
        // A finished curriculum stays finished after a restore.
        let mut e = recipe(false);
        e.load_state(&d.save_state().unwrap()).unwrap();
        assert_eq!(e.advance(PhaseProgress::default()).unwrap(), PhaseTransition::Finished);
        assert!(e.load_state(b"{not json").unwrap_err().to_string().contains("malformed"));
        let one_phase =
            make(json!({"phases": [{"name": "a", "max_input_tokens": 5, "max_output_tokens": 5, "steps": 1}]}));
        let err = one_phase.unwrap().load_state(&saved).unwrap_err().to_string();
        assert!(err.contains("phase 1"), "{err}");
    }

    #[test]
    fn bad_configs_name_phase_and_key() {
        let phase = |name: &str, max_in: u64, max_out: u32| json!({"name": name, "max_input_tokens": max_in, "max_output_tokens": max_out, "steps": 1});
        let err = |config: serde_json::Value| make(config).err().expect("should fail").to_string();
        assert!(err(json!({})).contains("at least one phase"));
        let e = err(json!({"phases": [phase("a", 100, 10), phase("b", 100, 10)]}));
        assert!(e.contains("phases[1].max_input_tokens") && e.contains("`b`") && e.contains("previous"), "{e}");
        let e = err(json!({"phases": [phase("a", 0, 10)]}));
        assert!(e.contains("phases[0].max_input_tokens") && e.contains("positive"), "{e}");
        let e = err(json!({"phases": [phase("a", 10, 0)]}));
        assert!(e.contains("phases[0].max_output_tokens"), "{e}");
        let e = err(json!({"phases": [{"name": "a", "max_input_tokens": 10, "max_output_tokens": 10}]}));
        assert!(e.contains("phases[0].steps") && e.contains("`epochs`"), "{e}");
        let e = err(
            json!({"phases": [{"name": "a", "max_input_tokens": 10, "max_output_tokens": 10, "steps": 1, "epochs": 1}]}),
        );
        assert!(e.contains("not both"), "{e}");
        let e = err(json!({"phases": [{"name": "a", "max_input_tokens": 10, "max_output_tokens": 10, "epochs": 0}]}));
        assert!(e.contains("phases[0].epochs"), "{e}");
        let e = err(json!({"phases": [phase("a", 10, 10), phase("a", 20, 10)]}));
        assert!(e.contains("unique"), "{e}");
        let e = err(json!({"phases": [{"name": "a", "max_input_tokens": 10, "max_output_tokens": 10, "step": 1}]}));
        assert!(e.contains("step"), "{e}");
        let e = err(json!({"phase": []}));
        assert!(e.contains("phase"), "{e}");
    }
}
