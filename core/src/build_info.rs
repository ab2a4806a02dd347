//! What a library was built with: checked by the host when it loads a plugin.

use serde::{Deserialize, Serialize};

/// Bumped whenever a trait or FFI type of [`crate::abi`] changes shape or meaning.
///
/// v2: plugins declare themselves in a `.longrl_plugin` section read before the library is opened;
/// a plugin may be built without tensor support; the root module's fields were reordered; the
/// curriculum's advance crosses the ABI as JSON.
pub const ABI_VERSION: u32 = 2;
/// The tch version the core is pinned to (`tidy` tests keep it equal to Cargo.lock's).
pub const TCH_VERSION: &str = "0.26.0";
/// The libtorch version found by `build.rs` when this crate was compiled.
#[cfg(feature = "tensor")]
pub const LIBTORCH_VERSION: &str = env!("LONGRL_LIBTORCH_VERSION");
/// The longrl-core crate version.
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub abi_version: u32,
    pub core_version: String,
    /// The tensor stack the library links; `None` when longrl-core was built without its `tensor`
    /// feature (such a library never handles a tensor, so any libtorch suits it).
    pub tensor: Option<TensorBuild>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorBuild {
    pub tch_version: String,
    pub libtorch_version: String,
}

impl BuildInfo {
    /// The build info of the calling binary or library.
    pub fn current() -> Self {
        BuildInfo {
            abi_version: ABI_VERSION,
            core_version: CORE_VERSION.to_string(),
            #[cfg(feature = "tensor")]
            tensor: Some(TensorBuild {
                tch_version: TCH_VERSION.to_string(),
                libtorch_version: LIBTORCH_VERSION.to_string(),
            }),
            #[cfg(not(feature = "tensor"))]
            tensor: None,
        }
    }

    /// Why a library built with `other` cannot be used by a host built with `self`, if it cannot.
    pub fn incompatibility(&self, other: &BuildInfo) -> Option<String> {
        if self.abi_version != other.abi_version {
            return Some(format!(
                "built against longrl plugin ABI v{} (longrl-core {}), but this host speaks ABI v{} (longrl-core {}); rebuild the plugin against longrl-core {}",
                other.abi_version, other.core_version, self.abi_version, self.core_version, self.core_version
            ));
        }
        // Tensors cross only between libraries that both link tch: a plugin without tensor support
        // suits any host.
        let (Some(host), Some(plugin)) = (&self.tensor, &other.tensor) else { return None };
        if host.tch_version != plugin.tch_version {
            return Some(format!(
                "built with tch {}, but this host uses tch {}; rebuild the plugin",
                plugin.tch_version, host.tch_version
            ));
        }
        if base_version(&host.libtorch_version) != base_version(&plugin.libtorch_version) {
            return Some(format!(
                "built against libtorch {}, but this host runs libtorch {}; tensors cannot cross between them",
                plugin.libtorch_version, host.libtorch_version
            ));
        }
        None
    }

    /// `longrl ABI v2 (longrl-core 0.1.0), tch 0.26.0, libtorch 2.13.0`, or `..., no tensor support`.
    pub fn describe(&self) -> String {
        let tensor = match &self.tensor {
            Some(t) => format!("tch {}, libtorch {}", t.tch_version, t.libtorch_version),
            None => "no tensor support (needs no libtorch)".to_string(),
        };
        format!("longrl ABI v{} (longrl-core {}), {tensor}", self.abi_version, self.core_version)
    }
}

/// `2.13.0+cu130` and `2.13.0+cpu` share one C++ ABI: compare the release only.
fn base_version(v: &str) -> &str {
    v.split('+').next().unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor_build(libtorch: &str) -> BuildInfo {
        BuildInfo {
            abi_version: ABI_VERSION,
            core_version: CORE_VERSION.into(),
            tensor: Some(TensorBuild { tch_version: TCH_VERSION.into(), libtorch_version: libtorch.into() }),
        }
    }

    #[test]
    fn same_build_is_compatible_and_local_suffix_is_ignored() {
        let host = tensor_build("2.13.0+cu130");
        assert_eq!(host.incompatibility(&host), None);
        assert_eq!(host.incompatibility(&tensor_build("2.13.0+cpu")), None);
        let current = BuildInfo::current();
        assert_eq!(current.incompatibility(&current), None);
    }

    #[test]
    fn abi_and_libtorch_mismatches_are_explained() {
        let host = tensor_build("2.13.0");
        let mut old = host.clone();
        old.abi_version = 0;
        assert!(host.incompatibility(&old).unwrap().contains("ABI v0"));
        assert!(host.incompatibility(&tensor_build("1.0.0")).unwrap().contains("libtorch 1.0.0"));
        let mut tch = host.clone();
        tch.tensor.as_mut().unwrap().tch_version = "0.1.0".into();
        assert!(host.incompatibility(&tch).unwrap().contains("tch 0.1.0"));
    }

    #[test]
    fn a_plugin_without_tensor_support_suits_any_libtorch_but_not_another_abi() {
        let host = tensor_build("2.13.0");
        let mut plain = BuildInfo { tensor: None, ..host.clone() };
        assert_eq!(host.incompatibility(&plain), None);
        assert!(plain.describe().contains("no tensor support"));
        plain.abi_version = ABI_VERSION + 1;
        assert!(host.incompatibility(&plain).unwrap().contains(&format!("ABI v{}", ABI_VERSION + 1)));
    }
}
