//! `RUN_DIR/report.html`: the run report as one self-contained page that opens from disk without a
//! server or a network (inline CSS and SVG, no script; its Content-Security-Policy forbids loading
//! anything else). It shows the accuracy tables with their 95% intervals, the training curves with
//! phase boundaries marked, and a browsable sample of rollouts per step with their reward breakdown
//! and highlighted behaviour cues; long documents are collapsed.

pub mod svg;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::behaviours::cues::CueAnalyser;
use crate::rollout_log::{GroupEntry, RolloutEntry};
use crate::run_dir::{self, Cell, RunData, StageEval};
use svg::{Boundary, Series, line_chart};

pub const REPORT_FILE: &str = "report.html";

/// What the page shows of the rollout log.
#[derive(Debug, Clone, Copy)]
pub struct PageOptions {
    /// Steps of logged rollouts shown (spread evenly over the run, first and last included).
    pub max_steps: usize,
    /// Characters of a prompt shown (start and end kept) inside its collapsed block.
    pub max_prompt_chars: usize,
}

impl Default for PageOptions {
    fn default() -> Self {
        PageOptions { max_steps: 40, max_prompt_chars: 20_000 }
    }
}

pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table.acc { border-collapse: collapse; margin: 8px 0 16px; }
table.acc th { background: #dbe7f5; padding: 5px 10px; text-align: left; }
table.acc td { border-top: 1px solid #e5e5e5; padding: 5px 10px; font-variant-numeric: tabular-nums; }
.ci { color: #777; font-size: 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 8px; }
.chart { border: 1px solid #eee; background: #fff; }
.chart-title { font-size: 13px; font-weight: 600; } .tick { font-size: 10px; fill: #666; } .series { font-size: 11px; }
.verdict { background: #f3f8ee; border-left: 4px solid #6a9f3a; padding: 6px 10px; }
details.step > summary { cursor: pointer; font-weight: 600; padding: 4px 0; }
.group { border: 1px solid #e2e2e2; border-radius: 4px; margin: 8px 0; padding: 6px 10px; }
.rollout { border-left: 6px solid #8e44ad; margin: 8px 0; padding: 4px 10px; background: #faf8fc; }
.rollout.correct { border-left-color: #2e8b57; } .rollout.unscored { border-left-color: #999; }
.meta { color: #555; font-size: 12px; }
pre { white-space: pre-wrap; word-break: break-word; margin: 4px 0; font-size: 12.5px; }
mark.grounding { background: #fff3b0; } mark.subgoals { background: #cdeafe; }
mark.backtracking { background: #ffd6d6; } mark.verification { background: #d7f5d0; }
.legend mark { padding: 0 4px; }
"#;

/// Render the page of a run.
pub fn render(run: &RunData, options: PageOptions) -> String {
    let mut page = String::new();
    let title = format!("longrl run report: {}", run.dir.display());
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title><style>{STYLE}</style></head><body>\
         <h1>{t}</h1>",
        t = escape(&title)
    );
    for verdict in &run.verdicts {
        let _ = write!(page, "<p class=\"verdict\">{}</p>", escape(verdict.trim_start_matches(['#', ' ', '-', '*'])));
    }
    accuracy_section(&mut page, &run.stages);
    curves_section(&mut page, run);
    rollouts_section(&mut page, run, options);
    page.push_str("</body></html>\n");
    page
}

/// Read `run_dir`, render its page and write `RUN_DIR/report.html`.
pub fn write_report(run_dir: &Path, options: PageOptions) -> anyhow::Result<PathBuf> {
    let run = run_dir::read(run_dir)?;
    let path = run_dir.join(REPORT_FILE);
    std::fs::write(&path, render(&run, options)).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn cell(c: Option<&Cell>) -> String {
    match c {
        Some(c) => format!(
            "<td title=\"n = {n}\">{a:.1}% <span class=\"ci\">[{lo:.1}, {hi:.1}]</span></td>",
            n = c.n,
            a = c.accuracy * 100.0,
            lo = c.ci95[0] * 100.0,
            hi = c.ci95[1] * 100.0
        ),
        None => "<td>-</td>".into(),
    }
}

/// Column order: numeric labels (length buckets) by value, then the rest by name.
fn column_key(label: &str) -> (u8, u64, String) {
    match label.parse::<u64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, label.to_string()),
    }
}

fn accuracy_table(
    page: &mut String,
    title: &str,
    stages: &[StageEval],
    pick: fn(&StageEval) -> &BTreeMap<String, Cell>,
) {
    let mut columns: Vec<&String> = stages.iter().flat_map(|s| pick(s).keys()).collect();
    columns.sort_by_key(|c| column_key(c));
    columns.dedup();
    let _ = write!(page, "<h3>{}</h3><table class=\"acc\"><tr><th>after</th>", escape(title));
    for c in &columns {
        let _ = write!(page, "<th>{}</th>", escape(c));
    }
    page.push_str("<th>all</th></tr>");
    for s in stages {
        let _ = write!(page, "<tr><td>{}</td>", escape(&s.stage));
        for c in &columns {
            page.push_str(&cell(pick(s).get(*c)));
        }
        page.push_str(&cell(Some(&s.overall)));
        page.push_str("</tr>");
    }
    page.push_str("</table>");
}

fn accuracy_section(page: &mut String, stages: &[StageEval]) {
    page.push_str("<h2 id=\"accuracy\">Accuracy after each stage</h2>");
    if stages.is_empty() {
        page.push_str("<p>No stage evaluation was recorded (set <code>eval.enabled = true</code> and <code>data.eval_files</code>).</p>");
        return;
    }
    page.push_str("<p class=\"meta\">Mean score over questions, with its 95% Wilson interval; hover a cell for n.</p>");
    accuracy_table(page, "By prompt length (tokens)", stages, |s| &s.by_bucket);
    if stages.iter().any(|s| !s.by_kind.is_empty()) {
        accuracy_table(page, "By question kind", stages, |s| &s.by_kind);
    }
}

/// Where each phase (and RL after SFT) begins, as the PNG plots mark it.
fn phase_boundaries(run: &RunData) -> Vec<Boundary> {
    longrl_metrics::plot::boundaries(&run.records)
        .into_iter()
        .map(|(step, label)| Boundary { step: step as f64, label })
        .collect()
}

fn series_of(run: &RunData, stage: &str, key: &str, label: &str) -> Series {
    let points = run
        .records
        .iter()
        .filter(|r| r.stage == stage)
        .filter_map(|r| Some((r.step as f64, *r.values.get(key)?)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    Series { label: label.to_string(), points }
}

fn curves_section(page: &mut String, run: &RunData) {
    page.push_str("<h2 id=\"curves\">Training curves</h2><p class=\"meta\">Dashed lines mark where RL and each of its phases begin.</p><div class=\"charts\">");
    let boundaries = phase_boundaries(run);
    let mut charts = vec![
        line_chart("SFT loss", &[series_of(run, "sft", "loss", "sft")], &[]),
        line_chart("Reward (mean over rollouts)", &[series_of(run, "rl", "reward/mean", "reward")], &boundaries),
        line_chart(
            "Accuracy (share of correct rollouts)",
            &[series_of(run, "rl", "accuracy", "accuracy")],
            &boundaries,
        ),
        line_chart("Entropy", &[series_of(run, "rl", "actor/entropy", "entropy")], &boundaries),
        line_chart("Response length (tokens)", &[series_of(run, "rl", "response/length_mean", "mean")], &boundaries),
    ];
    // Behaviour means: from the trainer's records when it logged them, else from `longrl behaviours`.
    let behaviour_series: Vec<Series> = crate::behaviours::Behaviour::ALL
        .into_iter()
        .map(|b| {
            let key = format!("behaviour/{}/all", b.as_str());
            let mut s = series_of(run, "rl", &key, b.as_str());
            if s.points.is_empty() {
                s.points = run
                    .behaviours
                    .iter()
                    .filter(|x| x.stage == "rl")
                    .filter_map(|x| Some((x.step as f64, *x.means.get(&key)?)))
                    .collect();
            }
            s
        })
        .collect();
    charts.push(line_chart("Behaviours (mean count per response)", &behaviour_series, &boundaries));
    let mut drawn = 0;
    for chart in charts.into_iter().flatten() {
        page.push_str(&chart);
        drawn += 1;
    }
    page.push_str("</div>");
    if drawn == 0 {
        page.push_str("<p>No step was recorded yet.</p>");
    }
}

/// Indices of at most `max` items of `n`, spread evenly, first and last included.
fn spread(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    if max <= 1 {
        return vec![n - 1];
    }
    let mut out: Vec<usize> = (0..max).map(|i| i * (n - 1) / (max - 1)).collect();
    out.dedup();
    out
}

fn shorten_middle(text: &str, max_chars: usize) -> (String, bool) {
    let count = text.chars().count();
    if count <= max_chars {
        return (text.to_string(), false);
    }
    let head: String = text.chars().take(max_chars / 2).collect();
    let tail: String = text.chars().skip(count - (max_chars - max_chars / 2)).collect();
    (format!("{head}\n[... {} characters omitted ...]\n{tail}", count - max_chars), true)
}

/// The response with its behaviour cues marked.
fn highlighted(response: &str, prompt: &str) -> String {
    let mut out = String::new();
    let mut at = 0;
    for cue in CueAnalyser.cues(response, prompt) {
        out.push_str(&escape(&response[at..cue.start]));
        let name = cue.behaviour.as_str();
        let _ = write!(out, "<mark class=\"{name}\" title=\"{name}\">{}</mark>", escape(&response[cue.start..cue.end]));
        at = cue.end;
    }
    out.push_str(&escape(&response[at..]));
    out
}

fn number(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

fn rollout_block(page: &mut String, r: &RolloutEntry, prompt: &str) {
    let class = match (r.reward, r.correct) {
        (None, _) => "rollout unscored",
        (_, Some(true)) => "rollout correct",
        _ => "rollout",
    };
    let reward = match r.reward {
        Some(v) => format!("{v:.3}"),
        None => "unscored".into(),
    };
    let _ = write!(
        page,
        "<div class=\"{class}\"><div class=\"meta\">reward <b>{reward}</b> · shaped {shaped} · advantage {adv} · decided by <code>{by}</code> · {tokens} tokens · finish {finish}</div><pre>{text}</pre>",
        shaped = number(r.shaped_reward),
        adv = number(r.advantage),
        by = escape(&r.decided_by),
        tokens = r.tokens,
        finish = escape(&r.finish),
        text = highlighted(&r.text, prompt)
    );
    if !r.reward_details.is_null() {
        let details = serde_json::to_string_pretty(&r.reward_details).unwrap_or_default();
        let _ = write!(
            page,
            "<details><summary class=\"meta\">reward breakdown</summary><pre>{}</pre></details>",
            escape(&details)
        );
    }
    page.push_str("</div>");
}

fn group_block(page: &mut String, run: &RunData, g: &GroupEntry, options: PageOptions) {
    let prompt = run.rollouts.prompt_of(g);
    let _ = write!(
        page,
        "<div class=\"group\"><div class=\"meta\">example <code>{id}</code> · {source}{truth}</div>",
        id = escape(&g.example),
        source = escape(&g.data_source),
        truth = prompt.map(|p| format!(" · gold <b>{}</b>", escape(&p.ground_truth))).unwrap_or_default()
    );
    if let Some(p) = prompt {
        let (text, cut) = shorten_middle(&p.text, options.max_prompt_chars);
        let _ = write!(
            page,
            "<details><summary class=\"meta\">prompt ({} characters{})</summary><pre>{}</pre></details>",
            p.text.chars().count(),
            if cut { ", middle omitted here" } else { "" },
            escape(&text)
        );
    }
    let prompt_text = prompt.map(|p| p.text.as_str()).unwrap_or("");
    for r in &g.rollouts {
        rollout_block(page, r, prompt_text);
    }
    page.push_str("</div>");
}

fn rollouts_section(page: &mut String, run: &RunData, options: PageOptions) {
    page.push_str("<h2 id=\"rollouts\">Rollouts</h2>");
    if run.rollouts.groups.is_empty() {
        page.push_str("<p>No rollouts were logged (set <code>train.log_rollouts_every</code>).</p>");
        return;
    }
    page.push_str(
        "<p class=\"legend meta\">Behaviour cues: <mark class=\"grounding\">grounding</mark> <mark class=\"subgoals\">subgoals</mark> \
         <mark class=\"backtracking\">backtracking</mark> <mark class=\"verification\">verification</mark>. Open a step to read its groups.</p>",
    );
    let mut steps: Vec<(String, u64)> = Vec::new();
    for g in &run.rollouts.groups {
        let key = (g.stage.clone(), g.step);
        if !steps.contains(&key) {
            steps.push(key);
        }
    }
    let shown = spread(steps.len(), options.max_steps);
    if shown.len() < steps.len() {
        let _ = write!(page, "<p class=\"meta\">{} of {} logged steps shown.</p>", shown.len(), steps.len());
    }
    for (n, &i) in shown.iter().enumerate() {
        let (stage, step) = &steps[i];
        let groups: Vec<&GroupEntry> =
            run.rollouts.groups.iter().filter(|g| &g.stage == stage && g.step == *step).collect();
        let rewards: Vec<f64> = groups.iter().flat_map(|g| g.rollouts.iter().filter_map(|r| r.reward)).collect();
        let mean = if rewards.is_empty() {
            "-".into()
        } else {
            format!("{:.3}", rewards.iter().sum::<f64>() / rewards.len() as f64)
        };
        let phase = groups
            .first()
            .and_then(|g| g.phase_name.clone())
            .map(|p| format!(" · phase {}", escape(&p)))
            .unwrap_or_default();
        let _ = write!(
            page,
            "<details class=\"step\"{open}><summary>{stage} step {step}{phase} · {k} groups · mean reward {mean}</summary>",
            open = if n == 0 { " open" } else { "" },
            stage = escape(stage),
            k = groups.len()
        );
        for g in groups {
            group_block(page, run, g, options);
        }
        page.push_str("</details>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn spread_keeps_first_and_last() {
        assert_eq!(spread(3, 5), vec![0, 1, 2]);
        assert_eq!(spread(10, 4), vec![0, 3, 6, 9]);
        assert_eq!(spread(10, 1), vec![9]);
    }

    #[test]
    fn cues_are_marked_and_text_escaped() {
        let html = highlighted("<think>Wait, a<b.</think>", "doc");
        assert_eq!(
            html,
            "&lt;think&gt;<mark class=\"backtracking\" title=\"backtracking\">Wait</mark>, a&lt;b.&lt;/think&gt;"
        );
    }
}
