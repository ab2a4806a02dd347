//! oneDNN linear with the weight packed once, for generation on CPU in float32 (the C++ half is
//! `csrc/onednn.cpp`). A decode step multiplies a few rows by every weight matrix; the default
//! BLAS path repacks each whole matrix at every call, which profiled as 40% of a batch-8 decode
//! step on the 2-core benchmark machine. Packing once per generation removes that.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

use longrl_core::{Error, Result};
use tch::{Device, Kind, Tensor};

unsafe extern "C" {
    fn longrl_onednn_available() -> c_int;
    fn longrl_onednn_pack(
        weight: *mut c_void,
        batch_size: i64,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn longrl_onednn_linear(
        x: *mut c_void,
        packed: *mut c_void,
        bias: *mut c_void,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Whether this libtorch has the oneDNN operators (builds without oneDNN do not); looked up once
/// per process, not once per packed matrix.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    // SAFETY: looks operators up in the dispatcher; catches every exception.
    *AVAILABLE.get_or_init(|| unsafe { longrl_onednn_available() != 0 })
}

/// Runs one shim call that fills `out` with an owned `at::Tensor*` or writes an error message.
fn call(what: &str, f: impl FnOnce(*mut *mut c_void, *mut c_char, usize) -> c_int) -> Result<Tensor> {
    let mut out = std::ptr::null_mut::<c_void>();
    let mut err = vec![0 as c_char; 1024];
    if f(&mut out, err.as_mut_ptr(), err.len()) != 0 || out.is_null() {
        // SAFETY: on failure the shim wrote a NUL-terminated message into `err`.
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
        return Err(Error::msg(format!("{what}: {msg}")));
    }
    // SAFETY: an owned `at::Tensor*` made with `new` by the shim; tch's `Drop` frees it.
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}

/// `y = x W^T + b` with `W` `[N, K]` packed for about `batch` rows at a time.
pub struct PackedLinear {
    packed: Tensor,
    bias: Option<Tensor>,
    out_features: i64,
}

impl PackedLinear {
    /// `None` where packing does not apply: not CPU float32, or no oneDNN in this libtorch.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>, batch: i64) -> Result<Option<PackedLinear>> {
        if weight.device() != Device::Cpu || weight.kind() != Kind::Float || !available() {
            return Ok(None);
        }
        let weight = weight.f_detach()?.f_contiguous()?;
        let packed = call("oneDNN weight packing", |out, err, len| {
            // SAFETY: `weight` is a live tensor for the call; the shim only reads it.
            unsafe { longrl_onednn_pack(weight.as_ptr() as *mut c_void, batch.max(1), out, err, len) }
        })?;
        Ok(Some(PackedLinear { packed, bias: bias.map(|b| b.f_detach()).transpose()?, out_features: weight.size()[0] }))
    }

    /// `x` `[.., K]` (float32, CPU) -> `[.., N]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut shape = x.size();
        let k = *shape.last().ok_or_else(|| Error::msg("oneDNN linear: a scalar input"))?;
        let rows = x.f_reshape([-1, k])?.f_contiguous()?;
        let bias = self.bias.as_ref().map_or(std::ptr::null_mut(), |b| b.as_ptr() as *mut c_void);
        let y = call("oneDNN linear", |out, err, len| {
            // SAFETY: `rows`, the packed weight and the bias are live tensors for the call.
            unsafe {
                longrl_onednn_linear(
                    rows.as_ptr() as *mut c_void,
                    self.packed.as_ptr() as *mut c_void,
                    bias,
                    out,
                    err,
                    len,
                )
            }
        })?;
        *shape.last_mut().expect("non-empty") = self.out_features;
        Ok(y.f_reshape(shape)?)
    }
}
