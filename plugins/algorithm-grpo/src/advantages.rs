//! Advantages from grouped rewards: GRPO, Dr.GRPO and RLOO, with group, batch or no std scaling.
//!
//! Conventions follow verl's `core_algos`: the std is unbiased (`torch.std`), and a group of one
//! sample has mean 0 and std 1 (its advantage is its reward: there is nothing to compare it with).

use longrl_core::{Result, bail};

use crate::config::{AdvantageEstimator, Scale};

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Unbiased std; 1 for fewer than two values (verl's lone-sample convention).
fn std_unbiased(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 1.0;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

pub fn compute(
    estimator: AdvantageEstimator,
    scale: Scale,
    eps: f64,
    rewards: &[f32],
    group_sizes: &[u32],
) -> Result<Vec<f32>> {
    let total: u64 = group_sizes.iter().map(|&g| u64::from(g)).sum();
    if total != rewards.len() as u64 {
        bail!("advantages: group sizes sum to {total} but {} rewards were given", rewards.len());
    }
    if let Some(g) = group_sizes.iter().position(|&g| g == 0) {
        bail!("advantages: group {g} is empty");
    }
    if let Some(i) = rewards.iter().position(|r| !r.is_finite()) {
        bail!("advantages: reward {i} is {}", rewards[i]);
    }
    let all: Vec<f64> = rewards.iter().map(|&r| f64::from(r)).collect();
    let batch_std = std_unbiased(&all);
    let mut out = Vec::with_capacity(all.len());
    let mut start = 0usize;
    for &size in group_sizes {
        let group = &all[start..start + size as usize];
        start += size as usize;
        let n = group.len() as f64;
        let (group_mean, group_std) = if group.len() < 2 { (0.0, 1.0) } else { (mean(group), std_unbiased(group)) };
        let divisor = match scale {
            Scale::Group => group_std + eps,
            Scale::Batch => batch_std + eps,
            Scale::None => 1.0,
        };
        for &r in group {
            let centred = match estimator {
                AdvantageEstimator::Grpo | AdvantageEstimator::Drgrpo => r - group_mean,
                // r - (sum - r)/(n - 1); a lone sample keeps its reward, as in verl.
                AdvantageEstimator::Rloo if group.len() < 2 => r,
                AdvantageEstimator::Rloo => r - (group_mean * n - r) / (n - 1.0),
            };
            out.push((centred / divisor) as f32);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn grpo_by_hand() {
        // Group [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(1/3) = 0.57735.
        // Group [2, 4]: mean 3, std sqrt(2) = 1.41421.
        let adv =
            compute(AdvantageEstimator::Grpo, Scale::Group, 0.0, &[1.0, 0.0, 0.0, 1.0, 2.0, 4.0], &[4, 2]).unwrap();
        let a = 0.5 / (1.0f64 / 3.0).sqrt();
        let b = 1.0 / 2f64.sqrt();
        close(&adv, &[a, -a, -a, a, -b, b]);
        // eps is added to the std.
        let adv = compute(AdvantageEstimator::Grpo, Scale::Group, 0.5, &[2.0, 4.0], &[2]).unwrap();
        close(&adv, &[-1.0 / (2f64.sqrt() + 0.5), 1.0 / (2f64.sqrt() + 0.5)]);
    }

    #[test]
    fn all_equal_group_gets_zero_and_lone_sample_keeps_reward() {
        let adv = compute(AdvantageEstimator::Grpo, Scale::Group, 1e-6, &[1.0, 1.0, 1.0, 0.7], &[3, 1]).unwrap();
        close(&adv, &[0.0, 0.0, 0.0, 0.7 / (1.0 + 1e-6)]);
    }

    #[test]
    fn batch_scale_uses_the_std_of_all_rewards() {
        // Rewards [1, 0, 3, 1]: batch mean 1.25, unbiased var = (0.0625+1.5625+3.0625+0.0625)/3 = 1.58333.
        let s = (4.75f64 / 3.0).sqrt();
        let adv = compute(AdvantageEstimator::Grpo, Scale::Batch, 0.0, &[1.0, 0.0, 3.0, 1.0], &[2, 2]).unwrap();
        close(&adv, &[0.5 / s, -0.5 / s, 1.0 / s, -1.0 / s]);
    }

    #[test]
    fn drgrpo_only_centres() {
        let adv =
            compute(AdvantageEstimator::Drgrpo, Scale::None, 1e-6, &[1.0, 0.0, 0.0, 0.0, 5.0, 7.0], &[4, 2]).unwrap();
        close(&adv, &[0.75, -0.25, -0.25, -0.25, -1.0, 1.0]);
    }

    #[test]
    fn rloo_leaves_one_out() {
        // [1, 0, 0]: baselines 0, 0.5, 0.5.  [3, 1]: baselines 1, 3.
        let adv = compute(AdvantageEstimator::Rloo, Scale::None, 0.0, &[1.0, 0.0, 0.0, 3.0, 1.0], &[3, 2]).unwrap();
        close(&adv, &[1.0, -0.5, -0.5, 2.0, -2.0]);
        // With group scaling the same values are divided by the group's std: [3, 1] has std sqrt(2).
        let adv = compute(AdvantageEstimator::Rloo, Scale::Group, 0.0, &[3.0, 1.0], &[2]).unwrap();
        close(&adv, &[2.0 / 2f64.sqrt(), -2.0 / 2f64.sqrt()]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let e = compute(AdvantageEstimator::Grpo, Scale::Group, 0.0, &[1.0, 2.0], &[3]).unwrap_err();
        assert!(e.to_string().contains("sum to 3"), "{e}");
        let e = compute(AdvantageEstimator::Grpo, Scale::Group, 0.0, &[1.0, 2.0], &[2, 0]).unwrap_err();
        assert!(e.to_string().contains("group 1 is empty"), "{e}");
        let e = compute(AdvantageEstimator::Grpo, Scale::Group, 0.0, &[1.0, f32::NAN], &[2]).unwrap_err();
        assert!(e.to_string().contains("reward 1"), "{e}");
    }

    fn groups() -> impl Strategy<Value = Vec<Vec<f32>>> {
        prop::collection::vec(prop::collection::vec(-5.0f32..5.0, 2..10), 1..8)
    }

    proptest! {
        #[test]
        fn grpo_advantages_sum_to_zero_per_group(groups in groups(), batch in any::<bool>()) {
            let sizes: Vec<u32> = groups.iter().map(|g| g.len() as u32).collect();
            let rewards: Vec<f32> = groups.concat();
            let scale = if batch { Scale::Batch } else { Scale::Group };
            for estimator in [AdvantageEstimator::Grpo, AdvantageEstimator::Rloo] {
                let adv = compute(estimator, scale, 1e-6, &rewards, &sizes).unwrap();
                let mut start = 0;
                for g in &groups {
                    let sum: f64 = adv[start..start + g.len()].iter().map(|&a| f64::from(a)).sum();
                    let largest = adv[start..start + g.len()].iter().fold(1.0f64, |m, a| m.max(f64::from(a.abs())));
                    prop_assert!(sum.abs() < 1e-5 * largest * g.len() as f64, "{estimator:?} group {g:?}: sum {sum}");
                    start += g.len();
                }
            }
        }

        #[test]
        fn rloo_is_grpo_centring_scaled_by_n_over_n_minus_1(group in prop::collection::vec(-5.0f32..5.0, 2..10)) {
            let n = group.len() as f64;
            let centred = compute(AdvantageEstimator::Drgrpo, Scale::None, 0.0, &group, &[group.len() as u32]).unwrap();
            let rloo = compute(AdvantageEstimator::Rloo, Scale::None, 0.0, &group, &[group.len() as u32]).unwrap();
            for (c, r) in centred.iter().zip(&rloo) {
                prop_assert!((f64::from(*c) * n / (n - 1.0) - f64::from(*r)).abs() < 1e-4);
            }
        }
    }
}
