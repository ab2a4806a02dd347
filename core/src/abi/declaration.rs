//! How a library declares itself a longrl plugin, readable without loading it.
//!
//! Opening a shared library runs its initialisers, so the host must not open every `.so` it finds
//! beside its binary just to ask whether it is a plugin. `export_plugin!` therefore places a
//! fixed-layout record, made of bytes only (no pointers, so no relocations), in a dedicated object
//! file section. The host reads that section from the file (ELF, Mach-O or PE) and opens only the
//! libraries that carry one and were built for its ABI and libtorch.
//!
//! The record's layout never changes, so a host of any version can read any plugin's record and
//! explain a mismatch.

use crate::{BuildInfo, CORE_VERSION, TensorBuild};

/// The section `export_plugin!` places the record in (the name the host looks for; on Mach-O the
/// section lives in the `__DATA` segment).
pub const DECLARATION_SECTION: &str = if cfg!(target_vendor = "apple") {
    "__longrl_plugin"
} else if cfg!(windows) {
    ".lrlplug" // PE image section names are at most 8 bytes
} else {
    ".longrl_plugin"
};
/// The exported symbol holding the record. Plugins of ABI v1 exported a pointer-based record under
/// this name and had no section: the host recognises them by the symbol alone.
pub const DECLARATION_SYMBOL: &str = "LONGRL_PLUGIN_DECLARATION";
/// First bytes of the record: tells a longrl declaration from anything else.
pub const DECLARATION_MAGIC: [u8; 8] = *b"LONGRLPL";

const VERSION_BYTES: usize = 32;
const LIBTORCH_BYTES: usize = 64;
/// Bit 0 of `flags`: the library was built with longrl-core's `tensor` feature.
const FLAG_TENSOR: u32 = 1;

/// The record: byte arrays only, so it has no padding, no alignment and one meaning on every target.
#[repr(C)]
pub struct PluginDeclaration {
    magic: [u8; 8],
    /// Little-endian.
    abi_version: [u8; 4],
    /// Little-endian bit set (`FLAG_TENSOR`).
    flags: [u8; 4],
    /// Nul-padded UTF-8.
    core_version: [u8; VERSION_BYTES],
    tch_version: [u8; VERSION_BYTES],
    libtorch_version: [u8; LIBTORCH_BYTES],
}

/// Size of the record in bytes.
pub const DECLARATION_LEN: usize = std::mem::size_of::<PluginDeclaration>();

const fn padded<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    assert!(bytes.len() < N, "version string too long for the plugin declaration");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

impl PluginDeclaration {
    /// The declaration of a library built with this longrl-core (`abi_version` is [`ABI_VERSION`]
    /// except in the host's tests of old plugins).
    pub const fn new(abi_version: u32) -> Self {
        #[cfg(feature = "tensor")]
        let (flags, tch, libtorch) = (FLAG_TENSOR, crate::TCH_VERSION, crate::LIBTORCH_VERSION);
        #[cfg(not(feature = "tensor"))]
        let (flags, tch, libtorch) = (0u32, "", "");
        PluginDeclaration {
            magic: DECLARATION_MAGIC,
            abi_version: abi_version.to_le_bytes(),
            flags: flags.to_le_bytes(),
            core_version: padded(CORE_VERSION),
            tch_version: padded(tch),
            libtorch_version: padded(libtorch),
        }
    }

    /// The record as it lies in the section.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the struct is repr(C) of u8 arrays: DECLARATION_LEN initialised bytes, no padding.
        unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>(), DECLARATION_LEN) }
    }

    /// Read a record from the start of a section's bytes.
    pub fn parse(section: &[u8]) -> Result<BuildInfo, String> {
        if section.len() < DECLARATION_LEN || section[..8] != DECLARATION_MAGIC {
            return Err(format!("its `{DECLARATION_SECTION}` section does not hold a longrl plugin declaration"));
        }
        let mut at = 8;
        let mut take = |n: usize| {
            let field = &section[at..at + n];
            at += n;
            field
        };
        let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let text = |b: &[u8]| {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        };
        let abi_version = word(take(4));
        let flags = word(take(4));
        let core_version = text(take(VERSION_BYTES));
        let tch_version = text(take(VERSION_BYTES));
        let libtorch_version = text(take(LIBTORCH_BYTES));
        let tensor = (flags & FLAG_TENSOR != 0).then_some(TensorBuild { tch_version, libtorch_version });
        Ok(BuildInfo { abi_version, core_version, tensor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ABI_VERSION;

    const CURRENT: PluginDeclaration = PluginDeclaration::new(ABI_VERSION);

    #[test]
    fn the_record_reads_back_as_this_build() {
        assert_eq!(DECLARATION_LEN, 8 + 4 + 4 + 32 + 32 + 64);
        assert_eq!(PluginDeclaration::parse(CURRENT.as_bytes()).unwrap(), BuildInfo::current());
        let old = PluginDeclaration::parse(PluginDeclaration::new(0).as_bytes()).unwrap();
        assert_eq!(old.abi_version, 0);
    }

    #[test]
    fn foreign_bytes_are_refused() {
        assert!(PluginDeclaration::parse(b"LONGRLPL").is_err(), "too short");
        let mut bytes = CURRENT.as_bytes().to_vec();
        bytes[0] = b'X';
        let err = PluginDeclaration::parse(&bytes).unwrap_err();
        assert!(err.contains(DECLARATION_SECTION), "{err}");
    }
}
