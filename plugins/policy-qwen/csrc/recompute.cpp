// A libtorch autograd function that recomputes its forward in the backward pass: the C++ half of
// `src/recompute.rs` (activation checkpointing and chunked log-probs without saved logits).
//
// `longrl_recompute_apply` runs a Rust callback on the inputs under no-grad and saves only the
// inputs. Its backward re-runs the callback with grad enabled on detached copies of the inputs and
// differentiates the recomputed outputs with `torch::autograd::grad` against those copies and the
// parameters (tensors the callback reads directly, passed here so that the autograd graph has
// edges to them). Tensors cross as `at::Tensor*`, the representation of tch's `C_tensor`.
//
// No C++ exception crosses into Rust and no Rust panic crosses into C++: the Rust callback reports
// failure with a status and a message, which becomes a `std::runtime_error` here; `apply` catches
// every exception and returns its message (`ffi_guard.h`), and one raised in backward reaches whoever called
// `backward()` (tch's `f_backward` returns it as an error).

#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "ffi_guard.h"

extern "C" {
// inputs: borrowed `at::Tensor*`; outputs: filled with owned `at::Tensor*` (heap, `new`) on success.
// Returns 0 on success; otherwise writes a NUL-terminated message into err.
typedef int (*longrl_recompute_fn)(void* data, void* const* inputs, int n_inputs, void** outputs,
                                   int n_outputs, char* err, size_t err_len);
typedef void (*longrl_recompute_drop)(void* data);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct Callback : torch::CustomClassHolder {
  longrl_recompute_fn fn;
  longrl_recompute_drop drop;
  void* data;
  int n_outputs;

  Callback(longrl_recompute_fn fn, longrl_recompute_drop drop, void* data, int n_outputs)
      : fn(fn), drop(drop), data(data), n_outputs(n_outputs) {}
  Callback(const Callback&) = delete;
  Callback& operator=(const Callback&) = delete;
  ~Callback() override {
    if (drop != nullptr) drop(data);
  }

  variable_list call(const variable_list& inputs) const {
    std::vector<void*> in(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) in[i] = const_cast<at::Tensor*>(&inputs[i]);
    std::vector<void*> out(static_cast<size_t>(n_outputs), nullptr);
    std::vector<char> err(4096, '\0');
    int rc = fn(data, in.data(), static_cast<int>(in.size()), out.data(), n_outputs, err.data(),
                err.size() - 1);
    variable_list result;
    result.reserve(out.size());
    for (void* p : out) {
      auto* t = static_cast<at::Tensor*>(p);
      if (t != nullptr) {
        result.push_back(*t);
        delete t;
      }
    }
    if (rc != 0) throw std::runtime_error(std::string(err.data()));
    if (result.size() != out.size())
      throw std::runtime_error("recompute: the callback returned fewer outputs than declared");
    return result;
  }
};

struct Recompute : torch::autograd::Function<Recompute> {
  // `all` holds the callback's inputs (first `n_inputs`) and then the parameters.
  static variable_list forward(AutogradContext* ctx, c10::intrusive_ptr<Callback> callback,
                               int64_t n_inputs, at::TensorList all) {
    ctx->set_materialize_grads(false);
    variable_list inputs(all.begin(), all.begin() + n_inputs);
    variable_list outputs = callback->call(inputs);
    ctx->save_for_backward(all.vec());
    ctx->saved_data["n_inputs"] = n_inputs;
    ctx->saved_data["callback"] = at::IValue::make_capsule(std::move(callback));
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto callback =
        c10::static_intrusive_pointer_cast<Callback>(ctx->saved_data["callback"].toCapsule());
    const int64_t n_inputs = ctx->saved_data["n_inputs"].toInt();
    variable_list saved = ctx->get_saved_variables();
    // Two leading non-tensor arguments of forward (callback, n_inputs) get no gradient.
    variable_list grads(2 + saved.size());

    at::AutoGradMode enable_grad(true);
    variable_list inputs, wrt;
    std::vector<size_t> wrt_at;
    for (size_t i = 0; i < saved.size(); ++i) {
      const bool needs = saved[i].defined() && saved[i].requires_grad();
      if (static_cast<int64_t>(i) < n_inputs) {
        at::Tensor d = saved[i].detach();
        if (needs) {
          d.requires_grad_(true);
          wrt.push_back(d);
          wrt_at.push_back(i);
        }
        inputs.push_back(d);
      } else if (needs) {
        wrt.push_back(saved[i]);
        wrt_at.push_back(i);
      }
    }
    variable_list outputs = callback->call(inputs);
    variable_list roots, root_grads;
    for (size_t j = 0; j < outputs.size() && j < grad_outputs.size(); ++j) {
      if (grad_outputs[j].defined() && outputs[j].defined() && outputs[j].requires_grad()) {
        roots.push_back(outputs[j]);
        root_grads.push_back(grad_outputs[j]);
      }
    }
    if (roots.empty() || wrt.empty()) return grads;
    variable_list got = torch::autograd::grad(roots, wrt, root_grads, /*retain_graph=*/false,
                                              /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t k = 0; k < got.size(); ++k) grads[2 + wrt_at[k]] = got[k];
    return grads;
  }
};

}  // namespace

extern "C" {

// Whether autograd records operations on this thread (tch exposes only a setter).
int longrl_grad_enabled() { return at::GradMode::is_enabled() ? 1 : 0; }

// Applies the recomputing function. Takes ownership of `data` (released with `drop` when the
// autograd node dies, or before returning when there is none). On success fills `outputs` with
// `n_outputs` owned `at::Tensor*` and returns 0; otherwise writes a message into `err`, returns 1.
int longrl_recompute_apply(longrl_recompute_fn fn, longrl_recompute_drop drop, void* data,
                           void* const* inputs, int n_inputs, void* const* params, int n_params,
                           void** outputs, int n_outputs, char* err, size_t err_len) {
  return longrl::ffi_guard("recompute: unknown C++ exception", err, err_len, [&] {
    auto callback = c10::make_intrusive<Callback>(fn, drop, data, n_outputs);
    std::vector<at::Tensor> all;
    all.reserve(static_cast<size_t>(n_inputs + n_params));
    for (int i = 0; i < n_inputs; ++i) all.push_back(*static_cast<at::Tensor*>(inputs[i]));
    for (int i = 0; i < n_params; ++i) all.push_back(*static_cast<at::Tensor*>(params[i]));
    variable_list out =
        Recompute::apply(std::move(callback), static_cast<int64_t>(n_inputs), at::TensorList(all));
    if (static_cast<int>(out.size()) != n_outputs)
      throw std::runtime_error("recompute: unexpected number of outputs");
    for (int i = 0; i < n_outputs; ++i) outputs[i] = new at::Tensor(std::move(out[i]));
  });
}

}  // extern "C"
