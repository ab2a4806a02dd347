//! The CPU decode backend: oneDNN linears with the weights packed once, for generation on CPU in
//! float32 (the C++ half is `csrc/onednn.cpp`). A decode step multiplies a few rows by every weight
//! matrix; the default BLAS path repacks each whole matrix at every call, which profiled as 40% of
//! a batch-8 decode step on the 2-core benchmark machine. Packing once per generation removes that.
//! The packed copies ([`PackedWeights`]) belong to the generation that made them, not to the model
//! or its caches; the model's forward takes them as an option.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ops::Index;
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

/// A decoder layer's projections, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proj {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

/// A layer's projections packed for oneDNN, indexed by [`Proj`].
pub struct PackedLayer([PackedLinear; 7]);

impl Index<Proj> for PackedLayer {
    type Output = PackedLinear;
    fn index(&self, p: Proj) -> &PackedLinear {
        &self.0[p as usize]
    }
}

/// Every layer's projections and the vocabulary projection packed for steps of about `batch`
/// rows: a second copy of the weights, alive as long as the generation that packed it.
pub struct PackedWeights {
    layers: Vec<PackedLayer>,
    head: PackedLinear,
}

impl PackedWeights {
    /// `None` where packing does not apply (not CPU float32, no oneDNN).
    pub fn new(model: &crate::model::QwenModel, batch: i64) -> Result<Option<PackedWeights>> {
        let mut layers = Vec::with_capacity(model.num_layers());
        for projections in model.projections() {
            let mut packed = Vec::with_capacity(7);
            for (weight, bias) in projections {
                let Some(p) = PackedLinear::new(weight, bias, batch)? else { return Ok(None) };
                packed.push(p);
            }
            let packed: [PackedLinear; 7] = packed.try_into().map_err(|_| Error::msg("internal: 7 projections"))?;
            layers.push(PackedLayer(packed));
        }
        let Some(head) = PackedLinear::new(model.lm_head(), None, batch)? else { return Ok(None) };
        Ok(Some(PackedWeights { layers, head }))
    }

    pub fn layer(&self, i: usize) -> &PackedLayer {
        &self.layers[i]
    }

    /// Logits `[N, V]` (float32) of hidden states `[N, H]` through the packed vocabulary projection.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.head.forward(hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_linear_matches_the_plain_one() {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(1);
        let weight = Tensor::randn([3000, 64], (Kind::Float, Device::Cpu));
        let bias = Tensor::randn([3000], (Kind::Float, Device::Cpu));
        for with_bias in [false, true] {
            let bias = with_bias.then(|| bias.shallow_clone());
            let packed = PackedLinear::new(&weight, bias.as_ref(), 8).unwrap().expect("this libtorch has oneDNN");
            for shape in [vec![1, 64], vec![8, 64], vec![13, 64], vec![8, 1, 64]] {
                let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
                let plain = x.linear(&weight, bias.as_ref());
                let fast = packed.forward(&x).unwrap();
                assert_eq!(fast.size(), plain.size());
                let diff = (&fast - &plain).abs().max().double_value(&[]);
                assert!(diff < 1e-4, "{shape:?}, bias {with_bias}: outputs differ by {diff}");
            }
            // A strided (non-contiguous) input.
            let x = Tensor::randn([64, 8], (Kind::Float, Device::Cpu)).tr();
            let diff = (packed.forward(&x).unwrap() - x.linear(&weight, bias.as_ref())).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "transposed input: {diff}");
        }
    }

    #[test]
    fn packing_does_not_apply_outside_cpu_float32() {
        let _guard = tch::no_grad_guard();
        let weight = Tensor::randn([100, 16], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        assert!(PackedLinear::new(&weight, None, 8).unwrap().is_none());
    }
}
