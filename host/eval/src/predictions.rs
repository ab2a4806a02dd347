//! Saved responses (`--predictions FILE`): JSON lines `{"bench": NAME, "id": ROW_ID, "response": TEXT}`,
//! where ROW_ID is the row's own id or its 0-based line number. Several lines for one row are several
//! samples of it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use super::bench::{Bench, Suite, known_names, read_objects};

/// One saved response.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub bench: Bench,
    pub id: String,
    pub response: String,
    /// 1-based line in the predictions file.
    pub line: usize,
}

/// Every line of a predictions file; a malformed line is an error naming the file and line.
pub fn read_predictions(file: &Path) -> anyhow::Result<Vec<Prediction>> {
    let mut out = Vec::new();
    for (line, object) in read_objects(file)? {
        let place = || format!("{}: line {line}", file.display());
        let bench = match object.get("bench") {
            Some(Value::String(name)) => Bench::parse(name)
                .ok_or_else(|| anyhow::anyhow!("{}: unknown benchmark `{name}` (known: {})", place(), known_names()))?,
            Some(_) => anyhow::bail!("{}: key `bench`: expected a string", place()),
            None => anyhow::bail!("{}: missing key `bench`", place()),
        };
        let id = match object.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            Some(_) => anyhow::bail!("{}: key `id`: expected a string or a non-negative integer", place()),
            None => anyhow::bail!("{}: missing key `id`", place()),
        };
        let response = match object.get("response") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => anyhow::bail!("{}: key `response`: expected a string", place()),
            None => anyhow::bail!("{}: missing key `response`", place()),
        };
        out.push(Prediction { bench, id, response, line });
    }
    Ok(out)
}

/// Predictions sorted onto the rows of the suites.
#[derive(Debug, Default)]
pub struct Matched {
    /// Per benchmark, per evaluated row index: the responses given for it, in file order.
    pub responses: BTreeMap<Bench, Vec<Vec<String>>>,
    /// Predictions for rows past `--limit` (their id exists in the file): left out.
    pub beyond_limit: BTreeMap<Bench, usize>,
    /// Predictions of benchmarks that were not selected: left out.
    pub other_benches: BTreeMap<Bench, usize>,
}

/// Match predictions to rows by (bench, id). A prediction whose id matches no row of its benchmark
/// is an error listing every such line (up to 20, with the total).
pub fn match_predictions(file: &Path, predictions: Vec<Prediction>, suites: &[Suite]) -> anyhow::Result<Matched> {
    let index: HashMap<Bench, (usize, HashMap<&str, usize>)> = suites
        .iter()
        .enumerate()
        .map(|(s, suite)| (suite.bench, (s, suite.rows.iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect())))
        .collect();
    let mut matched = Matched::default();
    for suite in suites {
        matched.responses.insert(suite.bench, vec![Vec::new(); suite.evaluated]);
    }
    let mut unknown = Vec::new();
    for prediction in predictions {
        let Some((s, ids)) = index.get(&prediction.bench) else {
            *matched.other_benches.entry(prediction.bench).or_default() += 1;
            continue;
        };
        match ids.get(prediction.id.as_str()) {
            Some(&row) if row < suites[*s].evaluated => {
                matched.responses.get_mut(&prediction.bench).expect("every suite has a slot")[row]
                    .push(prediction.response);
            }
            Some(_) => *matched.beyond_limit.entry(prediction.bench).or_default() += 1,
            None => unknown.push(format!(
                "  line {}: {} has no row with id `{}` (in {})",
                prediction.line,
                prediction.bench.name(),
                prediction.id,
                suites[*s].file.display()
            )),
        }
    }
    if !unknown.is_empty() {
        let shown = unknown.iter().take(20).cloned().collect::<Vec<_>>().join("\n");
        let more = if unknown.len() > 20 { format!("\n  ... and {} more", unknown.len() - 20) } else { String::new() };
        anyhow::bail!("{}: {} prediction(s) match no benchmark row:\n{shown}{more}", file.display(), unknown.len());
    }
    Ok(matched)
}
