//! Accuracy statistics: the unbiased pass@k estimator and the Wilson score interval.

/// z of a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Unbiased pass@k of one question with `n` samples of which `c` are correct (Chen et al. 2021):
/// `1 - C(n-c, k) / C(n, k)`, computed as a product to stay exact for large `n`. `k <= n`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    assert!(k >= 1 && k <= n && c <= n, "pass@k needs 1 <= k <= n and c <= n (n={n}, c={c}, k={k})");
    if n - c < k {
        return 1.0;
    }
    1.0 - ((n - c + 1)..=n).map(|i| 1.0 - k as f64 / i as f64).product::<f64>()
}

/// The 95% Wilson score interval of a proportion `p` observed over `n` trials, as fractions.
///
/// With K > 1 samples per question (or fractional scores) `p` is the mean of per-question scores in
/// [0, 1] and `n` the number of questions; their variance is at most `p(1-p)`, so the interval is
/// conservative then.
pub fn wilson_interval(p: f64, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).max(0.0).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// The difference `p2 - p1` of two independent proportions and its 95% interval by Newcombe's
/// hybrid score method (his method 10: Wilson intervals of each proportion, combined), which
/// stays inside [-1, 1] and behaves at 0% and 100%, where the Wald interval does not.
pub fn difference_interval(p1: f64, n1: usize, p2: f64, n2: usize) -> (f64, f64, f64) {
    let (l1, u1) = wilson_interval(p1, n1);
    let (l2, u2) = wilson_interval(p2, n2);
    let d = p2 - p1;
    let lo = d - ((p2 - l2).powi(2) + (u1 - p1).powi(2)).sqrt();
    let hi = d + ((u2 - p2).powi(2) + (p1 - l1).powi(2)).sqrt();
    (d, lo, hi)
}

/// The difference `p2 - p1` of two proportions measured on the same n items (before: p1, after:
/// p2) and its 95% interval by Newcombe's square-and-add method for paired data (Newcombe 1998,
/// Stat Med 17:2635, method 10): Wilson intervals of both margins combined with the continuity-
/// corrected correlation of the pairs. Counts: `both` correct in both, `only_before`, `only_after`,
/// `neither`. An independent-samples interval ignores that the same questions were asked twice and
/// is too wide when the answers agree.
pub fn paired_difference_interval(
    both: usize,
    only_before: usize,
    only_after: usize,
    neither: usize,
) -> (f64, f64, f64) {
    let n = (both + only_before + only_after + neither) as f64;
    if n == 0.0 {
        return (0.0, -1.0, 1.0);
    }
    let (before, after) = ((both + only_before) as f64, (both + only_after) as f64);
    let (p1, p2) = (before / n, after / n);
    let (l1, u1) = wilson_interval(p1, n as usize);
    let (l2, u2) = wilson_interval(p2, n as usize);
    let margins = before * (n - before) * after * (n - after);
    let phi = if margins == 0.0 {
        0.0
    } else {
        let a = (both * neither) as f64 - (only_before * only_after) as f64;
        if a > n / 2.0 {
            (a - n / 2.0) / margins.sqrt()
        } else if a >= 0.0 {
            0.0
        } else {
            a / margins.sqrt()
        }
    };
    let d = p2 - p1;
    let lo = d - ((p2 - l2).powi(2) + (u1 - p1).powi(2) - 2.0 * phi * (p2 - l2) * (u1 - p1)).max(0.0).sqrt();
    let hi = d + ((u2 - p2).powi(2) + (p1 - l1).powi(2) - 2.0 * phi * (u2 - p2) * (p1 - l1)).max(0.0).sqrt();
    (d, lo, hi)
}

/// The k of the pass@k columns: powers of two below `samples`, and `samples` itself.
pub fn pass_ks(samples: usize) -> Vec<usize> {
    let mut ks: Vec<usize> =
        std::iter::successors(Some(1usize), |k| Some(k * 2)).take_while(|&k| k < samples).collect();
    if samples >= 1 {
        ks.push(samples);
    }
    ks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binomial(n: u64, k: u64) -> f64 {
        if k > n {
            return 0.0;
        }
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    }

    #[test]
    fn pass_at_k_matches_the_binomial_formula() {
        for n in 1..=10usize {
            for c in 0..=n {
                for k in 1..=n {
                    let expected = 1.0 - binomial((n - c) as u64, k as u64) / binomial(n as u64, k as u64);
                    assert!((pass_at_k(n, c, k) - expected).abs() < 1e-12, "n={n} c={c} k={k}");
                }
            }
        }
        // Hand-computed: 4 samples, 1 correct: pass@1 = 1/4, pass@2 = 1 - C(3,2)/C(4,2) = 1/2.
        assert!((pass_at_k(4, 1, 1) - 0.25).abs() < 1e-12);
        assert!((pass_at_k(4, 1, 2) - 0.5).abs() < 1e-12);
        assert_eq!(pass_at_k(4, 0, 4), 0.0);
        assert_eq!(pass_at_k(4, 1, 4), 1.0);
    }

    #[test]
    fn wilson_interval_matches_a_hand_computation() {
        // p = 0.5, n = 100: center 0.5, half = 1.96/(1+0.0384)*sqrt(0.0025+0.0000096) = 0.0962.
        let (lo, hi) = wilson_interval(0.5, 100);
        assert!((lo - 0.4038).abs() < 1e-3 && (hi - 0.5962).abs() < 1e-3, "{lo} {hi}");
        // All correct: the interval stays inside [0, 1] and below 1 at its low end.
        let (lo, hi) = wilson_interval(1.0, 10);
        assert!((lo - 0.7225).abs() < 1e-3 && (hi - 1.0).abs() < 1e-12, "{lo} {hi}");
        assert_eq!(wilson_interval(0.3, 0), (0.0, 1.0));
    }

    #[test]
    fn difference_interval_matches_newcombes_worked_example() {
        // Newcombe (1998), Table II, example (a): 56/70 - 48/80 = 0.2, method 10: [0.0524, 0.3339].
        let (d, lo, hi) = difference_interval(48.0 / 80.0, 80, 56.0 / 70.0, 70);
        assert!((d - 0.2).abs() < 1e-12);
        assert!((lo - 0.0524).abs() < 5e-4 && (hi - 0.3339).abs() < 5e-4, "{lo} {hi}");
        // No difference: the interval straddles 0 symmetrically.
        let (d, lo, hi) = difference_interval(0.5, 100, 0.5, 100);
        assert!(d == 0.0 && lo < 0.0 && hi > 0.0 && (lo + hi).abs() < 1e-12);
    }

    #[test]
    fn paired_difference_interval_matches_fagerland_et_al() {
        // Cavo et al. (2012) as in Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency
        // Tables", ch. 8: 59 both, 6 only first, 16 only second, 80 neither; their p1 - p2 is
        // -0.0621 (95% CI -0.1186 to -0.0046), so after - before here is the mirror image.
        let (d, lo, hi) = paired_difference_interval(59, 16, 6, 80);
        assert!((d + 0.0621).abs() < 5e-5, "{d}");
        assert!((lo + 0.1186).abs() < 5e-5 && (hi + 0.0046).abs() < 5e-5, "{lo} {hi}");
        let (d, lo, hi) = paired_difference_interval(59, 6, 16, 80);
        assert!((d - 0.0621).abs() < 5e-5 && (lo - 0.0046).abs() < 5e-5 && (hi - 0.1186).abs() < 5e-5);
        // 0 -> 20 of 80 questions: the paired interval is narrower than the independent one.
        let (_, plo, phi) = paired_difference_interval(0, 0, 20, 60);
        let (_, ilo, ihi) = difference_interval(0.0, 80, 0.25, 80);
        assert!(plo > 0.0 && phi - plo <= ihi - ilo + 1e-12, "[{plo}, {phi}] vs [{ilo}, {ihi}]");
        // No change at all: the interval straddles 0.
        let (d, lo, hi) = paired_difference_interval(10, 0, 0, 70);
        assert!(d == 0.0 && lo < 0.0 && hi > 0.0);
    }

    #[test]
    fn pass_ks_are_powers_of_two_and_k() {
        assert_eq!(pass_ks(1), vec![1]);
        assert_eq!(pass_ks(8), vec![1, 2, 4, 8]);
        assert_eq!(pass_ks(6), vec![1, 2, 4, 6]);
    }
}
