//! Parquet in and out. Rows are read into JSON objects (nested structs and lists included) so one row
//! parser serves parquet and JSONL alike; examples are written in verl's schema.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, OffsetBufferBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};

use super::Example;

/// Every row of a parquet file as a JSON object keyed by column name.
pub fn read_rows(path: &Path) -> anyhow::Result<Vec<Map<String, Value>>> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .with_context(|| format!("{}: not a readable parquet file", path.display()))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("{}: cannot read a record batch", path.display()))?;
        let schema = batch.schema();
        for row in 0..batch.num_rows() {
            let mut object = Map::new();
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                let value = to_json(column.as_ref(), row).with_context(|| {
                    format!("{}: row {}: column `{}`", path.display(), rows.len() + 1, field.name())
                })?;
                object.insert(field.name().clone(), value);
            }
            rows.push(object);
        }
    }
    Ok(rows)
}

/// The value at `row` of an arrow array, as JSON.
fn to_json(array: &dyn Array, row: usize) -> anyhow::Result<Value> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    macro_rules! number {
        ($t:ty) => {
            serde_json::json!(array.as_primitive::<$t>().value(row))
        };
    }
    Ok(match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => number!(Int8Type),
        DataType::Int16 => number!(Int16Type),
        DataType::Int32 => number!(Int32Type),
        DataType::Int64 => number!(Int64Type),
        DataType::UInt8 => number!(UInt8Type),
        DataType::UInt16 => number!(UInt16Type),
        DataType::UInt32 => number!(UInt32Type),
        DataType::UInt64 => number!(UInt64Type),
        DataType::Float16 => serde_json::json!(f32::from(array.as_primitive::<Float16Type>().value(row))),
        DataType::Float32 => number!(Float32Type),
        DataType::Float64 => number!(Float64Type),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_string()),
        DataType::List(_) => list_to_json(array.as_list::<i32>().value(row).as_ref())?,
        DataType::LargeList(_) => list_to_json(array.as_list::<i64>().value(row).as_ref())?,
        DataType::FixedSizeList(..) => list_to_json(array.as_fixed_size_list().value(row).as_ref())?,
        DataType::Struct(fields) => {
            let array = array.as_struct();
            let mut object = Map::new();
            for (field, column) in fields.iter().zip(array.columns()) {
                object.insert(field.name().clone(), to_json(column.as_ref(), row)?);
            }
            Value::Object(object)
        }
        DataType::Dictionary(..) => {
            let dict = array.as_any_dictionary();
            let key = dict.normalized_keys()[row];
            to_json(dict.values().as_ref(), key)?
        }
        other => anyhow::bail!("unsupported parquet type {other}"),
    })
}

fn list_to_json(values: &dyn Array) -> anyhow::Result<Value> {
    (0..values.len()).map(|i| to_json(values, i)).collect::<anyhow::Result<Vec<_>>>().map(Value::Array)
}

/// Write examples as verl-style parquet: `data_source`, `prompt` (list of {role, content}), `ability`,
/// `reward_model` {style, ground_truth}, `extra_info` (a struct of every key found in the examples'
/// `extra` objects, typed by its first non-null value; other values are stored as JSON text).
pub fn write_verl(path: &Path, examples: &[Example]) -> anyhow::Result<()> {
    let string_column = |f: &dyn Fn(&Example) -> &str| -> ArrayRef {
        Arc::new(examples.iter().map(|e| Some(f(e))).collect::<StringArray>())
    };
    let message_fields =
        Fields::from(vec![Field::new("content", DataType::Utf8, true), Field::new("role", DataType::Utf8, true)]);
    let messages: Vec<_> = examples.iter().flat_map(|e| e.prompt.iter()).collect();
    let message_struct = StructArray::new(
        message_fields.clone(),
        vec![
            Arc::new(messages.iter().map(|m| Some(m.content.as_str())).collect::<StringArray>()),
            Arc::new(messages.iter().map(|m| Some(m.role.as_str())).collect::<StringArray>()),
        ],
        None,
    );
    let item_field = Arc::new(Field::new("item", DataType::Struct(message_fields), true));
    let mut offsets = OffsetBufferBuilder::<i32>::new(examples.len());
    for example in examples {
        offsets.push_length(example.prompt.len());
    }
    let prompt = ListArray::try_new(item_field, offsets.finish(), Arc::new(message_struct), None)?;

    let reward_fields =
        Fields::from(vec![Field::new("ground_truth", DataType::Utf8, true), Field::new("style", DataType::Utf8, true)]);
    let reward_model = StructArray::new(
        reward_fields,
        vec![string_column(&|e| e.ground_truth.as_str()), string_column(&|_| "rule")],
        None,
    );
    let (extra_fields, extra_columns) = extra_info_columns(examples)?;
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        ("data_source", string_column(&|e| e.data_source.as_str())),
        ("prompt", Arc::new(prompt)),
        ("ability", string_column(&|e| e.ability.as_str())),
        ("reward_model", Arc::new(reward_model)),
    ];
    if !extra_fields.is_empty() {
        columns.push(("extra_info", Arc::new(StructArray::new(extra_fields, extra_columns, None))));
    }
    let schema = Arc::new(Schema::new(
        columns.iter().map(|(name, c)| Field::new(*name, c.data_type().clone(), true)).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, c)| c).collect())?;
    let file = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    let mut writer = ArrowWriter::try_new(file, schema, None)?;
    writer.write(&batch)?;
    writer.close().with_context(|| format!("{}: cannot finish the parquet file", path.display()))?;
    Ok(())
}

/// The `extra_info` struct's fields and columns, keys in first-seen order.
fn extra_info_columns(examples: &[Example]) -> anyhow::Result<(Fields, Vec<ArrayRef>)> {
    let mut keys: Vec<(String, DataType)> = Vec::new();
    for example in examples {
        let Some(object) = example.extra.as_object() else { continue };
        for (key, value) in object {
            let kind = match value {
                Value::Null => continue,
                Value::Bool(_) => DataType::Boolean,
                Value::Number(n) if n.is_i64() || n.is_u64() => DataType::Int64,
                Value::Number(_) => DataType::Float64,
                _ => DataType::Utf8,
            };
            match keys.iter_mut().find(|(k, _)| k == key) {
                // A key holding both integers and floats becomes a float column.
                Some((_, t)) if *t == DataType::Int64 && kind == DataType::Float64 => *t = DataType::Float64,
                Some(_) => {}
                None => keys.push((key.clone(), kind)),
            }
        }
    }
    let value_of = |e: &Example, key: &str| e.extra.get(key).filter(|v| !v.is_null()).cloned();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (key, kind) in &keys {
        let values = examples.iter().map(|e| value_of(e, key));
        let column: ArrayRef = match kind {
            DataType::Boolean => {
                let mut b = BooleanBuilder::new();
                values.for_each(|v| b.append_option(v.and_then(|v| v.as_bool())));
                Arc::new(b.finish())
            }
            DataType::Int64 => {
                let mut b = Int64Builder::new();
                values.for_each(|v| b.append_option(v.and_then(|v| v.as_i64())));
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::new();
                values.for_each(|v| b.append_option(v.and_then(|v| v.as_f64())));
                Arc::new(b.finish())
            }
            _ => {
                let mut b = StringBuilder::new();
                values.for_each(|v| {
                    b.append_option(v.map(|v| match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    }))
                });
                Arc::new(b.finish())
            }
        };
        columns.push(column);
    }
    let fields = Fields::from(keys.into_iter().map(|(k, t)| Field::new(k, t, true)).collect::<Vec<_>>());
    Ok((fields, columns))
}
