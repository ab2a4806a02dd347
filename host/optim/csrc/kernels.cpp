// The multi-tensor kernels of the optimizer: the C++ half of `src/kernels.rs`.
//
// tch has no binding for libtorch's foreach operators or for `_fused_adamw_` (they take and
// return tensor lists), so they are called here. Each entry point takes arrays of `at::Tensor*`
// (tch's tensor handles), launches one multi-tensor operator, and never reads a value back to
// the host: the optimizer's one host synchronisation per step is its read of the gradient norm.
// Every call runs without autograd (the parameters are leaves that require grad and are updated
// in place). No C++ exception crosses into Rust (`ffi_guard.h`): failures return 1 with a message.

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/_foreach_copy.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_foreach_zero.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/add.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/reciprocal.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>

#include <vector>

#include "ffi_guard.h"

namespace {

std::vector<at::Tensor> tensors(void* const* handles, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*static_cast<const at::Tensor*>(handles[i]));
  return out;
}

}  // namespace

extern "C" {

// dst[i].copy_(src[i]) for all i (casting, e.g. bfloat16 gradients into float32 buffers).
int longrl_optim_foreach_copy(void* const* dst, void* const* src, size_t n, char* err, size_t err_len) {
  return longrl_optim::ffi_guard("foreach copy: unknown C++ exception", err, err_len, [&] {
    at::NoGradGuard no_grad;
    auto d = tensors(dst, n);
    at::_foreach_copy_(d, tensors(src, n));
  });
}

// t[i].zero_() for all i.
int longrl_optim_foreach_zero(void* const* t, size_t n, char* err, size_t err_len) {
  return longrl_optim::ffi_guard("foreach zero: unknown C++ exception", err, err_len, [&] {
    at::NoGradGuard no_grad;
    auto list = tensors(t, n);
    at::_foreach_zero_(list);
  });
}

// The L2 norm of all tensors together, accumulated in float32 whatever their dtype, as
// `torch.nn.utils.clip_grad_norm_` computes it: per-tensor norms, then the norm of their stack.
// An owned 0-dim float32 tensor on the tensors' device in `out` (zero for an empty list).
int longrl_optim_global_norm(void* const* t, size_t n, void** out, char* err, size_t err_len) {
  return longrl_optim::ffi_guard("global norm: unknown C++ exception", err, err_len, [&] {
    at::NoGradGuard no_grad;
    if (n == 0) {
      *out = new at::Tensor(at::zeros({}, at::kFloat));
      return;
    }
    auto norms = at::_foreach_norm(tensors(t, n), 2, at::kFloat);
    *out = new at::Tensor(at::linalg_vector_norm(at::stack(norms), 2));
  });
}

// Scales the tensors by min(1, max_norm / (total_norm + 1e-6)), computed on the device from the
// 0-dim `total_norm` (as `clip_grad_norm_` does, so no value comes back to the host).
int longrl_optim_clip(void* const* t, size_t n, void* total_norm, double max_norm, char* err, size_t err_len) {
  return longrl_optim::ffi_guard("gradient clipping: unknown C++ exception", err, err_len, [&] {
    at::NoGradGuard no_grad;
    const at::Tensor& total = *static_cast<const at::Tensor*>(total_norm);
    // Python's `max_norm / (total + 1e-6)` is `reciprocal(total + 1e-6) * max_norm`.
    auto coef = at::clamp(at::mul(at::reciprocal(at::add(total, 1e-6)), max_norm), std::nullopt, 1.0);
    auto list = tensors(t, n);
    at::_foreach_mul_(list, coef);
  });
}

// One AdamW step (decoupled weight decay, no amsgrad) over n tensors with libtorch's fused
// kernel; `step` is a float32 0-dim tensor holding the step number after this update (used for
// bias correction; shared by every tensor of the call). Parameters, gradients and moments of one
// index have the same dtype, shape and device.
int longrl_optim_fused_adamw(void* const* params, void* const* grads, void* const* exp_avgs, void* const* exp_avg_sqs,
                             void* step, size_t n, double lr, double beta1, double beta2, double weight_decay,
                             double eps, char* err, size_t err_len) {
  return longrl_optim::ffi_guard("fused AdamW: unknown C++ exception", err, err_len, [&] {
    at::NoGradGuard no_grad;
    auto p = tensors(params, n);
    auto m = tensors(exp_avgs, n);
    auto v = tensors(exp_avg_sqs, n);
    std::vector<at::Tensor> steps(n, *static_cast<const at::Tensor*>(step));
    at::_fused_adamw_(p, tensors(grads, n), m, v, {}, steps, lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false);
  });
}

}  // extern "C"
