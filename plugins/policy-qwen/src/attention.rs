//! Attention over several key parts merged by log-sum-exp, with fused kernels forward and backward
//! (the C++ half is `csrc/attention.cpp`, which says how and why).
//!
//! Used wherever a query sees keys that live apart: a response sees its group's shared prompt keys
//! and its own; a decode step sees the shared prompt cache and the row's own cache; a prefill
//! chunk sees the cached prefix and itself. No mask is ever built.

use std::ffi::{CStr, c_char, c_int, c_void};

use longrl_core::{Error, Result};
use tch::Tensor;

unsafe extern "C" {
    fn longrl_attention_kernel(q: *mut c_void) -> c_int;
    fn longrl_attention(
        q: *mut c_void,
        n_parts: c_int,
        ks: *const *mut c_void,
        vs: *const *mut c_void,
        causal: i64,
        scale: f64,
        kernel: c_int,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Keys and values `[Bk, kv_heads, S, D]` that the queries see: all of them, or (`causal`) the
/// queries' own tokens up to each query. `Bk` is the queries' batch, or 1 when every query row
/// sees the same keys (a group's shared prompt).
pub struct KeyPart<'a> {
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub causal: bool,
}

impl<'a> KeyPart<'a> {
    pub fn all(k: &'a Tensor, v: &'a Tensor) -> KeyPart<'a> {
        KeyPart { k, v, causal: false }
    }
    pub fn causal(k: &'a Tensor, v: &'a Tensor) -> KeyPart<'a> {
        KeyPart { k, v, causal: true }
    }
}

/// The kernel behind [`attend`] for queries like these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// ATen's CPU flash attention (any float dtype).
    CpuFlash = 0,
    /// FlashAttention-2 on CUDA (half / bfloat16, head dim a multiple of 8 up to 256).
    CudaFlash,
    /// Plain matmul-softmax-matmul (other devices and dtypes).
    Math,
}

pub fn kernel_for(q: &Tensor) -> Kernel {
    // SAFETY: reads the device, dtype and size of a live tensor; cannot throw.
    match unsafe { longrl_attention_kernel(q.as_ptr() as *mut c_void) } {
        0 => Kernel::CpuFlash,
        1 => Kernel::CudaFlash,
        _ => Kernel::Math,
    }
}

/// Attention of `q` `[B, heads, L, D]` over the union of `parts`, scaled by `scale`: `[B, heads,
/// L, D]`. Differentiable in `q` and every part (gradients of a shared part sum over its rows).
pub fn attend(q: &Tensor, parts: &[KeyPart<'_>], scale: f64) -> Result<Tensor> {
    attend_with(q, parts, scale, None)
}

/// [`attend`] with a chosen kernel (`None`: [`kernel_for`]); tests compare them.
pub fn attend_with(q: &Tensor, parts: &[KeyPart<'_>], scale: f64, kernel: Option<Kernel>) -> Result<Tensor> {
    if parts.is_empty() || parts.len() > 62 {
        return Err(Error::msg(format!("attention: {} key parts (1 to 62)", parts.len())));
    }
    let ptr = |t: &Tensor| t.as_ptr() as *mut c_void;
    let ks: Vec<*mut c_void> = parts.iter().map(|p| ptr(p.k)).collect();
    let vs: Vec<*mut c_void> = parts.iter().map(|p| ptr(p.v)).collect();
    let causal = parts.iter().enumerate().fold(0i64, |m, (i, p)| if p.causal { m | (1 << i) } else { m });
    let mut out = std::ptr::null_mut::<c_void>();
    let mut err = vec![0 as c_char; 1024];
    // SAFETY: every pointer is a live `at::Tensor*` borrowed for the call; on success the shim
    // writes an owned `at::Tensor*` (made with `new`) into `out`.
    let rc = unsafe {
        longrl_attention(
            ptr(q),
            parts.len() as c_int,
            ks.as_ptr(),
            vs.as_ptr(),
            causal,
            scale,
            kernel.map_or(-1, |k| k as c_int),
            &mut out,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 || out.is_null() {
        // SAFETY: on failure the shim wrote a NUL-terminated message into `err`.
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
        return Err(Error::msg(msg));
    }
    // SAFETY: an owned `at::Tensor*`; tch's `Drop` frees it.
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Plain attention over the concatenated parts with an explicit mask (the reference).
    fn reference(q: &Tensor, parts: &[(Tensor, Tensor, bool)], scale: f64) -> Tensor {
        let (b, h, l) = (q.size()[0], q.size()[1], q.size()[2]);
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        let mut masks = Vec::new();
        for (k, v, causal) in parts {
            let rep = h / k.size()[1];
            let expand = |t: &Tensor| t.repeat_interleave_self_int(rep, 1, None).expand([b, h, -1, -1], false);
            ks.push(expand(k));
            vs.push(expand(v));
            let s = k.size()[2];
            masks.push(if *causal {
                Tensor::ones([l, s], (Kind::Bool, Device::Cpu)).tril(0)
            } else {
                Tensor::ones([l, s], (Kind::Bool, Device::Cpu))
            });
        }
        let mask = Tensor::cat(&masks, 1);
        Tensor::scaled_dot_product_attention(
            q,
            &Tensor::cat(&ks, 2),
            &Tensor::cat(&vs, 2),
            Some(&mask),
            0.0,
            false,
            scale,
            false,
        )
    }

    #[test]
    fn merged_parts_match_one_masked_attention_with_gradients() {
        for kernel in [None, Some(Kernel::Math)] {
            merged_parts_match(kernel);
        }
    }

    fn merged_parts_match(kernel: Option<Kernel>) {
        tch::manual_seed(3);
        let opts = (Kind::Double, Device::Cpu);
        let (b, h, hkv, l, p, d) = (3, 4, 2, 5, 7, 8);
        let q = Tensor::randn([b, h, l, d], opts).set_requires_grad(true);
        // A prompt shared by the three rows, and each row's own causal keys.
        let kp = Tensor::randn([1, hkv, p, d], opts).set_requires_grad(true);
        let vp = Tensor::randn([1, hkv, p, d], opts).set_requires_grad(true);
        let ks = Tensor::randn([b, hkv, l, d], opts).set_requires_grad(true);
        let vs = Tensor::randn([b, hkv, l, d], opts).set_requires_grad(true);
        let scale = 0.3;
        let got = attend_with(&q, &[KeyPart::all(&kp, &vp), KeyPart::causal(&ks, &vs)], scale, kernel).unwrap();
        let want = reference(
            &q,
            &[(kp.shallow_clone(), vp.shallow_clone(), false), (ks.shallow_clone(), vs.shallow_clone(), true)],
            scale,
        );
        let diff = (&got - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-10, "forward differs by {diff}");
        let weights = Tensor::randn([b, h, l, d], opts);
        let grads = |out: &Tensor| {
            Tensor::run_backward(&[(out * &weights).sum(Kind::Double)], &[&q, &kp, &vp, &ks, &vs], false, false)
        };
        for (x, y) in grads(&got).iter().zip(grads(&want)) {
            let diff = (x - &y).abs().max().double_value(&[]);
            assert!(diff < 1e-10, "gradients differ by {diff}");
        }
        // One causal part is plain causal attention; bfloat16 runs through the same kernel.
        let one = attend_with(&q, &[KeyPart::causal(&ks, &vs)], scale, kernel).unwrap();
        let want = reference(&q, &[(ks.shallow_clone(), vs.shallow_clone(), true)], scale);
        assert!((&one - &want).abs().max().double_value(&[]) < 1e-10);
        let bf = |t: &Tensor| t.detach().to_kind(Kind::BFloat16);
        let (bkp, bvp, bks, bvs) = (bf(&kp), bf(&vp), bf(&ks), bf(&vs));
        let parts = [KeyPart::all(&bkp, &bvp), KeyPart::causal(&bks, &bvs)];
        let low = attend_with(&bf(&q), &parts, scale, kernel).unwrap();
        assert_eq!(low.kind(), Kind::BFloat16);
        let diff = (low.to_kind(Kind::Double) - got.detach()).abs().max().double_value(&[]);
        assert!(diff < 0.05, "bfloat16 differs by {diff}");
        assert_eq!(kernel_for(&q), Kernel::CpuFlash);
    }

    #[test]
    fn bad_parts_are_errors() {
        let opts = (Kind::Float, Device::Cpu);
        let q = Tensor::zeros([2, 4, 3, 8], opts);
        let k = Tensor::zeros([2, 2, 5, 8], opts);
        let err = attend(&q, &[KeyPart::causal(&k, &k)], 1.0).unwrap_err().to_string();
        assert!(err.contains("causal"), "{err}");
        let k3 = Tensor::zeros([3, 2, 5, 8], opts);
        assert!(attend(&q, &[KeyPart::all(&k3, &k3)], 1.0).is_err());
        assert!(attend(&q, &[], 1.0).is_err());
        assert!(attend_with(&q, &[KeyPart::all(&k, &k)], 1.0, Some(Kernel::CudaFlash)).is_err());
    }
}
