//! Learning-rate schedules: linear warm-up, then constant or cosine decay.

use longrl_config::{LrSchedule, OptimConfig};

/// The learning rate of optimizer step `step` (0-based) out of `total_steps`.
///
/// Warm-up is linear: step `s < warmup` uses `lr * (s + 1) / warmup`, so the first step already
/// moves (HF's `lr * s / warmup` spends the first step at lr 0).
pub fn lr_at(optim: &OptimConfig, step: u64, total_steps: u64) -> f64 {
    let peak = optim.lr;
    if step < optim.warmup_steps {
        return peak * (step + 1) as f64 / optim.warmup_steps as f64;
    }
    match optim.schedule {
        LrSchedule::Constant => peak,
        LrSchedule::Cosine => {
            let floor = peak * optim.min_lr_ratio;
            let span = total_steps.saturating_sub(optim.warmup_steps).max(1) as f64;
            // Progress reaches 1 at the last step, so the final update uses the floor.
            let progress = ((step - optim.warmup_steps) as f64 / (span - 1.0).max(1.0)).min(1.0);
            floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn optim(schedule: LrSchedule, warmup: u64, min_ratio: f64) -> OptimConfig {
        OptimConfig {
            lr: 1.0,
            warmup_steps: warmup,
            schedule,
            min_lr_ratio: min_ratio,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            grad_clip: 0.0,
        }
    }

    #[test]
    fn warmup_is_linear_then_constant() {
        let o = optim(LrSchedule::Constant, 4, 0.0);
        let lrs: Vec<f64> = (0..6).map(|s| lr_at(&o, s, 10)).collect();
        assert_eq!(lrs, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn cosine_goes_from_peak_to_floor() {
        let o = optim(LrSchedule::Cosine, 2, 0.1);
        let total = 12;
        assert_eq!(lr_at(&o, 0, total), 0.5);
        assert!((lr_at(&o, 2, total) - 1.0).abs() < 1e-12);
        // Half-way through the decay (step 2 + 4.5 of 9 intervals) the rate is the mid point.
        let last = lr_at(&o, 11, total);
        assert!((last - 0.1).abs() < 1e-12, "last step uses the floor, got {last}");
        let mid = lr_at(&o, 2 + 9 / 2, total);
        let expected = 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * 4.0 / 9.0).cos());
        assert!((mid - expected).abs() < 1e-12);
        // Monotone non-increasing after warm-up.
        let decay: Vec<f64> = (2..total).map(|s| lr_at(&o, s, total)).collect();
        assert!(decay.windows(2).all(|w| w[1] <= w[0]));
        // Past the planned end it stays at the floor.
        assert!((lr_at(&o, 50, total) - 0.1).abs() < 1e-12);
    }
}
