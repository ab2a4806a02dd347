//! PNG curves of a run's `metrics.jsonl` (plotters, bitmap backend): one chart per metric, with
//! the phase boundaries (and the end of SFT) marked by vertical lines.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::{Record, read_metrics};

/// The charts drawn, as (metrics key, stage, file stem, title).
pub const CHARTS: &[(&str, &str, &str, &str)] = &[
    ("reward/mean", "rl", "reward", "mean reward (all rollouts)"),
    ("accuracy", "rl", "accuracy", "accuracy (rollouts)"),
    ("actor/entropy", "rl", "entropy", "entropy"),
    ("response/length_mean", "rl", "response_length", "mean response length (tokens)"),
    ("loss", "sft", "sft_loss", "SFT loss"),
];

/// Steps where a new phase (or RL after SFT) begins.
pub fn boundaries(records: &[Record]) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut previous: Option<(String, Option<usize>)> = None;
    for r in records {
        let key = (r.stage.clone(), r.phase);
        if let Some(prev) = &previous
            && *prev != key
        {
            out.push((r.step, r.phase_name.clone().unwrap_or_else(|| r.stage.clone())));
        }
        previous = Some(key);
    }
    out
}

/// Draw every chart that has data into `out_dir`; returns the files written.
pub fn plot_run(run_dir: &Path, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let records = read_metrics(run_dir)?;
    if records.is_empty() {
        anyhow::bail!("{} has no metrics to plot", run_dir.join(crate::METRICS_FILE).display());
    }
    std::fs::create_dir_all(out_dir)?;
    let marks = boundaries(&records);
    let mut written = Vec::new();
    for &(key, stage, stem, title) in CHARTS {
        let points: Vec<(f64, f64)> = records
            .iter()
            .filter(|r| r.stage == stage)
            .filter_map(|r| r.values.get(key).map(|v| (r.step as f64, *v)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        if points.is_empty() {
            continue;
        }
        let path = out_dir.join(format!("{stem}.png"));
        plot_series(&path, title, &[(key.to_string(), points)], &marks)?;
        written.push(path);
    }
    // Behaviour means (`behaviour/<name>/all`, logged by the trainer): one chart, a line each.
    let mut behaviours: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for r in records.iter().filter(|r| r.stage == "rl") {
        for (key, v) in &r.values {
            if let Some(name) = key.strip_prefix("behaviour/").and_then(|k| k.strip_suffix("/all"))
                && v.is_finite()
            {
                behaviours.entry(name.to_string()).or_default().push((r.step as f64, *v));
            }
        }
    }
    if !behaviours.is_empty() {
        let path = out_dir.join("behaviours.png");
        let series: Vec<(String, Vec<(f64, f64)>)> = behaviours.into_iter().collect();
        plot_series(&path, "reasoning behaviours (mean count per response)", &series, &marks)?;
        written.push(path);
    }
    Ok(written)
}

/// Draw `series` (label, points) into one PNG with phase marks; a legend when there are several.
pub fn plot_series(
    path: &Path,
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
    marks: &[(u64, String)],
) -> anyhow::Result<()> {
    draw(path, title, series, marks).map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

fn draw(
    path: &Path,
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
    marks: &[(u64, String)],
) -> Result<(), Box<dyn std::error::Error>> {
    const COLOURS: [RGBColor; 4] = [BLUE, RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(255, 127, 14)];
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let (x0, x1) = all().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = all().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let pad = ((y1 - y0).abs() * 0.05).max(1e-6);
    let (x1, y0, y1) = (if x1 > x0 { x1 } else { x0 + 1.0 }, y0 - pad, y1 + pad);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart.configure_mesh().x_desc("step").light_line_style(WHITE.mix(0.0)).draw()?;
    for (step, name) in marks {
        let x = *step as f64;
        if x < x0 || x > x1 {
            continue;
        }
        chart.draw_series(LineSeries::new([(x, y0), (x, y1)], RED.mix(0.6).stroke_width(2)))?;
        chart.draw_series([Text::new(name.clone(), (x, y1), ("sans-serif", 14).into_font().color(&RED))])?;
    }
    for (i, (label, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let line = chart.draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))?;
        if series.len() > 1 {
            line.label(label.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        }
        if points.len() <= 60 {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
    }
    if series.len() > 1 {
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricsLog;

    fn rec(step: u64, stage: &str, phase: Option<usize>, key: &str, v: f64) -> Record {
        Record {
            step,
            stage: stage.into(),
            phase,
            phase_name: phase.map(|p| format!("phase{p}")),
            values: [(key.to_string(), v)].into(),
        }
    }

    #[test]
    fn boundaries_mark_stage_and_phase_changes() {
        let records = vec![
            rec(1, "sft", None, "loss", 2.0),
            rec(2, "sft", None, "loss", 1.0),
            rec(3, "rl", Some(0), "reward/mean", 0.1),
            rec(4, "rl", Some(0), "reward/mean", 0.2),
            rec(5, "rl", Some(1), "reward/mean", 0.3),
        ];
        assert_eq!(boundaries(&records), vec![(3, "phase0".to_string()), (5, "phase1".to_string())]);
    }

    #[test]
    fn draws_pngs_for_present_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), false, None).unwrap();
        for s in 1..=6u64 {
            let phase = if s <= 3 { 0 } else { 1 };
            let mut r = rec(s, "rl", Some(phase), "reward/mean", s as f64 / 10.0);
            r.values.insert("accuracy".into(), s as f64 / 20.0);
            log.write(&r).unwrap();
        }
        let files = plot_run(dir.path(), &dir.path().join("plots")).unwrap();
        let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().to_string()).collect();
        assert_eq!(names, vec!["reward.png", "accuracy.png"]);
        let mut r = rec(7, "rl", Some(1), "behaviour/backtracking/all", 1.5);
        r.values.insert("behaviour/grounding/all".into(), 0.5);
        log.write(&r).unwrap();
        let files = plot_run(dir.path(), &dir.path().join("plots")).unwrap();
        assert!(files.iter().any(|f| f.ends_with("behaviours.png")), "{files:?}");
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            assert_eq!(&bytes[1..4], b"PNG");
        }
    }
}
