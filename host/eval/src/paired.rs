//! Intervals for the difference of two accuracies measured on the same questions (before/after
//! training, two variants on one seed): a paired design, where the independent-samples interval
//! (Newcombe's method 10 for two samples) is too wide or too narrow depending on the correlation.
//!
//! With `n` questions, `only_after` right only after and `only_before` right only before (the
//! discordant pairs of McNemar's test), the difference is `(only_after - only_before) / n`.
//! [`tango_interval`] is Tango's asymptotic score interval (Tango 1998, Stat Med 17:891), the one
//! Fagerland, Lydersen and Laake (2014, Stat Med 33:2850) recommend; [`newcombe_interval`] is
//! Newcombe's square-and-add (his 1998 method 10, Stat Med 17:2635), a closed form close to it.

/// The counts of a paired 2x2 table: each question is right or wrong before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairedCounts {
    pub both: usize,
    pub only_after: usize,
    pub only_before: usize,
    pub neither: usize,
}

impl PairedCounts {
    /// Count the four cells from per-question correctness (`before[i]`, `after[i]`), or `None`
    /// when the lists differ in length.
    pub fn from_outcomes(before: &[bool], after: &[bool]) -> Option<Self> {
        if before.len() != after.len() {
            return None;
        }
        let mut counts = PairedCounts { both: 0, only_after: 0, only_before: 0, neither: 0 };
        for (&b, &a) in before.iter().zip(after) {
            match (b, a) {
                (true, true) => counts.both += 1,
                (false, true) => counts.only_after += 1,
                (true, false) => counts.only_before += 1,
                (false, false) => counts.neither += 1,
            }
        }
        Some(counts)
    }

    pub fn n(&self) -> usize {
        self.both + self.only_after + self.only_before + self.neither
    }

    /// Accuracy after minus accuracy before.
    pub fn difference(&self) -> f64 {
        (self.only_after as f64 - self.only_before as f64) / (self.n().max(1)) as f64
    }
}

/// Tango's score statistic for a hypothesised difference `delta`, with the restricted maximum
/// likelihood estimate of the `only_before` cell probability.
fn tango_statistic(only_after: f64, only_before: f64, n: f64, delta: f64) -> f64 {
    let a = 2.0 * n;
    let b = -only_after - only_before + (2.0 * n - only_after + only_before) * delta;
    let c = -only_before * delta * (1.0 - delta);
    let p21 = ((b * b - 4.0 * a * c).max(0.0).sqrt() - b) / (2.0 * a);
    let numerator = only_after - only_before - n * delta;
    let denominator = (n * (2.0 * p21 + delta * (1.0 - delta))).max(0.0).sqrt();
    if numerator == 0.0 {
        0.0
    } else if denominator == 0.0 {
        numerator.signum() * f64::INFINITY
    } else {
        numerator / denominator
    }
}

/// The `delta` in (-1, 1) where the decreasing `f` crosses zero (the boundary when it never does).
fn decreasing_root(f: impl Fn(f64) -> f64) -> f64 {
    let (mut lo, mut hi) = (-1.0 + 1e-12, 1.0 - 1e-12);
    if f(lo) <= 0.0 {
        return -1.0;
    }
    if f(hi) >= 0.0 {
        return 1.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > 0.0 {
            lo = mid
        } else {
            hi = mid
        }
        if hi - lo < 1e-13 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Tango's score interval for the paired difference at normal quantile `z` (1.96 for 95%):
/// `(difference, lower, upper)`. Every `delta` whose score statistic stays within `±z`; it stays
/// inside [-1, 1] and is defined with no discordant pairs. `n = 0` gives `(0, -1, 1)`.
pub fn tango_interval(counts: PairedCounts, z: f64) -> (f64, f64, f64) {
    let n = counts.n();
    if n == 0 {
        return (0.0, -1.0, 1.0);
    }
    let (b, c, n) = (counts.only_after as f64, counts.only_before as f64, n as f64);
    let estimate = (b - c) / n;
    let lower = if estimate <= -1.0 { -1.0 } else { decreasing_root(|d| tango_statistic(b, c, n, d) - z) };
    let upper = if estimate >= 1.0 { 1.0 } else { decreasing_root(|d| tango_statistic(b, c, n, d) + z) };
    (estimate, lower, upper)
}

/// The Wilson score interval of `x` successes in `n` trials at quantile `z`.
fn wilson(x: f64, n: f64, z: f64) -> (f64, f64) {
    let p = x / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).max(0.0).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Newcombe's square-and-add interval for the paired difference (method 10 of his 1998 paper):
/// the Wilson intervals of both accuracies, combined with the correlation of the table (Newcombe's
/// continuity-corrected phi: 0 when the cross-product excess is between 0 and n/2).
pub fn newcombe_interval(counts: PairedCounts, z: f64) -> (f64, f64, f64) {
    let n = counts.n();
    if n == 0 {
        return (0.0, -1.0, 1.0);
    }
    let nf = n as f64;
    let after = (counts.both + counts.only_after) as f64;
    let before = (counts.both + counts.only_before) as f64;
    let (p_after, p_before) = (after / nf, before / nf);
    let (l_after, u_after) = wilson(after, nf, z);
    let (l_before, u_before) = wilson(before, nf, z);
    let margins = [after, nf - after, before, nf - before];
    let phi = if margins.contains(&0.0) {
        0.0
    } else {
        let cross = counts.both as f64 * counts.neither as f64 - counts.only_after as f64 * counts.only_before as f64;
        let scale = margins.iter().product::<f64>().sqrt();
        if cross > nf / 2.0 {
            (cross - nf / 2.0) / scale
        } else if cross >= 0.0 {
            0.0
        } else {
            cross / scale
        }
    };
    let estimate = p_after - p_before;
    let (d_low, d_high) = (p_after - l_after, u_before - p_before);
    let lower = estimate - (d_low * d_low + d_high * d_high - 2.0 * phi * d_low * d_high).max(0.0).sqrt();
    let (d_low, d_high) = (p_before - l_before, u_after - p_after);
    let upper = estimate + (d_low * d_low + d_high * d_high - 2.0 * phi * d_low * d_high).max(0.0).sqrt();
    (estimate, lower.max(-1.0), upper.min(1.0))
}

/// The 95% paired interval the reports use: Tango's.
pub fn paired_difference_interval(counts: PairedCounts) -> (f64, f64, f64) {
    tango_interval(counts, 1.959_963_984_540_054)
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: f64 = 1.959_963_984_540_054;

    /// Cavo et al. (2012), complete response before and after consolidation therapy, the worked
    /// example of Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables (2017),
    /// chapter 8 (table rows: after, columns: before): 59 both, 6 only after, 16 only before, 80 neither.
    const CAVO: PairedCounts = PairedCounts { both: 59, only_after: 6, only_before: 16, neither: 80 };

    fn round4(x: f64) -> f64 {
        (x * 1e4).round() / 1e4
    }

    #[test]
    fn tango_matches_the_published_example() {
        let (d, lo, hi) = tango_interval(CAVO, Z);
        assert_eq!((round4(d), round4(lo), round4(hi)), (-0.0621, -0.1240, -0.0054));
    }

    #[test]
    fn newcombe_matches_the_published_example() {
        let (d, lo, hi) = newcombe_interval(CAVO, Z);
        assert_eq!((round4(d), round4(lo), round4(hi)), (-0.0621, -0.1186, -0.0046));
    }

    #[test]
    fn the_limits_are_where_the_score_statistic_is_z() {
        let (_, lo, hi) = tango_interval(CAVO, Z);
        let t = |d| tango_statistic(6.0, 16.0, 161.0, d);
        assert!((t(lo) - Z).abs() < 1e-9 && (t(hi) + Z).abs() < 1e-9);
    }

    #[test]
    fn mirror_image_tables_give_mirror_intervals() {
        let swapped = PairedCounts { only_after: 16, only_before: 6, ..CAVO };
        for interval in [tango_interval, newcombe_interval] {
            let (d, lo, hi) = interval(CAVO, Z);
            let (d2, lo2, hi2) = interval(swapped, Z);
            assert!((d + d2).abs() < 1e-12 && (lo + hi2).abs() < 1e-9 && (hi + lo2).abs() < 1e-9);
        }
    }

    #[test]
    fn edge_tables_stay_inside_minus_one_one() {
        let none = PairedCounts { both: 30, only_after: 0, only_before: 0, neither: 20 };
        let (d, lo, hi) = tango_interval(none, Z);
        assert!(d == 0.0 && lo < 0.0 && hi > 0.0 && lo > -0.2 && hi < 0.2, "{lo} {hi}");
        // Every question flips to right: the restricted estimate is (1 - d) / 2, so the statistic is
        // sqrt(n (1 - d) / (1 + d)) and the lower limit solves it = z: (1 - z^2/n) / (1 + z^2/n).
        let all = PairedCounts { both: 0, only_after: 10, only_before: 0, neither: 0 };
        let (d, lo, hi) = tango_interval(all, Z);
        let r = Z * Z / 10.0;
        assert!(d == 1.0 && hi == 1.0 && (lo - (1.0 - r) / (1.0 + r)).abs() < 1e-9, "{lo}");
        assert_eq!(
            tango_interval(PairedCounts { both: 0, only_after: 0, only_before: 0, neither: 0 }, Z),
            (0.0, -1.0, 1.0)
        );
    }

    #[test]
    fn pairing_narrows_the_interval_of_correlated_outcomes() {
        // Most questions keep their outcome: the paired interval is much narrower than treating
        // the two accuracies as independent samples would allow.
        let c = PairedCounts { both: 40, only_after: 12, only_before: 2, neither: 46 };
        let (_, lo, hi) = tango_interval(c, Z);
        let independent = crate::stats::difference_interval(0.42, 100, 0.52, 100);
        assert!(hi - lo < 0.75 * (independent.2 - independent.1), "{lo}..{hi} vs {independent:?}");
        assert!(lo > 0.0, "an improvement the independent interval cannot show: {lo}");
        assert!(independent.1 < 0.0);
    }

    #[test]
    fn counts_from_outcomes() {
        let before = [true, true, false, false, true];
        let after = [true, false, true, false, true];
        let c = PairedCounts::from_outcomes(&before, &after).unwrap();
        assert_eq!(c, PairedCounts { both: 2, only_after: 1, only_before: 1, neither: 1 });
        assert_eq!(c.difference(), 0.0);
        assert!(PairedCounts::from_outcomes(&before, &after[..4]).is_none());
    }
}
