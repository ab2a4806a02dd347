//! Statistics over seeds: the mean and its 95% Student-t interval (seeds are the independent
//! replicates of a sweep; a paired difference is the same estimate over per-seed differences).

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// A mean over seeds with its 95% interval (`None` below two values: no spread to estimate).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub n: usize,
    pub mean: f64,
    pub ci95: Option<[f64; 2]>,
}

/// Two-sided 95% quantile of Student's t with `df` degrees of freedom.
pub fn t975(df: usize) -> f64 {
    StudentsT::new(0.0, 1.0, df as f64).expect("df >= 1 is a valid t distribution").inverse_cdf(0.975)
}

/// Mean of `values` and the 95% t interval `mean +- t(n-1) * s / sqrt(n)` (s: sample standard deviation).
pub fn estimate(values: &[f64]) -> Estimate {
    let n = values.len();
    if n == 0 {
        return Estimate { n, mean: f64::NAN, ci95: None };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Estimate { n, mean, ci95: None };
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t975(n - 1) * (var / n as f64).sqrt();
    Estimate { n, mean, ci95: Some([mean - half, mean + half]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_tables() {
        for (df, t) in [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042)] {
            assert!((t975(df) - t).abs() < 1e-3, "df {df}: {} vs {t}", t975(df));
        }
    }

    #[test]
    fn estimate_matches_a_hand_computation() {
        // 10, 20, 30: mean 20, s = 10, half = 4.303 * 10 / sqrt(3) = 24.84.
        let e = estimate(&[10.0, 20.0, 30.0]);
        assert_eq!((e.n, e.mean), (3, 20.0));
        let [lo, hi] = e.ci95.unwrap();
        assert!((lo - (20.0 - 24.843)).abs() < 1e-2 && (hi - (20.0 + 24.843)).abs() < 1e-2, "{lo} {hi}");
        assert_eq!(estimate(&[5.0]).ci95, None);
        assert_eq!(estimate(&[2.0, 2.0]).ci95, Some([2.0, 2.0]));
        assert!(estimate(&[]).mean.is_nan());
    }
}
