//! HF safetensors checkpoints: read from a single file or shards behind `model.safetensors.index.json`
//! (memory-mapped; every tensor the model asks for checked, every tensor it did not ask for an
//! error), and written shard by shard, one tensor in host memory at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use longrl_core::{Error, Result};
use memmap2::Mmap;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

use crate::weights::{Init, WeightSource};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Shard size when saving; transformers writes shards of a few GB too.
pub const DEFAULT_SHARD_BYTES: usize = 4 << 30;

/// Weight files of a model directory, from the index when sharded. An index entry must name a file
/// inside `dir` (a relative path without `..`): a checkpoint cannot make us read elsewhere.
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
        let mut files = BTreeSet::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| {
                Error::msg(format!("{}: weight_map `{name}`: expected a file name, got {file}", index.display()))
            })?;
            let inside = !file.is_empty() && Path::new(file).components().all(|c| matches!(c, Component::Normal(_)));
            if !inside {
                return Err(Error::msg(format!(
                    "{}: weight_map `{name}` names `{file}`, which is not a file inside the model directory",
                    index.display()
                )));
            }
            files.insert(file);
        }
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

fn dtype_name(kind: Kind) -> Result<&'static str> {
    match kind {
        Kind::Float => Ok("F32"),
        Kind::BFloat16 => Ok("BF16"),
        Kind::Half => Ok("F16"),
        other => Err(Error::msg(format!("cannot save tensors of kind {other:?}"))),
    }
}

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    /// Header length: tensor data starts at `8 + header`.
    header: usize,
}

/// An open checkpoint directory, as a [`WeightSource`]: tensors are read (and converted to the
/// model's dtype and device) when the model asks for them. Problems are collected rather than
/// returned one at a time, so that [`CheckpointSource::finish`] names every mismatched, missing and
/// unexpected tensor in one error.
pub struct CheckpointSource {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// name -> (shard, its entry)
    index: BTreeMap<String, (usize, TensorInfo)>,
    kind: Kind,
    device: Device,
    tied: bool,
    taken: BTreeSet<String>,
    problems: Vec<String>,
    missing: Vec<String>,
}

/// Tensors HF checkpoints may carry that the model does not need.
fn ignorable(name: &str, tied: bool) -> bool {
    name.ends_with("rotary_emb.inv_freq") || (tied && name == "lm_head.weight")
}

impl CheckpointSource {
    /// Open `dir`'s weights; `tied`: the model ties its vocabulary projection to the embedding.
    pub fn open(dir: &Path, tied: bool, kind: Kind, device: Device) -> Result<CheckpointSource> {
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for path in weight_files(dir)? {
            let handle = std::fs::File::open(&path).map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
            // SAFETY: the file is only read; a concurrent writer could change the bytes under us, which
            // at worst yields garbage weights, not memory unsafety in Rust code (we copy out of it).
            let mmap = unsafe { Mmap::map(&handle) }.map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
            let (header, metadata): (usize, Metadata) = SafeTensors::read_metadata(&mmap)
                .map_err(|e| Error::msg(format!("{}: not a valid safetensors file: {e}", path.display())))?;
            let at = shards.len();
            for (name, info) in metadata.tensors() {
                if index.insert(name.clone(), (at, info.clone())).is_some() {
                    return Err(Error::msg(format!("{}: tensor `{name}` appears twice", path.display())));
                }
            }
            shards.push(Shard { path, mmap, header });
        }
        Ok(CheckpointSource {
            dir: dir.to_path_buf(),
            shards,
            index,
            kind,
            device,
            tied,
            taken: BTreeSet::new(),
            problems: Vec::new(),
            missing: Vec::new(),
        })
    }

    /// Whether `name` is there with `shape` and a readable dtype: `Err("")` when missing, else
    /// `Err(problem)`.
    fn entry(&self, name: &str, shape: &[i64]) -> std::result::Result<(&Shard, &TensorInfo, Kind), String> {
        let Some((at, info)) = self.index.get(name) else {
            return Err(String::new());
        };
        let shard = &self.shards[*at];
        let got: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        if got != shape {
            return Err(format!("{}: tensor `{name}` has shape {got:?}, expected {shape:?}", shard.path.display()));
        }
        let kind = kind_of(info.dtype).ok_or_else(|| {
            format!("{}: tensor `{name}` has unsupported dtype {:?}", shard.path.display(), info.dtype)
        })?;
        Ok((shard, info, kind))
    }

    /// Record the outcome of asking for `name`: whether it can be read.
    fn note(&mut self, name: &str, shape: &[i64]) -> bool {
        match self.entry(name, shape) {
            Ok(_) => {
                self.taken.insert(name.to_string());
                true
            }
            Err(problem) if problem.is_empty() => {
                self.missing.push(name.to_string());
                false
            }
            Err(problem) => {
                self.taken.insert(name.to_string());
                self.problems.push(problem);
                false
            }
        }
    }

    fn read(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        let (shard, info, src) = self.entry(name, shape).map_err(Error::msg)?;
        let (start, end) = info.data_offsets;
        let bytes = &shard.mmap[8 + shard.header + start..8 + shard.header + end];
        let convert = || -> Result<Tensor> {
            Ok(Tensor::f_from_data_size(bytes, shape, src)?.f_to(self.device)?.f_to_kind(self.kind)?)
        };
        convert().map_err(|e| Error::msg(format!("{}: tensor `{name}`: {e}", shard.path.display())))
    }

    /// Copy the checkpoint into `params` (same names and shapes) in place, after checking all of
    /// it first: a bad checkpoint changes nothing.
    pub fn copy_into(mut self, params: &[(String, Tensor)]) -> Result<()> {
        for (name, p) in params {
            self.note(name, &p.size());
        }
        self.report()?;
        let _guard = tch::no_grad_guard();
        for (name, p) in params {
            let t = self.read(name, &p.size())?;
            p.shallow_clone().f_copy_(&t)?;
        }
        Ok(())
    }

    /// Every problem met, and every tensor of the checkpoint nobody asked for, as one error.
    fn report(&self) -> Result<()> {
        let mut problems = self.problems.clone();
        for (name, (at, _)) in &self.index {
            if !self.taken.contains(name) && !ignorable(name, self.tied) {
                problems.push(format!("{}: unexpected tensor `{name}`", self.shards[*at].path.display()));
            }
        }
        problems.sort();
        if !self.missing.is_empty() {
            let shown = self.missing.iter().take(8).map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
            problems.push(format!(
                "{}: {} missing tensor(s): {shown}{}",
                self.dir.display(),
                self.missing.len(),
                if self.missing.len() > 8 { ", ..." } else { "" }
            ));
        }
        if problems.is_empty() {
            return Ok(());
        }
        let more = if problems.len() > 8 { format!("; and {} more", problems.len() - 8) } else { String::new() };
        problems.truncate(8);
        Err(Error::msg(format!("{}{more}", problems.join("; "))))
    }
}

impl WeightSource for CheckpointSource {
    fn get(&mut self, name: &str, shape: &[i64], _init: Init) -> Result<Tensor> {
        if self.note(name, shape) {
            return self.read(name, shape);
        }
        // A stand-in of the right shape that owns no memory; `finish` reports the problem.
        Ok(Tensor::f_zeros([1], (self.kind, self.device))?.f_expand(shape, false)?)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        self.report()
    }
}

/// Write `tensors` as HF safetensors into `dir`, sharded with an index past `max_shard_bytes`.
/// Each tensor is copied to host memory on its own, written and dropped, so saving needs one
/// tensor's worth of host memory, not the model's; each file is written beside its final name
/// and renamed into place.
pub fn write_weights(dir: &Path, tensors: &[(String, Tensor)], max_shard_bytes: usize) -> Result<()> {
    // Shards by size, planned from shapes alone.
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut shard_bytes = 0usize;
    let mut total = 0usize;
    for (i, (_, t)) in tensors.iter().enumerate() {
        let bytes = t.numel() * t.kind().elt_size_in_bytes();
        if shard_bytes > 0 && shard_bytes + bytes > max_shard_bytes {
            shards.push(Vec::new());
            shard_bytes = 0;
        }
        shard_bytes += bytes;
        total += bytes;
        shards.last_mut().expect("one shard").push(i);
    }
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    for (s, members) in shards.iter().enumerate() {
        let file = if n == 1 { SINGLE_FILE.to_string() } else { format!("model-{:05}-of-{n:05}.safetensors", s + 1) };
        let chosen: Vec<&(String, Tensor)> = members.iter().map(|&i| &tensors[i]).collect();
        write_shard(&dir.join(&file), &chosen)?;
        for (name, _) in chosen {
            weight_map.insert(name.clone(), json!(file));
        }
    }
    let index = dir.join(INDEX_FILE);
    if n > 1 {
        let value = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        write_atomically(&index, serde_json::to_string_pretty(&value)?.as_bytes())?;
    } else if index.exists() {
        // A stale index beside a single file would point loaders at shards that are not there.
        std::fs::remove_file(&index)?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::msg(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
}

/// One safetensors file: the header (names, dtypes, shapes, offsets; padded to 8 bytes as the
/// format asks), then each tensor's bytes in order.
fn write_shard(path: &Path, tensors: &[&(String, Tensor)]) -> Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0usize;
    for (name, t) in tensors {
        let bytes = t.numel() * t.kind().elt_size_in_bytes();
        header.insert(
            name.clone(),
            json!({"dtype": dtype_name(t.kind())?, "shape": t.size(), "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut header = serde_json::to_vec(&header)?;
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let tmp = path.with_extension("safetensors.tmp");
    let fail = |e: &dyn std::fmt::Display| Error::msg(format!("{}: {e}", tmp.display()));
    let file = std::fs::File::create(&tmp).map_err(|e| fail(&e))?;
    let mut out = std::io::BufWriter::new(file);
    out.write_all(&(header.len() as u64).to_le_bytes()).map_err(|e| fail(&e))?;
    out.write_all(&header).map_err(|e| fail(&e))?;
    let mut buffer = Vec::new();
    for (name, t) in tensors {
        let host = t.f_detach()?.f_to(Device::Cpu)?.f_contiguous()?;
        let numel = host.numel();
        buffer.resize(numel * host.kind().elt_size_in_bytes(), 0);
        host.f_copy_data_u8(&mut buffer, numel).map_err(|e| Error::msg(format!("tensor `{name}`: {e}")))?;
        out.write_all(&buffer).map_err(|e| fail(&e))?;
    }
    out.into_inner().map_err(|e| fail(&e))?.sync_all().map_err(|e| fail(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back_with_the_safetensors_crate() {
        let dir = tempfile::tempdir().unwrap();
        let a = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4]);
        let b = Tensor::arange(5, (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let tensors = vec![("a.weight".to_string(), a.shallow_clone()), ("b".to_string(), b.shallow_clone())];
        for shard_bytes in [usize::MAX, 16] {
            write_weights(dir.path(), &tensors, shard_bytes).unwrap();
            let files = weight_files(dir.path()).unwrap();
            assert_eq!(files.len(), if shard_bytes == 16 { 2 } else { 1 });
            let mut seen = BTreeMap::new();
            for f in files {
                let bytes = std::fs::read(f).unwrap();
                let st = SafeTensors::deserialize(&bytes).unwrap();
                for (name, view) in st.tensors() {
                    seen.insert(name, (view.dtype(), view.shape().to_vec(), view.data().to_vec()));
                }
            }
            let a_bytes: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
            assert_eq!(seen["a.weight"], (Dtype::F32, vec![3, 4], a_bytes));
            assert_eq!((seen["b"].0, seen["b"].1.clone()), (Dtype::BF16, vec![5]));
        }
        // Read back as a source: values, and a tensor nobody asks for is reported.
        let mut source = Box::new(CheckpointSource::open(dir.path(), false, Kind::Float, Device::Cpu).unwrap());
        let got = source.get("a.weight", &[3, 4], Init::Normal).unwrap();
        assert_eq!((got - a).abs().max().double_value(&[]), 0.0);
        let err = source.finish().unwrap_err().to_string();
        assert!(err.contains("unexpected tensor `b`"), "{err}");
    }

    #[test]
    fn index_entries_cannot_leave_the_model_directory() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors", ""] {
            let index = json!({"weight_map": {"model.embed_tokens.weight": bad}});
            std::fs::write(dir.path().join(INDEX_FILE), index.to_string()).unwrap();
            let err = weight_files(dir.path()).unwrap_err().to_string();
            assert!(err.contains("not a file inside the model directory") && err.contains(INDEX_FILE), "{bad}: {err}");
        }
        let index = json!({"weight_map": {"x": "model-00001-of-00002.safetensors"}});
        std::fs::write(dir.path().join(INDEX_FILE), index.to_string()).unwrap();
        assert_eq!(weight_files(dir.path()).unwrap(), vec![dir.path().join("model-00001-of-00002.safetensors")]);
    }
}
