//! What an evaluation leaves in `--out DIR`: `examples.jsonl` (one line per scored response),
//! `summary.json` and `summary.md` (a table laid out like the paper's Table 4).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::json;

use super::{BenchResult, EvalSummary};

pub const EXAMPLES_FILE: &str = "examples.jsonl";
pub const SUMMARY_JSON: &str = "summary.json";
pub const SUMMARY_MD: &str = "summary.md";

pub fn write(dir: &Path, summary: &EvalSummary, results: &[BenchResult]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(EXAMPLES_FILE);
    let file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for result in results {
        for question in &result.questions {
            for (sample, s) in question.samples.iter().enumerate() {
                let line = json!({
                    "bench": result.bench.name(),
                    "id": question.id,
                    "line": question.line,
                    "sample": sample,
                    "score": s.score,
                    "correct": s.correct(),
                    "decided_by": s.decided_by,
                    "gold": question.gold,
                    "truncated_prompt": question.truncated,
                    "finish": s.finish,
                    "response": s.response,
                    "details": s.details,
                });
                writeln!(out, "{line}").with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
    }
    out.flush().with_context(|| format!("cannot write {}", path.display()))?;
    let json_path = dir.join(SUMMARY_JSON);
    std::fs::write(&json_path, serde_json::to_string_pretty(&summary_json(summary))? + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let md_path = dir.join(SUMMARY_MD);
    std::fs::write(&md_path, render_markdown(summary))
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    Ok(())
}

/// `{"benchmarks": {NAME: {"accuracy": 0..100, "n": N, "ci95": [lo, hi]}}, "average": X}`.
pub fn summary_json(summary: &EvalSummary) -> serde_json::Value {
    let benchmarks: serde_json::Map<String, serde_json::Value> = summary
        .benchmarks
        .iter()
        .map(|b| (b.bench.to_string(), json!({ "accuracy": b.accuracy, "n": b.n, "ci95": b.ci95 })))
        .collect();
    json!({ "benchmarks": benchmarks, "average": summary.average })
}

/// The Table 4 layout: one column per benchmark in the paper's order and the average; then rows with
/// the intervals, the question counts and pass@k, and notes on anything left out.
pub fn render_markdown(summary: &EvalSummary) -> String {
    let mut md = format!("# Evaluation: {}\n\n", summary.label);
    let titles: Vec<&str> =
        summary.benchmarks.iter().map(|b| super::Bench::parse(b.bench).map_or(b.bench, super::Bench::title)).collect();
    md += &format!("| Model | {} | Avg |\n", titles.join(" | "));
    md += &format!("|---|{}---:|\n", "---:|".repeat(titles.len()));
    let cells =
        |f: &dyn Fn(&super::BenchSummary) -> String| summary.benchmarks.iter().map(f).collect::<Vec<_>>().join(" | ");
    md += &format!("| {} | {} | {:.1} |\n", summary.label, cells(&|b| format!("{:.1}", b.accuracy)), summary.average);
    md += &format!("| 95% CI | {} | |\n", cells(&|b| format!("[{:.1}, {:.1}]", b.ci95[0], b.ci95[1])));
    md += &format!(
        "| n | {} | {} |\n",
        cells(&|b| b.n.to_string()),
        summary.benchmarks.iter().map(|b| b.n).sum::<usize>()
    );
    let ks: Vec<usize> = {
        let mut ks: Vec<usize> = summary.benchmarks.iter().flat_map(|b| b.pass_at.iter().map(|(k, _)| *k)).collect();
        ks.sort_unstable();
        ks.dedup();
        ks
    };
    for k in ks.iter().filter(|&&k| k > 1) {
        let values: Vec<Option<f64>> =
            summary.benchmarks.iter().map(|b| b.pass_at.iter().find(|(kk, _)| kk == k).map(|(_, v)| *v)).collect();
        let average = if values.iter().all(Option::is_some) {
            format!("{:.1}", values.iter().flatten().sum::<f64>() / values.len() as f64)
        } else {
            String::new()
        };
        let row: Vec<String> = values.iter().map(|v| v.map_or("–".to_string(), |v| format!("{v:.1}"))).collect();
        md += &format!("| pass@{k} | {} | {average} |\n", row.join(" | "));
    }
    md += "\nAccuracy: per question, the mean score of its samples; per benchmark, the mean over questions, in \
           percent. A response scores max(rule, judge): sub-EM on the text after `the answer is` (DocMath: the \
           numeric match), and the LLM judge when one is configured. Avg is the unweighted mean of the columns. \
           95% CI: Wilson score interval over the n questions (conservative when questions have several \
           samples). pass@k: the unbiased estimator 1 - C(n-c, k)/C(n, k) per question (c correct of n \
           samples), averaged.\n";
    let mut notes = Vec::new();
    for b in &summary.benchmarks {
        if b.samples[0] != b.samples[1] {
            notes.push(format!("{}: questions have {} to {} samples", b.bench, b.samples[0], b.samples[1]));
        } else if b.samples[0] > 1 {
            notes.push(format!("{}: {} samples per question", b.bench, b.samples[0]));
        }
        if b.truncated_prompts > 0 {
            notes.push(format!(
                "{}: {} prompt(s) truncated in the middle to the input limit",
                b.bench, b.truncated_prompts
            ));
        }
        if b.length_stops > 0 {
            notes.push(format!("{}: {} response(s) stopped at the output limit", b.bench, b.length_stops));
        }
        if b.no_prediction > 0 {
            notes.push(format!("{}: {} row(s) had no prediction and are not counted in n", b.bench, b.no_prediction));
        }
        if b.beyond_limit > 0 {
            notes.push(format!("{}: {} prediction(s) for rows past --limit left out", b.bench, b.beyond_limit));
        }
    }
    for (bench, count) in &summary.other_benches {
        notes.push(format!("{bench}: {count} prediction(s) of this benchmark, which was not selected, left out"));
    }
    if !notes.is_empty() {
        md += "\nNotes:\n";
        for note in notes {
            md += &format!("- {note}\n");
        }
    }
    md
}
