//! The comparison tables: per variant, every stage x slice as the mean over seeds with its
//! interval and the per-seed values; the last stage against SFT per seed; each variant against the
//! first, paired on the seeds both finished. Accuracies in percent, differences in points.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::plan::Plan;
use crate::results::{Collected, RunResult, slices};
use crate::stats::{Estimate, estimate};

/// The pseudo-stage naming each run's last evaluated stage, so variants whose phases are named
/// differently still compare where they end.
pub const FINAL: &str = "final";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub stage: String,
    /// `all`, `bucket=B` or `kind=K`.
    pub slice: String,
    pub estimate: Estimate,
    pub per_seed: BTreeMap<u64, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantSummary {
    pub name: String,
    pub overrides: Vec<String>,
    pub seeds_finished: Vec<u64>,
    /// Accuracy (%) of every stage and slice.
    pub rows: Vec<Row>,
    /// `final` minus `sft` (points), per seed, where the runs evaluated after SFT.
    pub gain_over_sft: Vec<Row>,
    /// Each finished seed's run report page (`report.html`), relative to the sweep's directory.
    pub reports: BTreeMap<u64, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Paired {
    pub variant: String,
    pub baseline: String,
    pub seeds: Vec<u64>,
    /// `variant` minus `baseline` (points) on the same seed, for stages both have (and `final`).
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub variant: String,
    pub seed: u64,
    pub error: String,
    pub log: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub variant: String,
    pub seed: u64,
    pub wall_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub seeds: Vec<u64>,
    pub variants: Vec<VariantSummary>,
    pub paired: Vec<Paired>,
    pub failed: Vec<Failure>,
    /// `variant seed` of cells with no outcome yet.
    pub missing: Vec<String>,
    pub wall_times: Vec<Timing>,
}

/// The accuracy (%) of each (stage, slice) of one run, `final` included.
fn run_values(run: &RunResult) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for stage in &run.stages {
        for (slice, acc) in slices(stage) {
            out.insert((stage.stage.clone(), slice), 100.0 * acc.accuracy);
        }
    }
    if let Some(last) = run.stages.last() {
        for (slice, acc) in slices(last) {
            out.insert((FINAL.to_string(), slice), 100.0 * acc.accuracy);
        }
    }
    out
}

/// Slices in reading order: `all`, buckets by their number, then kinds.
fn slice_order(slice: &str) -> (u8, u64, String) {
    match slice.split_once('=') {
        None => (0, 0, slice.to_string()),
        Some(("bucket", b)) => (1, b.parse().unwrap_or(u64::MAX), b.to_string()),
        Some((kind, v)) => (2, 0, format!("{kind}={v}")),
    }
}

/// Rows over the keys in `order`, each from the per-seed values that have it.
fn rows(order: &[(String, String)], per_seed: &BTreeMap<u64, BTreeMap<(String, String), f64>>) -> Vec<Row> {
    order
        .iter()
        .filter_map(|key| {
            let values: BTreeMap<u64, f64> =
                per_seed.iter().filter_map(|(seed, v)| v.get(key).map(|x| (*seed, *x))).collect();
            if values.is_empty() {
                return None;
            }
            Some(Row {
                stage: key.0.clone(),
                slice: key.1.clone(),
                estimate: estimate(&values.values().copied().collect::<Vec<_>>()),
                per_seed: values,
            })
        })
        .collect()
}

/// Stage names in the order the runs recorded them, then `final`; slices in reading order.
fn key_order(runs: &[&RunResult]) -> Vec<(String, String)> {
    let mut stages: Vec<String> = Vec::new();
    let mut slices = BTreeSet::new();
    for run in runs {
        for stage in &run.stages {
            if !stages.contains(&stage.stage) {
                stages.push(stage.stage.clone());
            }
            slices.extend(crate::results::slices(stage).into_iter().map(|(s, _)| s));
        }
    }
    stages.push(FINAL.to_string());
    let mut slices: Vec<String> = slices.into_iter().collect();
    slices.sort_by_key(|s| slice_order(s));
    stages.iter().flat_map(|stage| slices.iter().map(move |s| (stage.clone(), s.clone()))).collect()
}

impl Summary {
    pub fn build(plan: &Plan, collected: &Collected) -> Summary {
        let mut variants = Vec::new();
        let mut values_by_variant: Vec<BTreeMap<u64, BTreeMap<(String, String), f64>>> = Vec::new();
        let mut orders = Vec::new();
        for variant in &plan.variants {
            let runs: Vec<&RunResult> = collected.runs.iter().filter(|r| r.cell.variant == variant.name).collect();
            let per_seed: BTreeMap<u64, BTreeMap<(String, String), f64>> =
                runs.iter().map(|r| (r.cell.seed, run_values(r))).collect();
            let order = key_order(&runs);
            let gains: BTreeMap<u64, BTreeMap<(String, String), f64>> = per_seed
                .iter()
                .map(|(seed, v)| {
                    let diff = v
                        .iter()
                        .filter(|((stage, _), _)| stage == FINAL)
                        .filter_map(|((_, slice), after)| {
                            v.get(&("sft".to_string(), slice.clone()))
                                .map(|before| ((FINAL.to_string(), slice.clone()), after - before))
                        })
                        .collect();
                    (*seed, diff)
                })
                .collect();
            let reports = runs
                .iter()
                .filter_map(|r| {
                    let page = r.cell.run_dir.join(longrl_report::html::REPORT_FILE);
                    let shown = page.strip_prefix(&plan.out).unwrap_or(&page).display().to_string();
                    page.exists().then_some((r.cell.seed, shown))
                })
                .collect();
            variants.push(VariantSummary {
                reports,
                name: variant.name.clone(),
                overrides: variant.overrides.clone(),
                seeds_finished: per_seed.keys().copied().collect(),
                rows: rows(&order.iter().filter(|k| k.0 != FINAL).cloned().collect::<Vec<_>>(), &per_seed),
                gain_over_sft: rows(&order.iter().filter(|k| k.0 == FINAL).cloned().collect::<Vec<_>>(), &gains),
            });
            values_by_variant.push(per_seed);
            orders.push(order);
        }
        let mut paired = Vec::new();
        if let Some((base_values, base_order)) = values_by_variant.first().zip(orders.first()) {
            for (k, variant) in plan.variants.iter().enumerate().skip(1) {
                let mine = &values_by_variant[k];
                let seeds: Vec<u64> = mine.keys().filter(|s| base_values.contains_key(s)).copied().collect();
                let diffs: BTreeMap<u64, BTreeMap<(String, String), f64>> = seeds
                    .iter()
                    .map(|s| {
                        let (a, b) = (&mine[s], &base_values[s]);
                        (*s, a.iter().filter_map(|(key, x)| b.get(key).map(|y| (key.clone(), x - y))).collect())
                    })
                    .collect();
                let order: Vec<(String, String)> =
                    orders[k].iter().filter(|key| base_order.contains(key)).cloned().collect();
                paired.push(Paired {
                    variant: variant.name.clone(),
                    baseline: plan.variants[0].name.clone(),
                    seeds,
                    rows: rows(&order, &diffs),
                });
            }
        }
        Summary {
            seeds: plan.seeds.clone(),
            variants,
            paired,
            failed: collected
                .failed
                .iter()
                .map(|f| Failure {
                    variant: f.cell.variant.clone(),
                    seed: f.cell.seed,
                    error: f.error.clone(),
                    log: f.cell.log.display().to_string(),
                })
                .collect(),
            missing: collected.missing.iter().map(|c| format!("{} seed {}", c.variant, c.seed)).collect(),
            wall_times: collected
                .runs
                .iter()
                .map(|r| Timing { variant: r.cell.variant.clone(), seed: r.cell.seed, wall_s: r.wall_s })
                .collect(),
        }
    }

    pub fn to_markdown(&self) -> String {
        let mut out = String::from("# Sweep results\n\n");
        let seeds: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "Seeds {}. Accuracy (%) on each run's held-out questions after each stage: the mean over the seeds \
             that finished, its 95% Student-t interval over seeds (n-1 degrees of freedom; none with one seed), \
             and each seed's value. Slices: `all`, `bucket=` prompt length, `kind=` question kind. `{FINAL}` is \
             each run's last evaluated stage. Differences are in points, paired per seed.\n",
            seeds.join(", ")
        );
        for v in &self.variants {
            let overrides = if v.overrides.is_empty() {
                "the config as it is".to_string()
            } else {
                format!("`{}`", v.overrides.join("`, `"))
            };
            let _ = writeln!(
                out,
                "## Variant `{}`: {} of {} seeds finished\n\nOverrides: {overrides}.\n",
                v.name,
                v.seeds_finished.len(),
                self.seeds.len()
            );
            table(&mut out, &v.rows);
            if !v.reports.is_empty() {
                let links: Vec<String> =
                    v.reports.iter().map(|(seed, page)| format!("[seed {seed}]({page})")).collect();
                let _ = writeln!(out, "Run reports: {}.\n", links.join(", "));
            }
            if !v.gain_over_sft.is_empty() {
                let _ = writeln!(out, "`{FINAL}` minus `sft` (points, per seed):\n");
                table(&mut out, &v.gain_over_sft);
            }
        }
        for p in &self.paired {
            let seeds: Vec<String> = p.seeds.iter().map(u64::to_string).collect();
            let _ = writeln!(
                out,
                "## `{}` minus `{}`, paired on seeds {} (points)\n",
                p.variant,
                p.baseline,
                if seeds.is_empty() { "(none in common)".into() } else { seeds.join(", ") }
            );
            table(&mut out, &p.rows);
        }
        if !self.failed.is_empty() {
            let _ = writeln!(out, "## Failed runs (left out of every number above)\n");
            for f in &self.failed {
                let _ =
                    writeln!(out, "- variant `{}` seed {}: {} (log `{}`)", f.variant, f.seed, f.error.trim(), f.log);
            }
            let _ = writeln!(out);
        }
        if !self.missing.is_empty() {
            let _ = writeln!(out, "## Not run yet\n\n{}\n", self.missing.join(", "));
        }
        if !self.wall_times.is_empty() {
            let _ = writeln!(out, "## Wall time per run (s)\n\n| variant | seed | wall time |\n|---|---|---|");
            for t in &self.wall_times {
                let _ = writeln!(out, "| {} | {} | {:.0} |", t.variant, t.seed, t.wall_s);
            }
            let _ = writeln!(out);
        }
        out
    }
}

fn table(out: &mut String, rows: &[Row]) {
    if rows.is_empty() {
        let _ = writeln!(out, "(no evaluations recorded)\n");
        return;
    }
    let _ = writeln!(out, "| stage | slice | mean | 95% interval | per seed |\n|---|---|---|---|---|");
    for r in rows {
        let interval = r.estimate.ci95.map_or("–".into(), |[lo, hi]| format!("[{lo:.1}, {hi:.1}]"));
        let seeds: Vec<String> = r.per_seed.iter().map(|(s, v)| format!("s{s}: {v:.1}")).collect();
        let _ =
            writeln!(out, "| {} | {} | {:.1} | {interval} | {} |", r.stage, r.slice, r.estimate.mean, seeds.join(", "));
    }
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SweepArgs;
    use crate::results::{Accuracy, RunResult, StageEval};

    fn acc(accuracy: f64) -> Accuracy {
        Accuracy { n: 10, accuracy, ci95: [0.0, 1.0] }
    }

    /// A run whose stages score `values` (overall = the one bucket `512`).
    fn run(plan: &Plan, variant: &str, seed: u64, values: &[(&str, f64)]) -> RunResult {
        let cell = plan.cells.iter().find(|c| c.variant == variant && c.seed == seed).unwrap().clone();
        let stages = values
            .iter()
            .map(|(stage, a)| StageEval {
                stage: stage.to_string(),
                overall: acc(*a),
                by_bucket: [("512".to_string(), acc(*a))].into(),
                by_kind: BTreeMap::new(),
            })
            .collect();
        RunResult { cell, stages, metrics: Vec::new(), wall_s: 1.0 }
    }

    #[test]
    fn means_intervals_gains_and_paired_differences() {
        let args = SweepArgs {
            seeds: vec![0, 1, 2],
            variants: vec!["phased".parse().unwrap(), "single:x=1".parse().unwrap()],
            out: "/tmp/s".into(),
            jobs: 1,
            synth: None,
            report_only: true,
        };
        let inputs = crate::Inputs { longrl: "longrl".into(), config: None, overrides: vec![] };
        let plan = Plan::new(&args, &inputs).unwrap();
        let collected = Collected {
            runs: vec![
                run(&plan, "phased", 0, &[("sft", 0.0), ("short", 0.1), ("long", 0.3)]),
                run(&plan, "phased", 1, &[("sft", 0.1), ("short", 0.1), ("long", 0.2)]),
                run(&plan, "phased", 2, &[("sft", 0.0), ("short", 0.0), ("long", 0.4)]),
                run(&plan, "single", 0, &[("sft", 0.0), ("all", 0.1)]),
                run(&plan, "single", 2, &[("sft", 0.0), ("all", 0.2)]),
            ],
            failed: vec![],
            missing: vec![plan.cells[4].clone()],
        };
        let s = Summary::build(&plan, &collected);
        let phased = &s.variants[0];
        let long = phased.rows.iter().find(|r| r.stage == "long" && r.slice == "bucket=512").unwrap();
        assert!((long.estimate.mean - 30.0).abs() < 1e-9);
        // 30, 20, 40: s = 10, half = 4.303 * 10 / sqrt(3).
        let [lo, hi] = long.estimate.ci95.unwrap();
        assert!((hi - lo - 2.0 * 4.3027 * 10.0 / 3f64.sqrt()).abs() < 1e-2, "{lo} {hi}");
        assert_eq!(long.per_seed, [(0, 30.0), (1, 20.0), (2, 40.0)].into());
        let gain = phased.gain_over_sft.iter().find(|r| r.slice == "all").unwrap();
        assert_eq!(gain.per_seed, [(0, 30.0), (1, 10.0), (2, 40.0)].into());
        // `single` has seeds 0 and 2; its phases are named differently, so only `sft` and `final` pair.
        let paired = &s.paired[0];
        assert_eq!(paired.seeds, vec![0, 2]);
        let stages: BTreeSet<&str> = paired.rows.iter().map(|r| r.stage.as_str()).collect();
        assert_eq!(stages, ["final", "sft"].into());
        let last = paired.rows.iter().find(|r| r.stage == FINAL && r.slice == "all").unwrap();
        assert_eq!(last.per_seed, [(0, 10.0 - 30.0), (2, 20.0 - 40.0)].into());
        assert!((last.estimate.mean + 20.0).abs() < 1e-9);
        assert_eq!(s.missing, vec!["single seed 1".to_string()]);
        let md = s.to_markdown();
        assert!(md.contains("## Variant `single`: 2 of 3 seeds finished"), "{md}");
        assert!(md.contains("| long | bucket=512 | 30.0 | [5.2, 54.8] | s0: 30.0, s1: 20.0, s2: 40.0 |"), "{md}");
        assert!(md.contains("## `single` minus `phased`, paired on seeds 0, 2 (points)"), "{md}");
    }
}
