//! Recompute-in-backward autograd functions: activation checkpointing and chunked log-probs
//! whose chunk logits are not kept for the backward pass.
//!
//! tch has no custom autograd function, so the function lives in a small C++ shim
//! (`csrc/recompute.cpp`, built by `build.rs` against the same libtorch). [`recompute`] runs `f`
//! on `inputs` without recording a graph and keeps only `inputs` (and handles to `params`); when
//! backward reaches its outputs, it runs `f` again with gradients on detached copies of `inputs`
//! and differentiates that with the incoming gradients, returning gradients for `inputs` and
//! `params`. It is part of the ordinary autograd graph, so a loss built from its outputs by any
//! code (the algorithm plugin) and `backward()` called by any code (the host) just work.
//!
//! `f` may read tensors it captured (weights) directly; every such tensor that needs a gradient
//! must be passed in `params` so that the graph has an edge to it. `f` must be deterministic (the
//! recomputation must produce what the forward produced). An error or panic inside `f` during
//! backward surfaces as an error of `backward()` (`f_backward` returns `Err`), never an abort.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};

use longrl_core::{Error, Result};
use tch::Tensor;

type Callback = Box<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>> + Send>;

unsafe extern "C" {
    fn longrl_grad_enabled() -> c_int;
    fn longrl_recompute_apply(
        fn_: unsafe extern "C" fn(
            *mut c_void,
            *const *mut c_void,
            c_int,
            *mut *mut c_void,
            c_int,
            *mut c_char,
            usize,
        ) -> c_int,
        drop: unsafe extern "C" fn(*mut c_void),
        data: *mut c_void,
        inputs: *const *mut c_void,
        n_inputs: c_int,
        params: *const *mut c_void,
        n_params: c_int,
        outputs: *mut *mut c_void,
        n_outputs: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Whether autograd records operations on this thread (grad mode).
pub fn grad_enabled() -> bool {
    // SAFETY: reads a thread-local flag; cannot fail.
    unsafe { longrl_grad_enabled() != 0 }
}

/// Applies `f` to `inputs` as one autograd node that recomputes `f` in the backward pass instead of
/// keeping its intermediate tensors. `f` must return exactly `n_outputs` tensors. Without grad
/// mode, or when nothing requires a gradient, this is just `f(inputs)` (no graph).
pub fn recompute<F>(inputs: &[&Tensor], params: &[&Tensor], n_outputs: usize, f: F) -> Result<Vec<Tensor>>
where
    F: Fn(&[Tensor]) -> Result<Vec<Tensor>> + Send + 'static,
{
    let callback: Box<Callback> = Box::new(Box::new(f));
    let data = Box::into_raw(callback) as *mut c_void;
    let ptrs = |ts: &[&Tensor]| -> Vec<*mut c_void> { ts.iter().map(|t| t.as_ptr() as *mut c_void).collect() };
    let (inputs, params) = (ptrs(inputs), ptrs(params));
    let mut outputs = vec![std::ptr::null_mut::<c_void>(); n_outputs];
    let mut err = vec![0 as c_char; 4096];
    // SAFETY: the pointers are live `at::Tensor*` (tch's `C_tensor`) borrowed for the call; the
    // shim takes ownership of `data` and releases it through `drop_callback`; on success it fills
    // `outputs` with owned `at::Tensor*`, which `Tensor::from_ptr` takes over.
    let rc = unsafe {
        longrl_recompute_apply(
            call_callback,
            drop_callback,
            data,
            inputs.as_ptr(),
            inputs.len() as c_int,
            params.as_ptr(),
            params.len() as c_int,
            outputs.as_mut_ptr(),
            n_outputs as c_int,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        // SAFETY: the shim wrote a NUL-terminated message into `err`.
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) };
        return Err(Error::msg(msg.to_string_lossy().into_owned()));
    }
    Ok(outputs
        .into_iter()
        // SAFETY: owned `at::Tensor*` allocated by the shim with `new`, freed by tch's `Drop`.
        .map(|p| unsafe { Tensor::from_ptr(p as *mut _) })
        .collect())
}

unsafe extern "C" fn call_callback(
    data: *mut c_void,
    inputs: *const *mut c_void,
    n_inputs: c_int,
    outputs: *mut *mut c_void,
    n_outputs: c_int,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<Tensor>> {
        // SAFETY: `data` is the `Box<Callback>` made in `recompute`, alive until `drop_callback`.
        let f = unsafe { &*(data as *const Callback) };
        let inputs = (0..n_inputs as usize)
            .map(|i| {
                // SAFETY: borrowed `at::Tensor*` valid for this call; the ManuallyDrop keeps tch
                // from freeing it, and the shallow clone is an owned handle to the same tensor.
                let borrowed = ManuallyDrop::new(unsafe { Tensor::from_ptr(*inputs.add(i) as *mut _) });
                borrowed.shallow_clone()
            })
            .collect::<Vec<_>>();
        let out = f(&inputs)?;
        if out.len() != n_outputs as usize {
            return Err(Error::msg(format!(
                "recompute: the function returned {} tensors, {} declared",
                out.len(),
                n_outputs
            )));
        }
        Ok(out)
    }));
    let message = match result {
        Ok(Ok(out)) => {
            for (i, t) in out.into_iter().enumerate() {
                let mut t = ManuallyDrop::new(t);
                // SAFETY: `outputs` has room for `n_outputs` pointers; ownership passes to the shim.
                unsafe { *outputs.add(i) = t.as_mut_ptr() as *mut c_void };
            }
            return 0;
        }
        Ok(Err(e)) => e.to_string(),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            format!("recompute: panicked: {what}")
        }
    };
    if !err.is_null() && err_len > 0 {
        let bytes = message.as_bytes();
        let n = bytes.len().min(err_len - 1);
        // SAFETY: `err` has room for `err_len` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, err, n);
            *err.add(n) = 0;
        }
    }
    1
}

unsafe extern "C" fn drop_callback(data: *mut c_void) {
    // SAFETY: `data` is the `Box<Callback>` made in `recompute`; the shim calls this once.
    let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(data as *mut Callback) })));
}
