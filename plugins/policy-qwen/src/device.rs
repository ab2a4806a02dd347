//! Peak memory of the accelerator's caching allocator (what `torch.cuda.max_memory_allocated`
//! reports), for the CUDA tests and benchmarks (the C++ half is `csrc/device.cpp`).

use std::ffi::{CStr, c_char, c_int};

use longrl_core::{Error, Result};

unsafe extern "C" {
    fn longrl_accelerator_peak_bytes(device: c_int, out: *mut i64, err: *mut c_char, err_len: usize) -> c_int;
    fn longrl_accelerator_reset_peak(device: c_int, err: *mut c_char, err_len: usize) -> c_int;
}

fn check(rc: c_int, err: &[c_char]) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: on failure the shim wrote a NUL-terminated message into `err`.
    Err(Error::msg(unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned()))
}

/// Bytes allocated at the peak on accelerator `device` since [`reset_peak`].
pub fn peak_bytes(device: usize) -> Result<u64> {
    let mut out = 0i64;
    let mut err = vec![0 as c_char; 512];
    // SAFETY: writes one i64 and at most `err.len()` bytes.
    check(unsafe { longrl_accelerator_peak_bytes(device as c_int, &mut out, err.as_mut_ptr(), err.len()) }, &err)?;
    Ok(out.max(0) as u64)
}

/// Start counting a new peak on accelerator `device`.
pub fn reset_peak(device: usize) -> Result<()> {
    let mut err = vec![0 as c_char; 512];
    // SAFETY: writes at most `err.len()` bytes.
    check(unsafe { longrl_accelerator_reset_peak(device as c_int, err.as_mut_ptr(), err.len()) }, &err)
}
