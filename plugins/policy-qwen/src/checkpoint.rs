//! HF safetensors checkpoints: single file or sharded with `model.safetensors.index.json`,
//! memory-mapped, checked strictly against the expected parameters; and writing them back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use longrl_core::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Shard size when saving; transformers writes shards of a few GB too.
pub const DEFAULT_SHARD_BYTES: usize = 4 << 30;

/// Weight files of a model directory, from the index when sharded.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX_FILE);
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::msg(format!("{}: {e}", index.display())))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| Error::msg(format!("{}: invalid JSON: {e}", index.display())))?;
        let map = value
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::msg(format!("{}: no `weight_map` object", index.display())))?;
        let files: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join(SINGLE_FILE);
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(Error::msg(format!("{}: no {SINGLE_FILE} or {INDEX_FILE}", dir.display())))
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::F16 => Some(Kind::Half),
        _ => None,
    }
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    match kind {
        Kind::Float => Ok(Dtype::F32),
        Kind::BFloat16 => Ok(Dtype::BF16),
        Kind::Half => Ok(Dtype::F16),
        other => Err(Error::msg(format!("cannot save tensors of kind {other:?}"))),
    }
}

/// Tensors HF checkpoints may carry that the model does not need.
fn ignorable(name: &str, tied: bool) -> bool {
    name.ends_with("rotary_emb.inv_freq") || (tied && name == "lm_head.weight")
}

/// Read every tensor of `dir`, checked against `expected` (name -> shape), converted to `kind` on
/// `device`. `visit` receives each tensor as it is read (so reloading can copy in place).
pub fn read_weights(
    dir: &Path,
    expected: &[(String, Vec<i64>)],
    tied: bool,
    kind: Kind,
    device: Device,
    mut visit: impl FnMut(&str, Tensor) -> Result<()>,
) -> Result<()> {
    let wanted: BTreeMap<&str, &Vec<i64>> = expected.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut seen = BTreeSet::new();
    for file in weight_files(dir)? {
        let handle = std::fs::File::open(&file).map_err(|e| Error::msg(format!("{}: {e}", file.display())))?;
        // SAFETY: the file is only read; a concurrent writer could change the bytes under us, which
        // at worst yields garbage weights, not memory unsafety in Rust code (we copy out of it).
        let mmap =
            unsafe { memmap2::Mmap::map(&handle) }.map_err(|e| Error::msg(format!("{}: {e}", file.display())))?;
        let tensors = SafeTensors::deserialize(&mmap)
            .map_err(|e| Error::msg(format!("{}: not a valid safetensors file: {e}", file.display())))?;
        // In name order, so that the first error reported is the same on every run.
        let mut entries = tensors.tensors();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, view) in entries {
            if ignorable(&name, tied) {
                continue;
            }
            let Some(shape) = wanted.get(name.as_str()) else {
                return Err(Error::msg(format!("{}: unexpected tensor `{name}`", file.display())));
            };
            let got: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            if got != **shape {
                return Err(Error::msg(format!(
                    "{}: tensor `{name}` has shape {got:?}, expected {shape:?}",
                    file.display()
                )));
            }
            let src_kind = kind_of(view.dtype()).ok_or_else(|| {
                Error::msg(format!("{}: tensor `{name}` has unsupported dtype {:?}", file.display(), view.dtype()))
            })?;
            let tensor = Tensor::f_from_data_size(view.data(), &got, src_kind)?.f_to(device)?.f_to_kind(kind)?;
            if !seen.insert(name.clone()) {
                return Err(Error::msg(format!("{}: tensor `{name}` appears twice", file.display())));
            }
            visit(&name, tensor)?;
        }
    }
    let missing: Vec<&str> = wanted.keys().filter(|n| !seen.contains(**n)).copied().collect();
    if !missing.is_empty() {
        let shown = missing.iter().take(8).map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
        return Err(Error::msg(format!(
            "{}: {} missing tensor(s): {shown}{}",
            dir.display(),
            missing.len(),
            if missing.len() > 8 { ", ..." } else { "" }
        )));
    }
    Ok(())
}

/// Write `tensors` as HF safetensors into `dir`, sharded with an index past `max_shard_bytes`.
pub fn write_weights(dir: &Path, tensors: &[(String, Tensor)], max_shard_bytes: usize) -> Result<()> {
    // Host copies of every tensor, grouped into shards in order.
    let mut shards: Vec<Vec<(String, Dtype, Vec<usize>, Vec<u8>)>> = vec![Vec::new()];
    let mut shard_bytes = 0usize;
    let mut total = 0usize;
    for (name, t) in tensors {
        let t = t.f_detach()?.f_to(Device::Cpu)?.f_contiguous()?;
        let dtype = dtype_of(t.kind())?;
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel)?;
        if shard_bytes > 0 && shard_bytes + bytes.len() > max_shard_bytes {
            shards.push(Vec::new());
            shard_bytes = 0;
        }
        shard_bytes += bytes.len();
        total += bytes.len();
        let shape = t.size().iter().map(|&d| d as usize).collect();
        shards.last_mut().expect("one shard").push((name.clone(), dtype, shape, bytes));
    }
    let metadata = Some([("format".to_string(), "pt".to_string())].into_iter().collect());
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    for (i, shard) in shards.iter().enumerate() {
        let file = if n == 1 { SINGLE_FILE.to_string() } else { format!("model-{:05}-of-{n:05}.safetensors", i + 1) };
        let views = shard
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                    .map_err(|e| Error::msg(format!("tensor `{name}`: {e}")))?;
                Ok((name.clone(), view))
            })
            .collect::<Result<Vec<_>>>()?;
        for (name, ..) in shard {
            weight_map.insert(name.clone(), json!(file));
        }
        let path = dir.join(&file);
        safetensors::serialize_to_file(views, metadata.clone(), &path)
            .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
    }
    let index = dir.join(INDEX_FILE);
    if n > 1 {
        let value = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        std::fs::write(&index, serde_json::to_string_pretty(&value)?)?;
    } else if index.exists() {
        // A stale index beside a single file would point loaders at shards that are not there.
        std::fs::remove_file(&index)?;
    }
    Ok(())
}
