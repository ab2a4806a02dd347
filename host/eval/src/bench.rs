//! The seven benchmarks and readers for their published row formats.
//!
//! Each row becomes an [`EvalRow`]: the document and question the recipe's template is filled
//! with, the gold answer the reference scores against, and the row's id.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A benchmark of Table 4, in the paper's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bench {
    DocMath,
    Frames,
    TwoWikiMqa,
    HotpotQa,
    Musique,
    NarrativeQa,
    Qasper,
}

/// How a benchmark's rows are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    /// `question`, `paragraphs` (list of strings), `ground_truth`.
    DocMath,
    /// `Prompt`, `Answer`, `wiki_items` (list of `{title, text}`).
    Frames,
    /// `input`, `context`, `answers` (list; the reference scores against the first), `_id`, ...
    LongBench,
}

impl Bench {
    pub const ALL: [Bench; 7] = [
        Bench::DocMath,
        Bench::Frames,
        Bench::TwoWikiMqa,
        Bench::HotpotQa,
        Bench::Musique,
        Bench::NarrativeQa,
        Bench::Qasper,
    ];

    /// The name used on the command line, in file names and as the reward's data source.
    pub fn name(self) -> &'static str {
        match self {
            Bench::DocMath => "docmath",
            Bench::Frames => "frames",
            Bench::TwoWikiMqa => "2wikimqa",
            Bench::HotpotQa => "hotpotqa",
            Bench::Musique => "musique",
            Bench::NarrativeQa => "narrativeqa",
            Bench::Qasper => "qasper",
        }
    }

    /// The column heading of the paper's Table 4.
    pub fn title(self) -> &'static str {
        match self {
            Bench::DocMath => "DocMath",
            Bench::Frames => "Frames",
            Bench::TwoWikiMqa => "2Wiki",
            Bench::HotpotQa => "HQA",
            Bench::Musique => "Musi",
            Bench::NarrativeQa => "NarQA",
            Bench::Qasper => "Qasp",
        }
    }

    pub fn format(self) -> RowFormat {
        match self {
            Bench::DocMath => RowFormat::DocMath,
            Bench::Frames => RowFormat::Frames,
            _ => RowFormat::LongBench,
        }
    }

    pub fn parse(name: &str) -> Option<Bench> {
        Bench::ALL.into_iter().find(|b| b.name() == name.trim().to_ascii_lowercase())
    }

    /// `docmath,hotpotqa` → the benchmarks in the paper's order, each once.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> anyhow::Result<Vec<Bench>> {
        let mut benches = Vec::new();
        for name in names.iter().flat_map(|n| n.as_ref().split(',')).map(str::trim).filter(|n| !n.is_empty()) {
            match Bench::parse(name) {
                Some(bench) => benches.push(bench),
                None => anyhow::bail!("unknown benchmark `{name}` (known: {})", known_names()),
            }
        }
        if benches.is_empty() {
            anyhow::bail!("no benchmark named (known: {})", known_names());
        }
        benches.sort();
        benches.dedup();
        Ok(benches)
    }
}

pub fn known_names() -> String {
    Bench::ALL.map(Bench::name).join(", ")
}

/// One question of a benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    /// The row's own id (`_id`, `id` or `question_id`), else its 0-based line number.
    pub id: String,
    /// 1-based line (JSON lines) or element (JSON array) in its file.
    pub line: usize,
    pub question: String,
    pub document: String,
    /// What the answer is scored against.
    pub gold: String,
}

/// A benchmark's rows as read from its file.
#[derive(Debug, Clone)]
pub struct Suite {
    pub bench: Bench,
    pub file: PathBuf,
    /// Every row of the file, in order.
    pub rows: Vec<EvalRow>,
    /// Rows evaluated: the first `evaluated` of `rows` (`--limit`).
    pub evaluated: usize,
}

impl Suite {
    pub fn load(bench: Bench, file: &Path, limit: usize) -> anyhow::Result<Suite> {
        let rows = read_bench_rows(bench, file)?;
        let evaluated = if limit == 0 { rows.len() } else { limit.min(rows.len()) };
        Ok(Suite { bench, file: file.to_path_buf(), rows, evaluated })
    }

    pub fn evaluated_rows(&self) -> &[EvalRow] {
        &self.rows[..self.evaluated]
    }
}

/// The data file of each benchmark: `files[bench]` if given, else `data` itself when it is a file
/// (one benchmark only), else `data/<bench>.jsonl` or `data/<bench>.json`.
pub fn resolve_files(
    benches: &[Bench],
    data: &Path,
    files: &BTreeMap<String, PathBuf>,
) -> anyhow::Result<Vec<(Bench, PathBuf)>> {
    for name in files.keys() {
        if Bench::parse(name).is_none() {
            anyhow::bail!("eval data file given for unknown benchmark `{name}` (known: {})", known_names());
        }
    }
    let mut out = Vec::new();
    for &bench in benches {
        if let Some((_, file)) = files.iter().find(|(name, _)| Bench::parse(name) == Some(bench)) {
            out.push((bench, file.clone()));
            continue;
        }
        if data.is_file() {
            if benches.len() != 1 {
                anyhow::bail!(
                    "--data {} is a file, but {} benchmarks are named; give a directory of <bench>.jsonl files",
                    data.display(),
                    benches.len()
                );
            }
            out.push((bench, data.to_path_buf()));
            continue;
        }
        if !data.is_dir() {
            anyhow::bail!("--data {}: no such file or directory", data.display());
        }
        let candidates = [data.join(format!("{}.jsonl", bench.name())), data.join(format!("{}.json", bench.name()))];
        match candidates.iter().find(|p| p.is_file()) {
            Some(file) => out.push((bench, file.clone())),
            None => anyhow::bail!(
                "benchmark `{}`: neither {} nor {} exists",
                bench.name(),
                candidates[0].display(),
                candidates[1].display()
            ),
        }
    }
    Ok(out)
}

/// Rows of a `.jsonl` file (one object per non-blank line) or a `.json` file (a JSON array, or
/// JSON lines), each with its 1-based line (or array element) number.
pub fn read_objects(file: &Path) -> anyhow::Result<Vec<(usize, Map<String, Value>)>> {
    longrl_data::read_json_objects(file, "line")
}

/// Every row of a benchmark file; a bad row is an error naming the file, line and key. Ids must
/// be unique, since predictions are matched by id.
pub fn read_bench_rows(bench: Bench, file: &Path) -> anyhow::Result<Vec<EvalRow>> {
    let mut rows = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, object) in read_objects(file)? {
        let row = parse_row(bench.format(), line, &object)
            .map_err(|e| anyhow::anyhow!("{}: line {line}: {e}", file.display()))?;
        if let Some(first) = seen.insert(row.id.clone(), line) {
            anyhow::bail!("{}: line {line}: duplicate id `{}` (first on line {first})", file.display(), row.id);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// One row in `format`; errors name the key.
pub fn parse_row(format: RowFormat, line: usize, object: &Map<String, Value>) -> Result<EvalRow, String> {
    let id = row_id(object, line)?;
    let (question, document, gold) = match format {
        RowFormat::LongBench => {
            let answers = match object.get("answers") {
                Some(Value::Array(items)) if !items.is_empty() => items,
                Some(Value::Array(_)) => return Err("key `answers`: empty list".into()),
                Some(_) => return Err("key `answers`: expected a list of strings".into()),
                None => return Err("missing key `answers`".into()),
            };
            let gold = scalar_text(&answers[0]).ok_or("key `answers`: expected a list of strings")?;
            (string(object, "input")?, string(object, "context")?, gold)
        }
        RowFormat::DocMath => {
            let paragraphs = string_list(object, "paragraphs")?;
            let gold = match object.get("ground_truth") {
                Some(value) => scalar_text(value).ok_or("key `ground_truth`: expected a number, string or boolean")?,
                None => return Err("missing key `ground_truth`".into()),
            };
            (string(object, "question")?, paragraphs.join("\n"), gold)
        }
        RowFormat::Frames => {
            let items = match object.get("wiki_items") {
                Some(Value::Array(items)) => items,
                Some(_) => return Err("key `wiki_items`: expected a list of {title, text} objects".into()),
                None => return Err("missing key `wiki_items`".into()),
            };
            let mut pages = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let (Some(title), Some(text)) =
                    (item.get("title").and_then(Value::as_str), item.get("text").and_then(Value::as_str))
                else {
                    return Err(format!("key `wiki_items[{i}]`: expected an object with string `title` and `text`"));
                };
                pages.push(format!("{title}\n{text}"));
            }
            (string(object, "Prompt")?, pages.join("\n"), string(object, "Answer")?)
        }
    };
    // The reference strips both before filling the template.
    Ok(EvalRow { id, line, question: question.trim().to_string(), document: document.trim().to_string(), gold })
}

/// The row's own id, else its 0-based line number.
fn row_id(object: &Map<String, Value>, line: usize) -> Result<String, String> {
    for key in ["_id", "id", "question_id"] {
        match object.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => return Ok(s.clone()),
            Some(Value::Number(n)) => return Ok(n.to_string()),
            Some(_) => return Err(format!("key `{key}`: expected a string or an integer id")),
        }
    }
    Ok((line - 1).to_string())
}

fn string(object: &Map<String, Value>, key: &str) -> Result<String, String> {
    match object.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("key `{key}`: expected a string")),
        None => Err(format!("missing key `{key}`")),
    }
}

fn string_list(object: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match object.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("key `{key}`: expected a list of strings")))
            .collect(),
        Some(_) => Err(format!("key `{key}`: expected a list of strings")),
        None => Err(format!("missing key `{key}`")),
    }
}

/// A gold answer as text, the way Python's `str()` writes it (the reference formats numbers so).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn longbench_row_scores_against_the_first_answer() {
        let row = parse_row(
            RowFormat::LongBench,
            3,
            &object(json!({"input": " Who? ", "context": "\nDoc\n", "answers": ["A", "B"], "_id": "x1", "length": 9})),
        )
        .unwrap();
        assert_eq!(
            row,
            EvalRow { id: "x1".into(), line: 3, question: "Who?".into(), document: "Doc".into(), gold: "A".into() }
        );
    }

    #[test]
    fn docmath_joins_paragraphs_and_formats_numbers() {
        let row = parse_row(
            RowFormat::DocMath,
            5,
            &object(json!({"question": "How much?", "paragraphs": ["p1", "p2"], "ground_truth": 12.5})),
        )
        .unwrap();
        assert_eq!((row.id.as_str(), row.document.as_str(), row.gold.as_str()), ("4", "p1\np2", "12.5"));
        let row = parse_row(
            RowFormat::DocMath,
            1,
            &object(json!({"question": "q", "paragraphs": [], "ground_truth": 7, "question_id": "test-7"})),
        )
        .unwrap();
        assert_eq!((row.id.as_str(), row.gold.as_str()), ("test-7", "7"));
    }

    #[test]
    fn frames_joins_titles_and_texts() {
        let row = parse_row(
            RowFormat::Frames,
            1,
            &object(json!({"Prompt": "Q?", "Answer": "Ans", "wiki_items": [{"title": "T1", "text": "x"}, {"title": "T2", "text": "y"}]})),
        )
        .unwrap();
        assert_eq!((row.document.as_str(), row.question.as_str(), row.gold.as_str()), ("T1\nx\nT2\ny", "Q?", "Ans"));
    }

    #[test]
    fn bad_rows_name_the_key() {
        let cases = [
            (RowFormat::LongBench, json!({"input": "q", "context": "c"}), "missing key `answers`"),
            (RowFormat::LongBench, json!({"input": "q", "context": "c", "answers": []}), "key `answers`: empty list"),
            (
                RowFormat::LongBench,
                json!({"input": 3, "context": "c", "answers": ["a"]}),
                "key `input`: expected a string",
            ),
            (RowFormat::DocMath, json!({"question": "q", "paragraphs": "p", "ground_truth": 1}), "key `paragraphs`"),
            (RowFormat::DocMath, json!({"question": "q", "paragraphs": []}), "missing key `ground_truth`"),
            (
                RowFormat::Frames,
                json!({"Prompt": "q", "Answer": "a", "wiki_items": [{"title": "t"}]}),
                "key `wiki_items[0]`",
            ),
            (RowFormat::Frames, json!({"Prompt": "q", "Answer": "a", "wiki_items": [], "_id": [1]}), "key `_id`"),
        ];
        for (format, value, expected) in cases {
            let error = parse_row(format, 1, &object(value.clone())).unwrap_err();
            assert!(error.contains(expected), "{value}: `{error}` lacks `{expected}`");
        }
    }

    #[test]
    fn bench_lists_parse_in_paper_order() {
        let benches = Bench::parse_list(&["qasper,docmath", "HotpotQA", "qasper"]).unwrap();
        assert_eq!(benches, vec![Bench::DocMath, Bench::HotpotQa, Bench::Qasper]);
        let error = Bench::parse_list(&["hotpot"]).unwrap_err().to_string();
        assert!(error.contains("unknown benchmark `hotpot`"), "{error}");
    }
}
