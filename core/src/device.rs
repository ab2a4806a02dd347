//! Device selection: `auto` | `cpu` | `cuda:N`, with CUDA picked whenever it works.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::{Error, Result};

/// The `device` config value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                _ => Err(Error::config("device", format!("`{other}` is not one of auto, cpu, cuda:N"))),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceChoice {
    /// Resolve to a tch device: `auto` is CUDA 0 when available, else CPU; an explicit CUDA device
    /// that does not exist is an error, not a silent fall back.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(if cuda_available() { Device::Cuda(0) } else { Device::Cpu }),
            DeviceChoice::Cuda(n) => {
                let count = if cuda_available() { tch::Cuda::device_count() as usize } else { 0 };
                if n < count {
                    Ok(Device::Cuda(n))
                } else {
                    Err(Error::config("device", format!("cuda:{n} requested but {count} CUDA device(s) are available")))
                }
            }
        }
    }
}

/// `cpu` or `cuda:N`, the form components receive in their context.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".to_string(),
    }
}

/// Parse a context device string back (components receive `cpu` / `cuda:N`).
pub fn parse_device(name: &str) -> Result<Device> {
    name.parse::<DeviceChoice>()?.resolve()
}

/// Whether CUDA can be used. The linker drops `libtorch_cuda.so` when nothing references it
/// (`--as-needed`), which leaves CUDA unregistered; loading it by hand registers its hooks.
pub fn cuda_available() -> bool {
    ensure_cuda_runtime_loaded();
    tch::Cuda::is_available()
}

fn ensure_cuda_runtime_loaded() {
    use std::sync::Once;
    static LOAD: Once = Once::new();
    LOAD.call_once(|| {
        let Some(dir) = libtorch_dir() else { return };
        let lib = dir.join("libtorch_cuda.so");
        if lib.exists() {
            // SAFETY: loading libtorch's own CUDA library runs only its static registration code.
            match unsafe { libloading::Library::new(&lib) } {
                Ok(library) => std::mem::forget(library),
                Err(e) => tracing::debug!("CUDA runtime not loaded ({}): {e}", lib.display()),
            }
        }
    });
}

/// The directory holding the libtorch this process runs on.
fn libtorch_dir() -> Option<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .and_then(|path| std::path::Path::new(path).parent().map(|p| p.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_rejects_others() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("cuda:3".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(3));
        let err = "gpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("device") && err.contains("gpu"), "{err}");
    }

    #[test]
    fn cpu_always_resolves_and_missing_cuda_device_is_an_error() {
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
        let count = if cuda_available() { tch::Cuda::device_count() as usize } else { 0 };
        let err = DeviceChoice::Cuda(count + 7).resolve().unwrap_err().to_string();
        assert!(err.contains("requested"), "{err}");
    }
}
