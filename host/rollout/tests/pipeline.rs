//! The rollout pipeline with a scripted generator and a reward that records what it is asked: groups
//! come back per prompt in order, calls are chunked and seeded per call, and every wrong count is an
//! error naming the component.

use std::sync::{Arc, Mutex};

use longrl_core::api::{FinishReason, GenerateOutput, Generation, GenerationParams, Reward, RewardInput, RewardScore};
use longrl_rollout::{Generator, Response, RewardSet, RolloutPrompt, RolloutSpec, roll_out, score_groups};

/// Answers prompt `[p]` with ` p.j ` for rollout j; drops the last generation when `short`.
struct Scripted {
    calls: Vec<(usize, u64)>,
    short: bool,
}

impl Generator for Scripted {
    fn name(&self) -> &str {
        "policy `scripted`"
    }
    fn generate(&mut self, prompts: &[Vec<u32>], params: &GenerationParams) -> anyhow::Result<GenerateOutput> {
        self.calls.push((prompts.len(), params.seed));
        let mut generations: Vec<Generation> = prompts
            .iter()
            .flat_map(|p| {
                (0..params.rollouts).map(move |j| Generation {
                    tokens: vec![p[0], j],
                    text: format!(" {}.{j} ", p[0]),
                    logprobs: vec![0.0; 2],
                    finish: if j == 0 { FinishReason::Length } else { FinishReason::Stop },
                })
            })
            .collect();
        if self.short {
            generations.pop();
        }
        Ok(GenerateOutput { generations, ..Default::default() })
    }
}

/// Scores 1 when the response is rollout 1 of its prompt; records its inputs.
struct SecondIsRight(Arc<Mutex<Vec<RewardInput>>>);

impl Reward for SecondIsRight {
    fn check_sources(&self, _: &[String]) -> longrl_core::Result<()> {
        Ok(())
    }
    fn score(&self, batch: &[RewardInput]) -> longrl_core::Result<Vec<RewardScore>> {
        self.0.lock().unwrap().extend(batch.iter().cloned());
        Ok(batch
            .iter()
            .map(|i| RewardScore {
                score: if i.response.trim().ends_with(".1") { 1.0 } else { 0.0 },
                decided_by: "second".into(),
                details: serde_json::Value::Null,
            })
            .collect())
    }
}

fn rewards() -> (RewardSet, Arc<Mutex<Vec<RewardInput>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    (RewardSet::new(vec![("second".into(), Box::new(SecondIsRight(seen.clone())))], true, 1.0), seen)
}

const IDS: [[u32; 1]; 3] = [[10], [20], [30]];

fn prompts() -> Vec<RolloutPrompt<'static>> {
    IDS.iter()
        .map(|ids| RolloutPrompt {
            ids,
            user: "the user message",
            ground_truth: "g",
            data_source: "src",
            question: "q",
        })
        .collect()
}

fn spec(strip: bool, seed_of_call: &dyn Fn(u64) -> u64) -> RolloutSpec<'_> {
    RolloutSpec {
        params: GenerationParams { rollouts: 2, ..Default::default() },
        batch_prompts: 2,
        seed_of_call,
        strip_responses: strip,
    }
}

#[test]
fn groups_come_back_per_prompt_scored_in_seeded_chunks() {
    let (rewards, seen) = rewards();
    let mut generator = Scripted { calls: Vec::new(), short: false };
    let mut progress = Vec::new();
    let seeds = |call: u64| 100 + call;
    let out = roll_out(&mut generator, &rewards, &prompts(), &spec(false, &seeds), &mut |n| progress.push(n)).unwrap();
    // Three prompts in calls of two: 2 + 1 prompts, seeded per call.
    assert_eq!(generator.calls, vec![(2, 100), (1, 101)]);
    assert_eq!(progress, vec![4, 2]);
    assert_eq!(out.groups.len(), 3);
    assert_eq!(out.generated_tokens, 12);
    for (p, group) in out.groups.iter().enumerate() {
        let texts: Vec<&str> = group.rollouts.iter().map(|r| r.text.as_str()).collect();
        let id = IDS[p][0];
        assert_eq!(texts, vec![format!(" {id}.0 "), format!(" {id}.1 ")]);
        let scores: Vec<f32> = group.rollouts.iter().map(|r| r.score.score).collect();
        assert_eq!(scores, vec![0.0, 1.0]);
        assert_eq!(group.rollouts[0].finish, Some(FinishReason::Length));
        assert_eq!(group.rollouts[1].tokens, vec![id, 1]);
    }
    // The rewards read the response as generated, with the prompt's facts.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 6);
    assert_eq!((seen[0].response.as_str(), seen[0].prompt.as_str()), (" 10.0 ", "the user message"));
    assert_eq!(
        (seen[0].ground_truth.as_str(), seen[0].data_source.as_str(), seen[0].question.as_str()),
        ("g", "src", "q")
    );
}

#[test]
fn stripped_responses_reach_the_rewards_stripped() {
    let (rewards, seen) = rewards();
    let mut generator = Scripted { calls: Vec::new(), short: false };
    let out = roll_out(&mut generator, &rewards, &prompts()[..1], &spec(true, &|_| 0), &mut |_| {}).unwrap();
    assert_eq!(out.groups[0].rollouts[1].text, "10.1");
    assert_eq!(seen.lock().unwrap()[1].response, "10.1");
}

#[test]
fn a_generator_returning_the_wrong_count_is_an_error_naming_it() {
    let (rewards, seen) = rewards();
    let mut generator = Scripted { calls: Vec::new(), short: true };
    let error = roll_out(&mut generator, &rewards, &prompts(), &spec(false, &|_| 0), &mut |_| {}).unwrap_err();
    assert_eq!(error.to_string(), "policy `scripted` returned 3 generations for 2 prompts x 2 rollouts");
    assert!(seen.lock().unwrap().is_empty(), "nothing is scored from a short batch");
}

#[test]
fn saved_responses_score_in_groups_of_any_size() {
    let (rewards, _) = rewards();
    let response = |text: &str| Response { tokens: Vec::new(), text: text.into(), finish: None, logprobs: Vec::new() };
    let groups = score_groups(
        &rewards,
        &prompts()[..2],
        vec![vec![response("a.1"), response("a.0"), response("b.1")], vec![response("x.1")]],
        true,
    )
    .unwrap();
    let scores: Vec<Vec<f32>> = groups.iter().map(|g| g.rollouts.iter().map(|r| r.score.score).collect()).collect();
    assert_eq!(scores, vec![vec![1.0, 0.0, 1.0], vec![1.0]]);
    let error = score_groups(&rewards, &prompts(), vec![vec![response("a")]], true).unwrap_err();
    assert!(error.to_string().contains("1 groups of responses for 3 prompts"), "{error}");
}
