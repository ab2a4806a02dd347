//! [`ProcessGroup`]: a set of ranks over one c10d backend, and its collectives.
//!
//! Every rank of a group must call the same collectives in the same order (as in
//! torch.distributed). A world of one process needs no store and answers every collective
//! locally, so a trainer calls them unconditionally.

use std::ffi::{CString, c_int, c_void};
use std::ptr::NonNull;
use std::time::Duration;

use tch::{Device, Tensor};

use crate::env::{DistEnv, StoreHost};
use crate::ffi::{self, call};
use crate::{Backend, BackendChoice, DistError, ReduceOp};

/// How to form a group: the `[dist]` settings the process group layer reads.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupOptions {
    pub backend: BackendChoice,
    /// Limit of every collective and of the rendezvous (`dist.timeout_s`).
    pub timeout: Duration,
}

impl Default for GroupOptions {
    /// Auto backend; ten minutes, torch's NCCL default.
    fn default() -> Self {
        GroupOptions { backend: BackendChoice::Auto, timeout: Duration::from_secs(600) }
    }
}

/// A group of ranks. Dropping it releases the backend; a collective's output tensors stay valid.
#[derive(Debug)]
pub struct ProcessGroup {
    handle: NonNull<c_void>,
    rank: usize,
    size: usize,
    global_rank: usize,
    backend: Backend,
    device: Device,
}

// SAFETY: the handle owns a reference to a C++ group that is not tied to the thread that made it.
// `ProcessGroup` stays `!Sync`, so one thread at a time issues its collectives, in one order.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// The world group of the job `env` describes: a world of one without any store, else the
    /// TCPStore at MASTER_ADDR:MASTER_PORT (served by rank 0 or by torchrun's agent) under the
    /// prefix `longrl/<restart count>`, and Gloo (CPU) or NCCL (`cuda:LOCAL_RANK`).
    pub fn new(env: &DistEnv, options: &GroupOptions) -> Result<Self, DistError> {
        let backend = options.backend.resolve()?;
        let device = match backend {
            Backend::Gloo => Device::Cpu,
            Backend::Nccl => Device::Cuda(env.local_rank),
        };
        if !env.is_distributed() {
            return Ok(Self::single_on(backend, device));
        }
        let timeout_ms = i64::try_from(options.timeout.as_millis()).unwrap_or(i64::MAX).max(1);
        let host = c_string(&env.master_addr, "MASTER_ADDR")?;
        let prefix = c_string(&env.store_prefix(), "the store prefix")?;
        let store_host = match env.store {
            StoreHost::Rank0 => 0,
            StoreHost::Agent => -1,
        };
        let mut out = std::ptr::null_mut();
        call(|err, len| unsafe {
            // SAFETY: the strings live across the call; `out` receives an owned handle on success.
            ffi::longrl_dist_init(
                host.as_ptr(),
                c_int::from(env.master_port),
                store_host,
                prefix.as_ptr(),
                to_c(env.rank),
                to_c(env.world_size),
                backend as c_int,
                device_index(device),
                timeout_ms,
                &mut out,
                err,
                len,
            )
        })?;
        let handle = NonNull::new(out).ok_or_else(|| DistError::Collective("init returned no group".into()))?;
        Ok(ProcessGroup { handle, rank: env.rank, size: env.world_size, global_rank: env.rank, backend, device })
    }

    /// A world of this process alone (Gloo on the CPU): every collective is answered locally.
    pub fn single() -> Self {
        Self::single_on(Backend::Gloo, Device::Cpu)
    }

    fn single_on(backend: Backend, device: Device) -> Self {
        let mut out = std::ptr::null_mut();
        // SAFETY: `out` receives an owned handle; creating a store-less group cannot fail short of
        // memory exhaustion, which aborts anyway.
        call(|err, len| unsafe { ffi::longrl_dist_single(backend as c_int, device_index(device), &mut out, err, len) })
            .expect("a single-process group needs no peers");
        let handle = NonNull::new(out).expect("the shim returns a group");
        ProcessGroup { handle, rank: 0, size: 1, global_rank: 0, backend, device }
    }

    /// This process's rank in the group.
    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// This process's rank in the world group.
    pub fn global_rank(&self) -> usize {
        self.global_rank
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The device the group's tensors live on (`cuda:LOCAL_RANK` for NCCL).
    pub fn device(&self) -> Device {
        self.device
    }

    /// A sub-group of `members` (ranks of this group; their order gives the sub-group's ranks).
    /// Every rank of this group calls `split` with the same members, in the same order relative
    /// to its other splits; ranks outside `members` get `None`.
    pub fn split(&self, members: &[usize]) -> Result<Option<ProcessGroup>, DistError> {
        let members: Vec<i64> = members.iter().map(|&m| m as i64).collect();
        let mut out = std::ptr::null_mut();
        call(|err, len| unsafe {
            // SAFETY: `members` lives across the call; `out` is null or an owned handle.
            ffi::longrl_dist_split(self.raw(), members.as_ptr(), members.len() as c_int, &mut out, err, len)
        })?;
        Ok(NonNull::new(out).map(|handle| {
            // SAFETY: a live group handle.
            let (rank, size) = unsafe { (ffi::longrl_dist_group_rank(out), ffi::longrl_dist_group_size(out)) };
            ProcessGroup {
                handle,
                rank: rank as usize,
                size: size as usize,
                global_rank: self.global_rank,
                backend: self.backend,
                device: self.device,
            }
        }))
    }

    /// Reduces `tensor` over the group, in place (contiguous tensors only).
    pub fn all_reduce(&self, tensor: &mut Tensor, op: ReduceOp) -> Result<(), DistError> {
        call(|err, len| unsafe {
            // SAFETY: the tensor is live and exclusively borrowed for the call.
            ffi::longrl_dist_all_reduce(self.raw(), tensor.as_mut_ptr() as *mut c_void, op as c_int, err, len)
        })
    }

    /// Copies `root`'s `tensor` into every rank's `tensor`, in place.
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<(), DistError> {
        call(|err, len| unsafe {
            // SAFETY: as in `all_reduce`.
            ffi::longrl_dist_broadcast(self.raw(), tensor.as_mut_ptr() as *mut c_void, to_c(root), err, len)
        })
    }

    /// Every rank's tensor, concatenated along the first dimension in rank order (a scalar counts
    /// as one row). All ranks pass the same shape.
    pub fn all_gather(&self, input: &Tensor) -> Result<Tensor, DistError> {
        self.tensor_out(|g, out, err, len| unsafe {
            // SAFETY: the input is live for the call; `out` receives an owned tensor.
            ffi::longrl_dist_all_gather(g, input.as_ptr() as *mut c_void, 0, out, err, len)
        })
    }

    /// Reduces `input` over the group and returns this rank's block of its first dimension (which
    /// must be a multiple of the group size).
    pub fn reduce_scatter(&self, input: &Tensor, op: ReduceOp) -> Result<Tensor, DistError> {
        self.tensor_out(|g, out, err, len| unsafe {
            // SAFETY: as in `all_gather`.
            ffi::longrl_dist_reduce_scatter(g, input.as_ptr() as *mut c_void, op as c_int, 0, out, err, len)
        })
    }

    /// Sends rows of `input` to every rank: `input_splits[r]` rows to rank r (equal shares when
    /// `None`), and receives `output_splits[r]` rows from rank r (when `None`: equal shares if
    /// the input splits are `None` too, else learnt from the peers by one small exchange).
    pub fn all_to_all(
        &self,
        input: &Tensor,
        input_splits: Option<&[i64]>,
        output_splits: Option<&[i64]>,
    ) -> Result<Tensor, DistError> {
        self.all_to_all_raw(input, input_splits, output_splits, false)
    }

    /// Waits until every rank of the group has reached the barrier.
    pub fn barrier(&self) -> Result<(), DistError> {
        // SAFETY: a live group handle.
        call(|err, len| unsafe { ffi::longrl_dist_barrier(self.raw(), err, len) })
    }

    /// [`all_gather`](Self::all_gather) as an autograd node: the gradient of `input` is the
    /// reduce-scatter (sum) of every rank's gradient of the output (the total loss is the sum of
    /// the ranks' losses).
    pub fn all_gather_autograd(&self, input: &Tensor) -> Result<Tensor, DistError> {
        self.tensor_out(|g, out, err, len| unsafe {
            // SAFETY: as in `all_gather`.
            ffi::longrl_dist_all_gather(g, input.as_ptr() as *mut c_void, 1, out, err, len)
        })
    }

    /// [`reduce_scatter`](Self::reduce_scatter) (sum) as an autograd node: its backward all-gathers.
    pub fn reduce_scatter_autograd(&self, input: &Tensor) -> Result<Tensor, DistError> {
        self.tensor_out(|g, out, err, len| unsafe {
            // SAFETY: as in `all_gather`.
            ffi::longrl_dist_reduce_scatter(g, input.as_ptr() as *mut c_void, ReduceOp::Sum as c_int, 1, out, err, len)
        })
    }

    /// [`all_to_all`](Self::all_to_all) as an autograd node: its backward is the all-to-all with
    /// the splits swapped.
    pub fn all_to_all_autograd(
        &self,
        input: &Tensor,
        input_splits: Option<&[i64]>,
        output_splits: Option<&[i64]>,
    ) -> Result<Tensor, DistError> {
        self.all_to_all_raw(input, input_splits, output_splits, true)
    }

    /// The all-to-all of sequence parallelism (Ulysses): `input` is split into `size` equal
    /// blocks along `scatter_dim`, block r goes to rank r, and the blocks received are
    /// concatenated along `gather_dim` in rank order. Differentiable (its backward is the reverse
    /// exchange). E.g. [T/sp, H, D] with scatter 1, gather 0 gives [T, H/sp, D].
    pub fn all_to_all_dims(&self, input: &Tensor, scatter_dim: i64, gather_dim: i64) -> Result<Tensor, DistError> {
        let dims = input.dim() as i64;
        let check = |d: i64, what: &str| {
            if d < 0 || d >= dims {
                return Err(DistError::Usage(format!("{what} {d} is out of range for a {dims}-dimensional tensor")));
            }
            Ok(())
        };
        check(scatter_dim, "scatter_dim")?;
        check(gather_dim, "gather_dim")?;
        let n = input.size()[scatter_dim as usize];
        if n % self.size as i64 != 0 {
            return Err(DistError::Usage(format!(
                "all_to_all_dims: dimension {scatter_dim} has {n} entries, not a multiple of the group size {}",
                self.size
            )));
        }
        let blocks = input.f_chunk(self.size as i64, scatter_dim).map_err(torch_error)?;
        let stacked = Tensor::f_stack(&blocks, 0).map_err(torch_error)?;
        let received = self.all_to_all_autograd(&stacked, None, None)?;
        let parts = received.f_unbind(0).map_err(torch_error)?;
        Tensor::f_cat(&parts, gather_dim).map_err(torch_error)
    }

    fn all_to_all_raw(
        &self,
        input: &Tensor,
        input_splits: Option<&[i64]>,
        output_splits: Option<&[i64]>,
        autograd: bool,
    ) -> Result<Tensor, DistError> {
        let (outs, ins) = (output_splits.unwrap_or(&[]), input_splits.unwrap_or(&[]));
        self.tensor_out(|g, out, err, len| unsafe {
            // SAFETY: the input and split slices live across the call; `out` receives an owned tensor.
            ffi::longrl_dist_all_to_all(
                g,
                input.as_ptr() as *mut c_void,
                outs.as_ptr(),
                outs.len() as c_int,
                ins.as_ptr(),
                ins.len() as c_int,
                c_int::from(autograd),
                out,
                err,
                len,
            )
        })
    }

    fn tensor_out(
        &self,
        f: impl FnOnce(*mut c_void, *mut *mut c_void, *mut std::ffi::c_char, usize) -> c_int,
    ) -> Result<Tensor, DistError> {
        let mut out = std::ptr::null_mut();
        call(|err, len| f(self.raw(), &mut out, err, len))?;
        if out.is_null() {
            return Err(DistError::Collective("the shim returned no tensor".into()));
        }
        // SAFETY: on success the shim hands over an owned `at::Tensor*`.
        Ok(unsafe { Tensor::from_ptr(out as *mut _) })
    }

    fn raw(&self) -> *mut c_void {
        self.handle.as_ptr()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and released once; autograd nodes hold their own references.
        unsafe { ffi::longrl_dist_group_free(self.raw()) }
    }
}

/// A TCPStore server that waits for no one, as torchrun's elastic agent hosts it for its workers
/// (`TORCHELASTIC_USE_AGENT_STORE=True`). Serves until dropped.
#[derive(Debug)]
pub struct StoreServer {
    handle: NonNull<c_void>,
}

impl StoreServer {
    pub fn start(host: &str, port: u16, timeout: Duration) -> Result<Self, DistError> {
        let host = c_string(host, "the store host")?;
        let mut out = std::ptr::null_mut();
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        call(|err, len| unsafe {
            // SAFETY: `host` lives across the call; `out` receives an owned handle.
            ffi::longrl_dist_store_serve(host.as_ptr(), c_int::from(port), timeout_ms, &mut out, err, len)
        })?;
        let handle = NonNull::new(out).ok_or_else(|| DistError::Collective("store server not created".into()))?;
        Ok(StoreServer { handle })
    }
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        // SAFETY: owned, released once.
        unsafe { ffi::longrl_dist_store_free(self.handle.as_ptr()) }
    }
}

fn c_string(value: &str, what: &str) -> Result<CString, DistError> {
    CString::new(value).map_err(|_| DistError::Usage(format!("{what} contains a NUL byte")))
}

fn to_c(value: usize) -> c_int {
    c_int::try_from(value).unwrap_or(c_int::MAX)
}

fn device_index(device: Device) -> c_int {
    match device {
        Device::Cuda(i) => to_c(i),
        _ => 0,
    }
}

fn torch_error(e: tch::TchError) -> DistError {
    DistError::Usage(e.to_string())
}
