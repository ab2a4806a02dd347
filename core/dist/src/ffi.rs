//! The C entry points of `csrc/ffi.cpp` and the one helper that turns their status and message
//! into a `Result`. Tensors cross as tch's `C_tensor` pointers (`at::Tensor*`).

use std::ffi::{CStr, c_char, c_int, c_void};

use crate::DistError;

unsafe extern "C" {
    pub fn longrl_dist_init(
        host: *const c_char,
        port: c_int,
        store_host: c_int,
        prefix: *const c_char,
        rank: c_int,
        world_size: c_int,
        backend: c_int,
        device_index: c_int,
        timeout_ms: i64,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn longrl_dist_single(
        backend: c_int,
        device_index: c_int,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn longrl_dist_split(
        parent: *mut c_void,
        members: *const i64,
        n: c_int,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn longrl_dist_group_free(group: *mut c_void);
    pub fn longrl_dist_group_rank(group: *mut c_void) -> c_int;
    pub fn longrl_dist_group_size(group: *mut c_void) -> c_int;
    pub fn longrl_dist_all_reduce(
        group: *mut c_void,
        t: *mut c_void,
        op: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn longrl_dist_broadcast(
        group: *mut c_void,
        t: *mut c_void,
        root: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn longrl_dist_all_gather(
        group: *mut c_void,
        input: *mut c_void,
        autograd: c_int,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn longrl_dist_reduce_scatter(
        group: *mut c_void,
        input: *mut c_void,
        op: c_int,
        autograd: c_int,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn longrl_dist_all_to_all(
        group: *mut c_void,
        input: *mut c_void,
        output_splits: *const i64,
        n_output: c_int,
        input_splits: *const i64,
        n_input: c_int,
        autograd: c_int,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn longrl_dist_barrier(group: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    pub fn longrl_dist_store_serve(
        host: *const c_char,
        port: c_int,
        timeout_ms: i64,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn longrl_dist_store_free(store: *mut c_void);
}

/// Runs one entry point with an error buffer; a non-zero status becomes the shim's message.
pub fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), DistError> {
    let mut err = vec![0 as c_char; 8192];
    if f(err.as_mut_ptr(), err.len()) == 0 {
        return Ok(());
    }
    // SAFETY: the shim writes a NUL-terminated message within the buffer (ffi_guard.h).
    let message = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
    Err(DistError::Collective(message))
}
