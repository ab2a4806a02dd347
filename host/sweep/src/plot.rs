//! The training curves of a sweep, one line per variant (the mean over its finished seeds at each
//! step), one PNG per metric. RL curves are drawn against the RL step (1 = the first RL step), so
//! variants with different SFT lengths line up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::plan::Plan;
use crate::results::Collected;

/// The charts drawn, as (metrics key, stage, file stem, title).
pub const CHARTS: &[(&str, &str, &str, &str)] = &[
    ("reward/mean", "rl", "reward", "mean reward (all rollouts)"),
    ("accuracy", "rl", "accuracy", "accuracy (rollouts)"),
    ("actor/entropy", "rl", "entropy", "entropy"),
    ("response/length_mean", "rl", "response_length", "mean response length (tokens)"),
    ("loss", "sft", "sft_loss", "SFT loss"),
];

/// One variant's curve: step -> mean over the seeds that logged that step.
type Curve = Vec<(f64, f64)>;

fn curve(collected: &Collected, variant: &str, key: &str, stage: &str) -> Curve {
    let mut sums: BTreeMap<u64, (f64, usize)> = BTreeMap::new();
    for run in collected.runs.iter().filter(|r| r.cell.variant == variant) {
        let first = run.metrics.iter().filter(|m| m.stage == stage).map(|m| m.step).min().unwrap_or(1);
        for m in run.metrics.iter().filter(|m| m.stage == stage) {
            if let Some(&v) = m.values.get(key) {
                let x = if stage == "rl" { m.step - first + 1 } else { m.step };
                let e = sums.entry(x).or_insert((0.0, 0));
                e.0 += v;
                e.1 += 1;
            }
        }
    }
    sums.into_iter().map(|(x, (s, n))| (x as f64, s / n as f64)).collect()
}

/// Draw every chart that has data into `out_dir`; returns the files written.
pub fn plot_curves(plan: &Plan, collected: &Collected, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for &(key, stage, stem, title) in CHARTS {
        let lines: Vec<(String, Curve)> = plan
            .variants
            .iter()
            .map(|v| (v.name.clone(), curve(collected, &v.name, key, stage)))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        if lines.is_empty() {
            continue;
        }
        std::fs::create_dir_all(out_dir)?;
        let path = out_dir.join(format!("{stem}.png"));
        let x_label = if stage == "rl" { "RL step" } else { "step" };
        draw(&path, &format!("{title}, mean over seeds"), x_label, &lines)
            .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn draw(path: &Path, title: &str, x_label: &str, lines: &[(String, Curve)]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let points = lines.iter().flat_map(|(_, c)| c.iter());
    let (x0, x1, y0, y1) = points.fold((f64::MAX, f64::MIN, f64::MAX, f64::MIN), |(a, b, c, d), p| {
        (a.min(p.0), b.max(p.0), c.min(p.1), d.max(p.1))
    });
    let pad = ((y1 - y0).abs() * 0.05).max(1e-6);
    let (x1, y0, y1) = (if x1 > x0 { x1 } else { x0 + 1.0 }, y0 - pad, y1 + pad);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart.configure_mesh().x_desc(x_label).light_line_style(WHITE.mix(0.0)).draw()?;
    for (i, (name, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
