//! Curriculum `phased`: QwenLong-L1's progressive context scaling. Phase k trains on prompts with
//! L(k-1) < tokens <= L(k) (Eq. 9, L(0) = 0), or tokens <= L(k) in cumulative mode, for a number of
//! steps or epochs; then the next phase starts.
//!
//! The length measure: a prompt's `tokens` is the token count of the whole chat-templated prompt
//! the policy sees (document, question, the format instruction and the template's own tokens), as
//! the host's length cache measures it. The paper's |x|+|c| counts the question and the document
//! only, so a longrl boundary L admits prompts a few dozen tokens shorter by the paper's measure.
//!
//! Adaptive phases (an option beyond the paper's code, proposed by descriptions of the recipe):
//! with `mastery = { threshold, window, min_steps, max_steps }` (for every phase, or per phase) a
//! phase ends once the model has mastered it: the mean accuracy of its last `window` steps (the
//! trainer's step accuracy) is at or above `threshold`, after at least `min_steps` steps, even
//! before its nominal `steps`/`epochs`; a struggling phase that reaches its nominal length without
//! mastery is extended until it masters or reaches `max_steps`. Without a nominal length the phase
//! runs on mastery and `max_steps` alone.

use longrl_core::abi::Component;
use longrl_core::api::{
    ComponentContext, ComponentInfo, ComponentKind, Curriculum, PhaseLength, PhaseProgress, PhaseSpec, PhaseTransition,
};
use longrl_core::sdk::{config_keys, parse_config};
use longrl_core::{Error, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const COMPONENT: &str = "curriculum/phased";

/// When a phase counts as mastered (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MasteryConfig {
    /// Mean step accuracy over the window at or above this ends the phase.
    pub threshold: f64,
    /// Steps averaged.
    pub window: u64,
    /// The phase runs at least this many steps.
    #[serde(default)]
    pub min_steps: u64,
    /// The phase ends here whatever the accuracy (a struggling phase is extended up to it).
    pub max_steps: u64,
}

impl MasteryConfig {
    fn validate(&self, key: &str) -> Result<()> {
        let bad = |field: &str, msg: &str| Err(Error::config(format!("{key}.{field}"), format!("{COMPONENT}: {msg}")));
        if !(self.threshold.is_finite() && (0.0..=1.0).contains(&self.threshold)) {
            return bad("threshold", "must be an accuracy in [0, 1]");
        }
        if self.window == 0 {
            return bad("window", "must be at least 1 step");
        }
        if self.max_steps == 0 || self.max_steps < self.min_steps.max(self.window) {
            return bad("max_steps", "must be positive and at least min_steps and window");
        }
        Ok(())
    }
}

/// One phase as written in the config:
/// `{ name, max_input_tokens, max_output_tokens, steps | epochs, mastery }`.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mastery: Option<MasteryConfig>,
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
    /// Adaptive phases for every phase without its own `mastery`: `{ threshold, window, min_steps = 0,
    /// max_steps }`; a phase ends once the mean step accuracy of its last `window` steps is >= threshold
    /// (after min_steps), and one not mastered at its nominal steps/epochs is extended up to max_steps.
    /// null: fixed lengths (the paper).
    pub mastery: Option<MasteryConfig>,
}

/// Where the curriculum stands; this is its checkpoint state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PhasedState {
    current: usize,
    finished: bool,
    /// The current phase's recent step accuracies (f64 bits, so a resume sees the same window).
    #[serde(default)]
    recent: Vec<u64>,
}

pub struct PhasedCurriculum {
    phases: Vec<PhaseSpec>,
    /// Each phase's nominal length (`None`: mastery alone) and mastery rule.
    lengths: Vec<(Option<PhaseLength>, Option<MasteryConfig>)>,
    state: PhasedState,
}

impl PhasedCurriculum {
    fn from_config(config: PhasedConfig) -> Result<Self> {
        if config.phases.is_empty() {
            return Err(Error::config("phases", format!("{COMPONENT}: at least one phase is required")));
        }
        if let Some(m) = &config.mastery {
            m.validate("mastery")?;
        }
        let mut phases = Vec::with_capacity(config.phases.len());
        let mut lengths = Vec::with_capacity(config.phases.len());
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
            if let Some(m) = &p.mastery {
                m.validate(&key("mastery"))?;
            }
            let mastery = p.mastery.or(config.mastery);
            let nominal = match (p.steps, p.epochs) {
                (Some(0), None) => return Err(bad("steps", "must be positive".into())),
                (None, Some(0)) => return Err(bad("epochs", "must be positive".into())),
                (Some(n), None) => Some(PhaseLength::Steps(n)),
                (None, Some(n)) => Some(PhaseLength::Epochs(n)),
                (Some(_), Some(_)) => {
                    return Err(bad("steps", "give either `steps` or `epochs`, not both".into()));
                }
                (None, None) if mastery.is_some() => None,
                (None, None) => {
                    return Err(bad("steps", "give its length as `steps` or `epochs` (or a `mastery` rule)".into()));
                }
            };
            // The host plans with the nominal length; a mastery-only phase plans its maximum.
            let length = nominal.unwrap_or_else(|| PhaseLength::Steps(mastery.map_or(0, |m| m.max_steps)));
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
            lengths.push((nominal, mastery));
            previous_limit = p.max_input_tokens;
        }
        Ok(PhasedCurriculum { phases, lengths, state: PhasedState::default() })
    }

    /// Whether the current phase ends after this step (the step's accuracy already recorded).
    fn phase_done(&mut self, progress: PhaseProgress) -> Result<bool> {
        let (nominal, mastery) = self.lengths[self.state.current];
        let reached = |length: PhaseLength| match length {
            PhaseLength::Steps(n) => progress.steps >= n,
            PhaseLength::Epochs(n) => progress.epochs >= n,
        };
        let Some(m) = mastery else {
            return Ok(nominal.is_some_and(reached));
        };
        let Some(accuracy) = progress.accuracy.filter(|a| a.is_finite()) else {
            return Err(Error::msg(format!(
                "{COMPONENT}: phase `{}` ends on mastery, which needs each step's accuracy; the trainer reported {:?}",
                self.phases[self.state.current].name, progress.accuracy
            )));
        };
        self.state.recent.push(accuracy.to_bits());
        let window = m.window as usize;
        if self.state.recent.len() > window {
            self.state.recent.drain(..self.state.recent.len() - window);
        }
        let mean = self.state.recent.iter().map(|&b| f64::from_bits(b)).sum::<f64>() / window as f64;
        let mastered = self.state.recent.len() == window && mean >= m.threshold && progress.steps >= m.min_steps;
        if mastered || progress.steps >= m.max_steps {
            tracing::info!(phase = %self.phases[self.state.current].name, steps = progress.steps, window_accuracy = mean,
                mastered, "curriculum: phase ends on its mastery rule");
            return Ok(true);
        }
        if nominal.is_some_and(reached) && self.state.recent.len() == window {
            tracing::debug!(phase = %self.phases[self.state.current].name, steps = progress.steps,
                window_accuracy = mean, "curriculum: nominal length reached without mastery; extending the phase");
        }
        Ok(false)
    }
}

impl Component for PhasedCurriculum {
    fn info() -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Curriculum,
            name: "phased".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "QwenLong-L1's progressive context scaling: phases with rising input-length limits \
                          (L(k-1) < tokens <= L(k), Eq. 9, or cumulative), each for a number of steps or epochs, \
                          or adaptively until the model masters it (window accuracy >= a threshold, within \
                          min/max steps)."
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
        if !self.phase_done(progress)? {
            return Ok(PhaseTransition::Continue);
        }
        self.state.recent.clear();
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
        if let Some(m) = self.lengths[loaded.current].1
            && loaded.recent.len() > m.window as usize
        {
            return Err(Error::msg(format!(
                "{COMPONENT}: saved state holds {} recent accuracies, more than the mastery window of {}",
                loaded.recent.len(),
                m.window
            )));
        }
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
        let at = |steps, epochs| PhaseProgress { steps, epochs, accuracy: None };
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
        c.advance(PhaseProgress { steps: 3, ..Default::default() }).unwrap();
        let saved = c.save_state().unwrap();
        let mut d = recipe(false);
        assert_eq!(d.current_phase().unwrap(), 0);
        d.load_state(&saved).unwrap();
        assert_eq!(d.current_phase().unwrap(), 1);
        assert_eq!(d.advance(PhaseProgress { epochs: 2, ..Default::default() }).unwrap(), PhaseTransition::Finished);
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

    fn adaptive(phase_extra: serde_json::Value) -> PhasedCurriculum {
        let mut first = json!({"name": "short", "max_input_tokens": 100, "max_output_tokens": 10, "steps": 10});
        for (k, v) in phase_extra.as_object().unwrap() {
            first[k] = v.clone();
        }
        make(json!({
            "mastery": {"threshold": 0.6, "window": 3, "min_steps": 4, "max_steps": 20},
            "phases": [first, {"name": "long", "max_input_tokens": 200, "max_output_tokens": 10, "steps": 5}],
        }))
        .unwrap()
    }

    /// Feed step accuracies from step 1 on; the step at which the first phase ended, if it did.
    fn run(c: &mut PhasedCurriculum, accuracies: &[f64]) -> Option<u64> {
        for (i, &a) in accuracies.iter().enumerate() {
            let step = i as u64 + 1;
            let progress = PhaseProgress { steps: step, epochs: 0, accuracy: Some(a) };
            if c.advance(progress).unwrap() == PhaseTransition::Enter(1) {
                return Some(step);
            }
        }
        None
    }

    #[test]
    fn a_mastered_phase_ends_early_but_not_before_min_steps() {
        // Window 3 mean >= 0.6: steps 1-3 average 0.7, but min_steps is 4; step 4 ends it.
        let mut c = adaptive(json!({}));
        assert_eq!(run(&mut c, &[0.7, 0.7, 0.7, 0.7, 0.7]), Some(4));
        // One bad step in the window holds it back until the window recovers.
        let mut c = adaptive(json!({}));
        assert_eq!(run(&mut c, &[0.7, 0.7, 0.7, 0.0, 0.7, 0.7, 0.7, 0.7]), Some(7));
        // The next phase (the curriculum's rule too) starts with an empty window: perfect steps end
        // it at min_steps = 4, before its nominal 5.
        let at = |steps| PhaseProgress { steps, epochs: 0, accuracy: Some(1.0) };
        for step in 1..=3 {
            assert_eq!(c.advance(at(step)).unwrap(), PhaseTransition::Continue, "step {step}");
        }
        assert_eq!(c.advance(at(4)).unwrap(), PhaseTransition::Finished);
    }

    #[test]
    fn a_struggling_phase_is_extended_up_to_max_steps() {
        // Nominal 10 steps; accuracy stays 0.3: extended to max_steps = 20.
        let mut c = adaptive(json!({}));
        assert_eq!(run(&mut c, &[0.3; 25]), Some(20));
        // Mastered during the extension: ends then (step 14: (0.3 + 0.8 + 0.8) / 3 >= 0.6).
        let mut accuracies = vec![0.3; 12];
        accuracies.extend([0.8, 0.8, 0.8]);
        let mut c = adaptive(json!({}));
        assert_eq!(run(&mut c, &accuracies), Some(14));
        // A phase rule overrides the curriculum's; without a nominal length it runs on mastery.
        let mut c = adaptive(json!({"steps": null, "mastery": {"threshold": 0.5, "window": 2, "max_steps": 6}}));
        assert_eq!(c.phases().unwrap()[0].length, PhaseLength::Steps(6), "planned at its maximum");
        assert_eq!(run(&mut c, &[0.4, 0.5, 0.6]), Some(3));
        let mut c = adaptive(json!({"steps": null, "mastery": {"threshold": 0.5, "window": 2, "max_steps": 6}}));
        assert_eq!(run(&mut c, &[0.0; 8]), Some(6));
    }

    #[test]
    fn mastery_needs_the_step_accuracy_and_survives_a_resume() {
        let mut c = adaptive(json!({}));
        let e = c.advance(PhaseProgress { steps: 1, ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("accuracy") && e.contains("short"), "{e}");
        // The window is part of the saved state: a resumed curriculum ends the phase at the same step.
        let mut a = adaptive(json!({}));
        assert_eq!(run(&mut a, &[0.1, 0.9, 0.9]), None);
        let mut b = adaptive(json!({}));
        b.load_state(&a.save_state().unwrap()).unwrap();
        let next = PhaseProgress { steps: 4, epochs: 0, accuracy: Some(0.9) };
        assert_eq!(a.advance(next).unwrap(), PhaseTransition::Enter(1));
        assert_eq!(b.advance(next).unwrap(), PhaseTransition::Enter(1));
        // Bad rules name their key.
        let bad = |mastery: serde_json::Value| {
            make(json!({"mastery": mastery, "phases": [{"name": "a", "max_input_tokens": 5, "max_output_tokens": 5}]}))
                .err()
                .unwrap()
                .to_string()
        };
        assert!(bad(json!({"threshold": 1.5, "window": 2, "max_steps": 4})).contains("mastery.threshold"));
        assert!(bad(json!({"threshold": 0.5, "window": 0, "max_steps": 4})).contains("mastery.window"));
        assert!(bad(json!({"threshold": 0.5, "window": 5, "max_steps": 4})).contains("mastery.max_steps"));
        assert!(bad(json!({"threshold": 0.5, "window": 2})).contains("max_steps"));
    }
}
