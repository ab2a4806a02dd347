//! Safe wrappers over the multi-tensor libtorch operators of `csrc/kernels.cpp` (tch has no
//! binding for foreach operators or `_fused_adamw_`). Each call launches one operator over a list
//! of tensors and reads nothing back to the host; an empty list is no call (libtorch's foreach
//! operators reject empty lists).

use std::ffi::{CStr, c_char, c_int, c_void};

use anyhow::Context;
use tch::Tensor;

unsafe extern "C" {
    fn longrl_optim_foreach_copy(
        dst: *const *mut c_void,
        src: *const *mut c_void,
        n: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn longrl_optim_foreach_zero(t: *const *mut c_void, n: usize, err: *mut c_char, err_len: usize) -> c_int;
    fn longrl_optim_global_norm(
        t: *const *mut c_void,
        n: usize,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn longrl_optim_clip(
        t: *const *mut c_void,
        n: usize,
        total_norm: *mut c_void,
        max_norm: f64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn longrl_optim_fused_adamw(
        params: *const *mut c_void,
        grads: *const *mut c_void,
        exp_avgs: *const *mut c_void,
        exp_avg_sqs: *const *mut c_void,
        step: *mut c_void,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// The hyper-parameters of one fused AdamW launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamWHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

fn handles(tensors: &[&Tensor]) -> Vec<*mut c_void> {
    tensors.iter().map(|t| t.as_ptr() as *mut c_void).collect()
}

/// Runs one shim call with an error buffer; `what` prefixes the shim's message.
fn call(what: &str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> anyhow::Result<()> {
    let mut err = vec![0 as c_char; 2048];
    if f(err.as_mut_ptr(), err.len()) != 0 {
        // SAFETY: on failure the shim wrote a NUL-terminated message into `err`.
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
        anyhow::bail!("{what}: {msg}");
    }
    Ok(())
}

fn same_len(what: &str, lens: &[usize]) -> anyhow::Result<()> {
    if lens.windows(2).any(|w| w[0] != w[1]) {
        anyhow::bail!("{what}: tensor lists of different lengths {lens:?}");
    }
    Ok(())
}

/// `dst[i].copy_(src[i])` (with dtype conversion) for every `i`.
pub(crate) fn foreach_copy(dst: &[&Tensor], src: &[&Tensor]) -> anyhow::Result<()> {
    same_len("foreach copy", &[dst.len(), src.len()])?;
    if dst.is_empty() {
        return Ok(());
    }
    let (d, s) = (handles(dst), handles(src));
    // SAFETY: the handles point at live tensors for the duration of the call.
    call("foreach copy", |err, len| unsafe { longrl_optim_foreach_copy(d.as_ptr(), s.as_ptr(), d.len(), err, len) })
}

/// `t.zero_()` for every tensor.
pub(crate) fn foreach_zero(tensors: &[&Tensor]) -> anyhow::Result<()> {
    if tensors.is_empty() {
        return Ok(());
    }
    let t = handles(tensors);
    // SAFETY: the handles point at live tensors for the duration of the call.
    call("foreach zero", |err, len| unsafe { longrl_optim_foreach_zero(t.as_ptr(), t.len(), err, len) })
}

/// The L2 norm of all tensors together, accumulated in float32: a 0-dim float32 tensor on their
/// device (not read back).
pub(crate) fn global_norm(tensors: &[&Tensor]) -> anyhow::Result<Tensor> {
    let t = handles(tensors);
    let mut out = std::ptr::null_mut::<c_void>();
    // SAFETY: the handles point at live tensors for the duration of the call; `out` receives an
    // owned `at::Tensor*` made with `new`.
    call("gradient norm", |err, len| unsafe { longrl_optim_global_norm(t.as_ptr(), t.len(), &mut out, err, len) })?;
    if out.is_null() {
        anyhow::bail!("gradient norm: the kernel returned no tensor");
    }
    // SAFETY: an owned `at::Tensor*`; tch's `Drop` frees it.
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}

/// Scales `tensors` by `min(1, max_norm / (total_norm + 1e-6))`, on the device.
pub(crate) fn clip(tensors: &[&Tensor], total_norm: &Tensor, max_norm: f64) -> anyhow::Result<()> {
    if tensors.is_empty() {
        return Ok(());
    }
    let t = handles(tensors);
    // SAFETY: the handles and `total_norm` point at live tensors for the duration of the call.
    call("gradient clipping", |err, len| unsafe {
        longrl_optim_clip(t.as_ptr(), t.len(), total_norm.as_ptr() as *mut c_void, max_norm, err, len)
    })
}

/// One fused AdamW update of `params` in place; `step` is the 0-dim float32 step number after
/// this update.
pub(crate) fn fused_adamw(
    params: &[&Tensor],
    grads: &[&Tensor],
    exp_avgs: &[&Tensor],
    exp_avg_sqs: &[&Tensor],
    step: &Tensor,
    h: AdamWHyper,
) -> anyhow::Result<()> {
    same_len("fused AdamW", &[params.len(), grads.len(), exp_avgs.len(), exp_avg_sqs.len()])?;
    if params.is_empty() {
        return Ok(());
    }
    let (p, g, m, v) = (handles(params), handles(grads), handles(exp_avgs), handles(exp_avg_sqs));
    // SAFETY: the handles point at live tensors for the duration of the call.
    call("fused AdamW", |err, len| unsafe {
        longrl_optim_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            step.as_ptr() as *mut c_void,
            p.len(),
            h.lr,
            h.beta1,
            h.beta2,
            h.weight_decay,
            h.eps,
            err,
            len,
        )
    })
    .context("AdamW step")
}
