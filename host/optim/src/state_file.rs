//! Optimizer state in safetensors, written and read one tensor at a time.
//!
//! `tch::Tensor::write_safetensors` (and the safetensors crate's serializer, whose `View::data`
//! cannot fail) want every tensor's bytes on the host at once: for a 14B model's master weights
//! and moments that is 168 GB. Here the header is computed from shapes alone, then each tensor is
//! copied to the host, written and dropped; reading maps the file and copies one tensor at a time
//! into its destination.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

fn dtype_of(kind: Kind) -> anyhow::Result<(Dtype, &'static str)> {
    Ok(match kind {
        Kind::Float => (Dtype::F32, "F32"),
        Kind::BFloat16 => (Dtype::BF16, "BF16"),
        Kind::Half => (Dtype::F16, "F16"),
        Kind::Double => (Dtype::F64, "F64"),
        other => anyhow::bail!("no safetensors dtype for {other:?}"),
    })
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::F16 => Some(Kind::Half),
        Dtype::F64 => Some(Kind::Double),
        _ => None,
    }
}

/// Writes `tensors` (any device) and string `metadata` to `path`, through a temporary file beside
/// it renamed at the end, so a crash never leaves a truncated state under the final name.
pub(crate) fn write(
    path: &Path,
    metadata: BTreeMap<String, String>,
    tensors: &[(String, &Tensor)],
) -> anyhow::Result<()> {
    let _guard = tch::no_grad_guard();
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(&metadata)?);
    let mut offset = 0usize;
    for (name, t) in tensors {
        let (_, dtype) = dtype_of(t.kind()).with_context(|| format!("optimizer state `{name}`"))?;
        let bytes = t.numel() * t.kind().elt_size_in_bytes();
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": dtype, "shape": t.size(), "data_offsets": [offset, offset + bytes] }),
        );
        offset += bytes;
    }
    let mut header = serde_json::to_vec(&header)?;
    // Tensor data starts 8-byte aligned, as safetensors' own writer pads it.
    header.resize(header.len().next_multiple_of(8), b' ');

    let temp = PathBuf::from(format!("{}.tmp", path.display()));
    let write_all = || -> anyhow::Result<()> {
        let mut f = BufWriter::new(File::create(&temp)?);
        f.write_all(&(header.len() as u64).to_le_bytes())?;
        f.write_all(&header)?;
        for (name, t) in tensors {
            let host = t.f_to_device(Device::Cpu)?.f_contiguous()?;
            let mut bytes = vec![0u8; host.numel() * host.kind().elt_size_in_bytes()];
            host.f_copy_data_u8(&mut bytes, host.numel()).with_context(|| format!("copying `{name}` to the host"))?;
            f.write_all(&bytes)?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(())
    };
    write_all().with_context(|| format!("writing optimizer state {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("renaming {} to {}", temp.display(), path.display()))?;
    Ok(())
}

/// A mapped state file, its header parsed once: metadata and tensors by name.
pub(crate) struct StateFile {
    path: PathBuf,
    map: memmap2::Mmap,
    data_start: usize,
    header: Metadata,
}

impl StateFile {
    pub(crate) fn open(path: &Path) -> anyhow::Result<StateFile> {
        let file = File::open(path).with_context(|| format!("opening optimizer state {}", path.display()))?;
        // SAFETY: the file is only read; a checkpoint is not modified while it is loaded.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("mapping optimizer state {}", path.display()))?;
        // Checks the header and that the tensors' byte ranges tile the rest of the file.
        let (header_len, header) = SafeTensors::read_metadata(&map)
            .map_err(|e| anyhow::anyhow!("optimizer state {} is not a valid safetensors file: {e}", path.display()))?;
        Ok(StateFile { path: path.to_owned(), map, data_start: 8 + header_len, header })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn metadata(&self) -> HashMap<String, String> {
        self.header.metadata().clone().unwrap_or_default()
    }

    /// Tensor names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.header.tensors().into_keys().collect();
        names.sort();
        names
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.header.info(name).is_some()
    }

    /// Copies tensor `name` into `dest` (same shape; any dtype and device), after checking that
    /// the file has it with `dest`'s shape and a float dtype.
    pub(crate) fn copy_into(&self, name: &str, dest: &Tensor) -> anyhow::Result<()> {
        let info = self
            .header
            .info(name)
            .with_context(|| format!("optimizer state {} has no tensor `{name}`", self.path.display()))?;
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        if shape != dest.size() {
            anyhow::bail!(
                "optimizer state {}: `{name}` has shape {shape:?}, the parameter has {:?} (a different model?)",
                self.path.display(),
                dest.size()
            );
        }
        let kind = kind_of(info.dtype).with_context(|| {
            format!("optimizer state {}: `{name}` has dtype {:?}, not a float type", self.path.display(), info.dtype)
        })?;
        let (start, end) = info.data_offsets;
        let bytes = &self.map[self.data_start + start..self.data_start + end];
        let _guard = tch::no_grad_guard();
        let host = Tensor::f_from_data_size(bytes, &shape, kind)?;
        dest.shallow_clone()
            .f_copy_(&host)
            .with_context(|| format!("loading `{name}` from {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Round trip through our writer; the file is also what the safetensors crate reads.
    #[test]
    fn streams_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.safetensors");
        let a = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]);
        let b = Tensor::from_slice(&[1.5f32, -2.0, 3.25]).to_kind(Kind::BFloat16);
        let meta = BTreeMap::from([("step".to_string(), "7".to_string())]);
        write(&path, meta, &[("a".into(), &a), ("b".into(), &b)]).unwrap();
        assert!(!dir.path().join("s.safetensors.tmp").exists());

        let read = Tensor::read_safetensors(&path).unwrap();
        assert_eq!(read.len(), 2);
        let state = StateFile::open(&path).unwrap();
        assert_eq!(state.metadata()["step"], "7");
        assert!(state.contains("b") && !state.contains("c"));
        let (a2, b2) = (a.zeros_like(), Tensor::zeros([3], (Kind::Float, Device::Cpu)));
        state.copy_into("a", &a2).unwrap();
        state.copy_into("b", &b2).unwrap();
        assert!(a2.equal(&a));
        assert_eq!(Vec::<f32>::try_from(&b2).unwrap(), vec![1.5, -2.0, 3.25]);

        let err = state.copy_into("a", &Tensor::zeros([3, 2], (Kind::Float, Device::Cpu))).unwrap_err().to_string();
        assert!(err.contains("`a` has shape [2, 3], the parameter has [3, 2]"), "{err}");
        let err = state.copy_into("c", &a2).unwrap_err().to_string();
        assert!(err.contains("has no tensor `c`"), "{err}");
    }

    #[test]
    fn a_truncated_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.safetensors");
        let a = Tensor::ones([64], (Kind::Float, Device::Cpu));
        write(&path, BTreeMap::new(), &[("a".into(), &a)]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let err = StateFile::open(&path).err().unwrap().to_string();
        assert!(err.contains("is not a valid safetensors file"), "{err}");
    }
}
