//! What a library was built with: checked by the host when it loads a plugin.

use serde::{Deserialize, Serialize};

/// Bumped whenever a trait or FFI type of [`crate::abi`] changes shape or meaning.
pub const ABI_VERSION: u32 = 2;
/// The tch version the core is pinned to (`tidy` tests keep it equal to Cargo.lock's).
pub const TCH_VERSION: &str = "0.26.0";
/// The libtorch version found by `build.rs` when this crate was compiled.
pub const LIBTORCH_VERSION: &str = env!("LONGRL_LIBTORCH_VERSION");
/// The longrl-core crate version.
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub abi_version: u32,
    pub core_version: String,
    pub tch_version: String,
    pub libtorch_version: String,
}

impl BuildInfo {
    /// The build info of the calling binary or library.
    pub fn current() -> Self {
        BuildInfo {
            abi_version: ABI_VERSION,
            core_version: CORE_VERSION.to_string(),
            tch_version: TCH_VERSION.to_string(),
            libtorch_version: LIBTORCH_VERSION.to_string(),
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
        if self.tch_version != other.tch_version {
            return Some(format!(
                "built with tch {}, but this host uses tch {}; rebuild the plugin",
                other.tch_version, self.tch_version
            ));
        }
        if base_version(&self.libtorch_version) != base_version(&other.libtorch_version) {
            return Some(format!(
                "built against libtorch {}, but this host runs libtorch {}; tensors cannot cross between them",
                other.libtorch_version, self.libtorch_version
            ));
        }
        None
    }
}

/// `2.13.0+cu130` and `2.13.0+cpu` share one C++ ABI: compare the release only.
fn base_version(v: &str) -> &str {
    v.split('+').next().unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_build_is_compatible_and_local_suffix_is_ignored() {
        let host = BuildInfo::current();
        assert_eq!(host.incompatibility(&host), None);
        let mut cpu = host.clone();
        cpu.libtorch_version = format!("{}+cpu", base_version(&host.libtorch_version));
        assert_eq!(host.incompatibility(&cpu), None);
    }

    #[test]
    fn abi_and_libtorch_mismatches_are_explained() {
        let host = BuildInfo::current();
        let mut old = host.clone();
        old.abi_version = 0;
        assert!(host.incompatibility(&old).unwrap().contains("ABI v0"));
        let mut torch = host.clone();
        torch.libtorch_version = "1.0.0".into();
        assert!(host.incompatibility(&torch).unwrap().contains("libtorch 1.0.0"));
    }
}

/// Nul-terminated copies for the C-layout plugin declaration.
pub mod c_strings {
    use std::ffi::CStr;

    const fn c(bytes: &'static [u8]) -> &'static CStr {
        match CStr::from_bytes_with_nul(bytes) {
            Ok(s) => s,
            Err(_) => panic!("version string contains a nul byte"),
        }
    }

    pub const CORE_VERSION: &CStr = c(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes());
    pub const TCH_VERSION: &CStr = c(b"0.26.0\0");
    pub const LIBTORCH_VERSION: &CStr = c(concat!(env!("LONGRL_LIBTORCH_VERSION"), "\0").as_bytes());
}
