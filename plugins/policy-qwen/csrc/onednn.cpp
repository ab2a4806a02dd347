// oneDNN linear with a weight packed once for a batch size: the C++ half of `src/onednn.rs`.
//
// For a decode step (a few rows against each weight matrix) the default CPU BLAS path repacks the
// whole weight at every call. libtorch's `mkldnn::_reorder_linear_weight` packs it once into
// oneDNN's blocked layout and `mkldnn::_linear_pointwise` multiplies with the packed weight; tch
// has no binding for either (they live in the `mkldnn` operator namespace, not `aten`), so they
// are called through the dispatcher here. No C++ exception crosses into Rust (`ffi_guard.h`):
// failures return 1 with a message.

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <ATen/Tensor.h>

#include <optional>
#include <string>

#include "ffi_guard.h"

namespace {

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

at::Tensor call(const c10::OperatorHandle& handle, torch::jit::Stack stack) {
  handle.callBoxed(&stack);
  return stack.at(0).toTensor();
}

}  // namespace

extern "C" {

// Whether this libtorch registers both operators (a build without oneDNN does not).
int longrl_onednn_available() {
  try {
    auto& dispatcher = c10::Dispatcher::singleton();
    return dispatcher.findSchema({"mkldnn::_reorder_linear_weight", ""}).has_value() &&
                   dispatcher.findSchema({"mkldnn::_linear_pointwise", ""}).has_value()
               ? 1
               : 0;
  } catch (...) {
    return 0;
  }
}

// `weight` [N, K] (dense float32 CPU) packed for `batch_size` rows; owned result in `out`.
int longrl_onednn_pack(void* weight, int64_t batch_size, void** out, char* err, size_t err_len) {
  return longrl::ffi_guard("oneDNN pack: unknown C++ exception", err, err_len, [&] {
    static const c10::OperatorHandle reorder = op("mkldnn::_reorder_linear_weight");
    const at::Tensor& w = *static_cast<at::Tensor*>(weight);
    *out = new at::Tensor(call(reorder, {w, c10::IValue(batch_size)}));
  });
}

// `x` [M, K] dense times the packed weight (plus `bias`, may be null); owned [M, N] in `out`.
int longrl_onednn_linear(void* x, void* packed, void* bias, void** out, char* err, size_t err_len) {
  return longrl::ffi_guard("oneDNN linear: unknown C++ exception", err, err_len, [&] {
    static const c10::OperatorHandle linear = op("mkldnn::_linear_pointwise");
    const at::Tensor& input = *static_cast<at::Tensor*>(x);
    const at::Tensor& w = *static_cast<at::Tensor*>(packed);
    c10::IValue b = bias == nullptr ? c10::IValue() : c10::IValue(*static_cast<at::Tensor*>(bias));
    torch::jit::Stack stack{input, w, b, c10::IValue(std::string("none")),
                            c10::IValue(c10::List<std::optional<at::Scalar>>()), c10::IValue()};
    *out = new at::Tensor(call(linear, std::move(stack)));
  });
}

}  // extern "C"
