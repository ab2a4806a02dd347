//! What a run leaves to read, and how it is shown:
//!
//! - [`rollout_log`]: `RUN_DIR/rollouts.jsonl`, sampled groups of training and evaluation rollouts with
//!   their text, rewards, reward breakdown and advantages (prompts stored once per example).
//! - [`behaviours`]: the four reasoning behaviours of the QwenLong-L1 paper (grounding, subgoal setting,
//!   backtracking, verification) counted per response, by textual cues or by an LLM judge, and their
//!   means per step and phase, split by correct and wrong responses.
//! - [`html`]: `RUN_DIR/report.html`, the run report as one self-contained page (tables with intervals,
//!   curves with phase boundaries, browsable rollouts with highlighted behaviour cues).
//! - [`run_dir`]: reading what a run wrote (metrics, stage evaluations), with line-numbered errors.

pub mod behaviours;
pub mod html;
pub mod rollout_log;
pub mod run_dir;
