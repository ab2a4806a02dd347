//! An FFI-safe tensor handle with explicit ownership.
//!
//! The handle's layout needs no tch (so the ABI is the same with or without the `tensor` feature);
//! making and reading tensors does.
//!
//! Every cdylib links the same shared libtorch, so an `at::Tensor*` made on one side is a valid
//! tensor on the other, autograd graph included. What must not cross is the *ownership* of the
//! small heap cell tch allocates per `Tensor`: an owned handle carries the release function of the
//! side that allocated it, and the receiver takes its own shallow copy with [`TensorHandle::to_tensor`].

use std::ffi::c_void;
#[cfg(feature = "tensor")]
use std::mem::ManuallyDrop;

use abi_stable::StableAbi;
#[cfg(feature = "tensor")]
use tch::Tensor;

/// A tensor crossing the plugin boundary.
#[repr(C)]
#[derive(StableAbi)]
pub struct TensorHandle {
    raw: *mut c_void,
    /// `Some`: this handle owns `raw` and frees it with the allocating side's function on drop.
    /// `None`: borrowed; valid only for the duration of the call it was passed to.
    release: Option<unsafe extern "C" fn(*mut c_void)>,
}

// SAFETY: tch::Tensor is Send; the handle is a Tensor (or a reference to one) in transit.
unsafe impl Send for TensorHandle {}

#[cfg(feature = "tensor")]
unsafe extern "C" fn release_tensor(raw: *mut c_void) {
    // SAFETY: `raw` came from `TensorHandle::owned` in this same library, which leaked a Tensor.
    drop(unsafe { Tensor::from_ptr(raw.cast()) });
}

#[cfg(feature = "tensor")]
impl TensorHandle {
    /// Hand a tensor over: the receiver's drop of the handle frees it on this side.
    pub fn owned(tensor: Tensor) -> Self {
        let mut tensor = ManuallyDrop::new(tensor);
        TensorHandle { raw: tensor.as_mut_ptr().cast(), release: Some(release_tensor) }
    }

    /// Lend a tensor for the duration of one call.
    ///
    /// # Safety
    /// The handle (and anything cloned from it while it lives) must not outlive `tensor`'s call frame.
    pub unsafe fn borrowed(tensor: &Tensor) -> Self {
        TensorHandle { raw: tensor.as_ptr().cast_mut().cast(), release: None }
    }

    pub fn is_owned(&self) -> bool {
        self.release.is_some()
    }

    /// A tensor of this side sharing storage, `requires_grad`, `.grad` and graph with the handle's.
    pub fn to_tensor(&self) -> Tensor {
        // SAFETY: `raw` is a live at::Tensor (owned by this handle or by the lender during the call);
        // clone_from_ptr makes a new reference-counted at::Tensor allocated on this side.
        unsafe { Tensor::clone_from_ptr(self.raw.cast()) }
    }

    /// Take the tensor, releasing the handle.
    pub fn into_tensor(self) -> Tensor {
        self.to_tensor()
    }
}

impl Drop for TensorHandle {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            // SAFETY: owned handles hold a leaked Tensor of the side whose function this is.
            unsafe { release(self.raw) }
        }
    }
}

#[cfg(all(test, feature = "tensor"))]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn owned_handle_shares_storage_and_graph() {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).set_requires_grad(true);
        let y = (&x * &x).sum(Kind::Float);
        let handle = TensorHandle::owned(y);
        assert!(handle.is_owned());
        let y2 = handle.into_tensor();
        y2.backward();
        let grad = x.grad();
        assert_eq!(Vec::<f32>::try_from(&grad).unwrap(), vec![2.0, 4.0, 6.0]);
    }

    #[test]
    fn borrowed_handle_sees_in_place_updates() {
        let mut t = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let view = {
            let handle = unsafe { TensorHandle::borrowed(&t) };
            assert!(!handle.is_owned());
            handle.to_tensor()
        };
        let _ = t.fill_(5.0);
        assert_eq!(Vec::<f32>::try_from(&view).unwrap(), vec![5.0, 5.0]);
    }
}
