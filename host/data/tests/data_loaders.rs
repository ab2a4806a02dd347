//! The data loaders: verl parquet (written here with arrow-rs in the exact verl schema, as pyarrow is
//! not available), JSONL variants, SFT traces, and errors that name the file, row and key.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::OffsetBufferBuilder;
use arrow_array::{ArrayRef, Int64Array, ListArray, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use longrl_core::api::ChatMessage;
use longrl_data::parquet as verl_parquet;
use longrl_data::template::docqa_prompt;
use longrl_data::{Example, LoadOptions, load_examples, load_sft_examples};
use parquet::arrow::ArrowWriter;
use serde_json::json;

fn strings(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

/// A parquet file laid out as verl / DocQA-RL-1.6K: `prompt` a list of {content, role} structs,
/// `reward_model` {ground_truth, style}, `extra_info` {index, question}.
fn write_verl_like(path: &Path, prompts: &[Vec<(&str, &str)>], truths: &[&str], sources: &[&str]) {
    let n = prompts.len();
    let message_fields =
        Fields::from(vec![Field::new("content", DataType::Utf8, true), Field::new("role", DataType::Utf8, true)]);
    let flat: Vec<&(&str, &str)> = prompts.iter().flatten().collect();
    let messages = StructArray::new(
        message_fields.clone(),
        vec![
            strings(&flat.iter().map(|(_, c)| *c).collect::<Vec<_>>()),
            strings(&flat.iter().map(|(r, _)| *r).collect::<Vec<_>>()),
        ],
        None,
    );
    let mut offsets = OffsetBufferBuilder::<i32>::new(n);
    prompts.iter().for_each(|p| offsets.push_length(p.len()));
    let item = Arc::new(Field::new("element", DataType::Struct(message_fields), true));
    let prompt = ListArray::try_new(item, offsets.finish(), Arc::new(messages), None).unwrap();
    let reward_model = StructArray::new(
        Fields::from(vec![Field::new("ground_truth", DataType::Utf8, true), Field::new("style", DataType::Utf8, true)]),
        vec![strings(truths), strings(&vec!["rule"; n])],
        None,
    );
    let extra_info = StructArray::new(
        Fields::from(vec![Field::new("index", DataType::Int64, true), Field::new("question", DataType::Utf8, true)]),
        vec![
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
            strings(&(0..n).map(|i| if i == 0 { "What is the capital?" } else { "Q2" }).collect::<Vec<_>>()),
        ],
        None,
    );
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("data_source", strings(sources)),
        ("prompt", Arc::new(prompt)),
        ("ability", strings(&vec!["doc-qa"; n])),
        ("reward_model", Arc::new(reward_model)),
        ("extra_info", Arc::new(extra_info)),
    ];
    write_columns(path, columns);
}

fn write_columns(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        columns.iter().map(|(name, c)| Field::new(*name, c.data_type().clone(), true)).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, c)| c).collect()).unwrap();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn write_text(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn load(files: &[PathBuf]) -> anyhow::Result<Vec<Example>> {
    load_examples(files, &LoadOptions::default())
}

fn error_of<T: std::fmt::Debug>(result: anyhow::Result<T>) -> String {
    format!("{:#}", result.unwrap_err())
}

#[test]
fn reads_verl_parquet_in_the_docqa_rl_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docqa_rl.parquet");
    let user = docqa_prompt("Paris is the capital of France.", "What is the capital?");
    write_verl_like(
        &path,
        &[vec![("system", "Be brief."), ("user", &user)], vec![("user", "Plain prompt")]],
        &["Paris", "12.5"],
        &["musique_v1", "docmath_v1"],
    );
    let examples = load(std::slice::from_ref(&path)).unwrap();
    assert_eq!(examples.len(), 2);
    let first = &examples[0];
    assert_eq!(first.id, "docqa_rl:1");
    assert_eq!(first.data_source, "musique_v1");
    assert_eq!(first.prompt, vec![ChatMessage::new("system", "Be brief."), ChatMessage::new("user", user)]);
    assert_eq!(first.ground_truth, "Paris");
    assert_eq!(first.ability, "doc-qa");
    assert_eq!(first.question, "What is the capital?");
    assert_eq!(first.extra["index"], json!(0));
    assert_eq!(examples[1].ground_truth, "12.5");
    assert_eq!(examples[1].id, "docqa_rl:2");
    assert_eq!(examples[1].data_source, "docmath_v1");
}

#[test]
fn verl_writer_round_trips_through_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    let examples: Vec<Example> = (0..3)
        .map(|i| Example {
            id: format!("ex-{i}"),
            data_source: "synth_lookup".into(),
            prompt: vec![ChatMessage::new("user", docqa_prompt(&format!("doc {i}"), "Q?"))],
            question: "Q?".into(),
            ground_truth: format!("answer {i}"),
            ability: "docqa".into(),
            // `id` in extra_info is how the loader recovers the example's id.
            extra: json!({"id": format!("ex-{i}"), "bucket": 512 * (i + 1), "score": 0.5 + i as f64, "flag": i == 1, "question": "Q?"}),
        })
        .collect();
    let path = dir.path().join("out.parquet");
    verl_parquet::write_verl(&path, &examples).unwrap();
    assert_eq!(load(&[path]).unwrap(), examples);
}

#[test]
fn jsonl_context_question_answer_builds_the_docqa_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_text(
        dir.path(),
        "qa.jsonl",
        "{\"context\": \"Doc A.\", \"question\": \"Who?\", \"answer\": \"Ann\"}\n\n{\"context\": \"Doc B.\", \"question\": \"How many?\", \"answer\": 42, \"data_source\": \"docmath_x\", \"id\": \"b\", \"lang\": \"en\"}\n",
    );
    let examples = load(&[path]).unwrap();
    assert_eq!(examples[0].prompt, vec![ChatMessage::new("user", docqa_prompt("Doc A.", "Who?"))]);
    assert_eq!(examples[0].ground_truth, "Ann");
    assert_eq!(examples[0].question, "Who?");
    assert_eq!(examples[0].data_source, "docqa");
    assert_eq!(examples[0].id, "qa:1");
    // Blank lines are skipped but rows keep their line numbers.
    assert_eq!(examples[1].id, "b");
    assert_eq!(examples[1].ground_truth, "42");
    assert_eq!(examples[1].data_source, "docmath_x");
    assert_eq!(examples[1].extra["lang"], json!("en"));
}

#[test]
fn jsonl_prompt_ground_truth_as_string_or_chat_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_text(
        dir.path(),
        "p.jsonl",
        concat!(
            "{\"prompt\": \"Say hi\", \"ground_truth\": \"hi\"}\n",
            "{\"prompt\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U\"}], \"ground_truth\": [\"a\", \"b\"], \"data_source\": \"musique\"}\n",
        ),
    );
    let examples =
        load_examples(&[path], &LoadOptions { default_data_source: "mine".into(), max_examples: 0 }).unwrap();
    assert_eq!(examples[0].prompt, vec![ChatMessage::new("user", "Say hi")]);
    assert_eq!(examples[0].data_source, "mine");
    assert_eq!(examples[1].prompt, vec![ChatMessage::new("system", "S"), ChatMessage::new("user", "U")]);
    assert_eq!(examples[1].ground_truth, "[\"a\",\"b\"]");
}

#[test]
fn bad_rows_name_file_row_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = write_text(
        dir.path(),
        "missing.jsonl",
        "{\"prompt\": \"a\", \"ground_truth\": \"x\"}\n{\"prompt\": \"b\", \"ground_truth\": \"y\"}\n{\"prompt\": \"c\"}\n",
    );
    let e = error_of(load(&[missing]));
    assert!(e.contains("missing.jsonl") && e.contains("row 3") && e.contains("ground_truth"), "{e}");

    let typed = write_text(dir.path(), "typed.jsonl", "{\"prompt\": 7, \"ground_truth\": \"x\"}\n");
    let e = error_of(load(&[typed]));
    assert!(e.contains("typed.jsonl") && e.contains("row 1") && e.contains("`prompt` is a number"), "{e}");

    let message =
        write_text(dir.path(), "msg.jsonl", "{\"prompt\": [{\"role\": \"user\"}], \"ground_truth\": \"x\"}\n");
    let e = error_of(load(&[message]));
    assert!(e.contains("row 1") && e.contains("prompt[0].content"), "{e}");

    let question = write_text(dir.path(), "q.jsonl", "{\"context\": \"doc\", \"answer\": \"x\"}\n");
    let e = error_of(load(&[question]));
    assert!(e.contains("q.jsonl") && e.contains("`question`"), "{e}");

    let broken = write_text(dir.path(), "broken.jsonl", "{\"prompt\": \"a\", \"ground_truth\": \"x\"}\n{not json\n");
    let e = error_of(load(&[broken]));
    assert!(e.contains("broken.jsonl") && e.contains("row 2") && e.contains("invalid JSON"), "{e}");

    // Parquet: the second row's reward_model lacks a ground truth (a null struct field).
    let path = dir.path().join("bad.parquet");
    let reward_model = StructArray::new(
        Fields::from(vec![Field::new("style", DataType::Utf8, true)]),
        vec![strings(&["rule", "rule"])],
        None,
    );
    write_columns(&path, vec![("prompt", strings(&["a", "b"])), ("reward_model", Arc::new(reward_model))]);
    let e = error_of(load(&[path]));
    assert!(e.contains("bad.parquet") && e.contains("row 1") && e.contains("reward_model"), "{e}");
}

#[test]
fn unknown_extensions_and_duplicate_ids_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_text(dir.path(), "data.csv", "a,b\n");
    let e = error_of(load(&[csv]));
    assert!(e.contains("data.csv") && e.contains("extension"), "{e}");

    let a = write_text(dir.path(), "a.jsonl", "{\"id\": \"x\", \"prompt\": \"p\", \"ground_truth\": \"g\"}\n");
    let b = write_text(
        dir.path(),
        "b.jsonl",
        "{\"prompt\": \"p\", \"ground_truth\": \"g\"}\n{\"id\": \"x\", \"prompt\": \"p\", \"ground_truth\": \"g\"}\n",
    );
    let e = error_of(load(&[a, b]));
    assert!(
        e.contains("duplicate example id `x`") && e.contains("b.jsonl row 2") && e.contains("a.jsonl row 1"),
        "{e}"
    );
}

#[test]
fn max_examples_keeps_the_first_rows_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_text(dir.path(), "a.jsonl", "{\"prompt\": \"1\", \"ground_truth\": \"g\"}\n");
    let b = write_text(
        dir.path(),
        "b.jsonl",
        "{\"prompt\": \"2\", \"ground_truth\": \"g\"}\n{\"prompt\": \"3\", \"ground_truth\": \"g\"}\n",
    );
    let examples = load_examples(&[a, b], &LoadOptions { max_examples: 2, ..Default::default() }).unwrap();
    assert_eq!(examples.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["a:1", "b:1"]);
}

#[test]
fn sft_traces_from_jsonl_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = write_text(
        dir.path(),
        "sft.jsonl",
        concat!(
            "{\"prompt\": \"P\", \"response\": \"<think>r</think>Therefore, the answer is A.\"}\n",
            "{\"context\": \"D\", \"question\": \"Q\", \"response\": \"R\", \"id\": 9}\n",
        ),
    );
    let parquet = dir.path().join("sft.parquet");
    write_columns(&parquet, vec![("prompt", strings(&["PQ"])), ("response", strings(&["RQ"]))]);
    let traces = load_sft_examples(&[jsonl, parquet], 0).unwrap();
    assert_eq!(traces.len(), 3);
    assert_eq!(traces[0].prompt, vec![ChatMessage::new("user", "P")]);
    assert_eq!(traces[0].response, "<think>r</think>Therefore, the answer is A.");
    assert_eq!(traces[1].prompt, vec![ChatMessage::new("user", docqa_prompt("D", "Q"))]);
    assert_eq!(traces[1].id, "9");
    assert_eq!((traces[2].id.as_str(), traces[2].response.as_str()), ("sft:1", "RQ"));

    let bad = write_text(dir.path(), "bad_sft.jsonl", "{\"prompt\": \"P\", \"answer\": \"x\"}\n");
    let e = error_of(load_sft_examples(&[bad], 0));
    assert!(e.contains("bad_sft.jsonl") && e.contains("row 1") && e.contains("`response`"), "{e}");
}
