// Attention of one set of queries over several key/value parts, each seen whole or causally, merged
// by log-sum-exp: the C++ half of `src/attention.rs`.
//
// A response attends to its group's prompt keys (shared by the group's rows) and to its own keys;
// a prefill chunk to the cached prefix and to itself. Concatenating the parts would copy the shared
// prompt keys once per row; a mask over the concatenation would keep attention off the fused
// kernels. Instead each part runs through a fused kernel that also returns the log-sum-exp of its
// scores, and the outputs are merged with weights exp(lse_part - lse_all). The backward pass of the
// merged attention is each part's fused backward given the *merged* output and log-sum-exp (the
// softmax and the row sums it recomputes are then those of the whole key set), as in ring attention.
//
// A part seen whole by every query may have batch 1 while the queries have batch B (the group's
// rows share one prompt): the B rows, and the query heads sharing a KV head, are folded into the
// query length, so each key is read once per KV head rather than once per row and query head. A
// causal part has the queries' batch and length (queries and keys are the same tokens).
//
// Kernels: CPU flash attention (any float dtype, grouped-query native); CUDA flash attention in
// half / bfloat16 with head dim a multiple of 8 up to 256; otherwise the math below. No C++
// exception crosses into Rust (`ffi_guard.h`).

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "ffi_guard.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

enum Kernel : int { kCpuFlash = 0, kCudaFlash = 1, kMath = 2 };

Kernel auto_kernel(const at::Tensor& q) {
  if (q.device().is_cpu()) return kCpuFlash;
  const auto dtype = q.scalar_type();
  const auto head_dim = q.size(-1);
  if (q.device().is_cuda() && (dtype == at::kHalf || dtype == at::kBFloat16) && head_dim % 8 == 0 &&
      head_dim <= 256)
    return kCudaFlash;
  return kMath;
}

at::Tensor causal_mask(int64_t n, const at::Device& device) {
  // true above the diagonal: key j > query i is hidden.
  return at::ones({n, n}, at::TensorOptions().dtype(at::kBool).device(device)).triu(1);
}

// Keys and values with one head per query head (for the math kernel).
at::Tensor repeat_heads(const at::Tensor& t, int64_t heads) {
  const int64_t rep = heads / t.size(1);
  return rep == 1 ? t : t.repeat_interleave(rep, 1);
}

// Sum the gradient of repeated heads back onto their KV head.
at::Tensor reduce_heads(const at::Tensor& g, int64_t kv_heads) {
  const int64_t rep = g.size(1) / kv_heads;
  if (rep == 1) return g;
  auto s = g.sizes().vec();
  return g.view({s[0], kv_heads, rep, s[2], s[3]}).sum(2);
}

// (output in q's dtype, log-sum-exp float32 [B, H, L]) of q [B, H, L, D] over k, v [B, Hkv, S, D].
std::tuple<at::Tensor, at::Tensor> part_forward(Kernel kernel, const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v, bool causal, double scale) {
  switch (kernel) {
    case kCpuFlash: {
      auto r = at::_scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, {}, scale);
      return {std::get<0>(r), std::get<1>(r)};
    }
    case kCudaFlash: {
      auto r = at::_scaled_dot_product_flash_attention(q, k, v, 0.0, causal, false, scale);
      return {std::get<0>(r), std::get<1>(r)};
    }
    default: {
      const auto wide = at::promote_types(q.scalar_type(), at::kFloat);
      auto kk = repeat_heads(k, q.size(1)).to(wide);
      auto vv = repeat_heads(v, q.size(1)).to(wide);
      auto s = at::matmul(q.to(wide), kk.transpose(-1, -2)) * scale;
      if (causal) s = s.masked_fill(causal_mask(s.size(-1), s.device()), -std::numeric_limits<float>::infinity());
      auto lse = s.logsumexp(-1);
      auto p = (s - lse.unsqueeze(-1)).exp();
      return {at::matmul(p, vv).to(q.scalar_type()), lse};
    }
  }
}

// Gradients (q, k, v) of one part given the merged output and log-sum-exp.
std::tuple<at::Tensor, at::Tensor, at::Tensor> part_backward(Kernel kernel, const at::Tensor& dout,
                                                             const at::Tensor& q, const at::Tensor& k,
                                                             const at::Tensor& v, const at::Tensor& out,
                                                             const at::Tensor& lse, bool causal, double scale) {
  switch (kernel) {
    case kCpuFlash: {
      auto r = at::_scaled_dot_product_flash_attention_for_cpu_backward(dout, q, k, v, out, lse, 0.0, causal, {},
                                                                        scale);
      return r;
    }
    case kCudaFlash: {
      // No dropout: the RNG state arguments are unused (empty tensors, as the forward returns them).
      auto empty = at::empty({0}, q.options().dtype(at::kLong));
      return at::_scaled_dot_product_flash_attention_backward(dout, q, k, v, out, lse, at::Tensor(), at::Tensor(),
                                                              q.size(2), k.size(2), 0.0, causal, empty, empty,
                                                              scale);
    }
    default: {
      const auto wide = at::promote_types(q.scalar_type(), at::kFloat);
      auto kk = repeat_heads(k, q.size(1)).to(wide);
      auto vv = repeat_heads(v, q.size(1)).to(wide);
      auto qf = q.to(wide);
      auto d = dout.to(wide);
      auto s = at::matmul(qf, kk.transpose(-1, -2)) * scale;
      if (causal) s = s.masked_fill(causal_mask(s.size(-1), s.device()), -std::numeric_limits<float>::infinity());
      auto p = (s - lse.unsqueeze(-1).to(wide)).exp();
      auto dv = at::matmul(p.transpose(-1, -2), d);
      auto dp = at::matmul(d, vv.transpose(-1, -2));
      auto row = (d * out.to(wide)).sum(-1, true);
      auto ds = p * (dp - row);
      auto dq = at::matmul(ds, kk) * scale;
      auto dk = at::matmul(ds.transpose(-1, -2), qf) * scale;
      const auto kv = k.size(1);
      return {dq.to(q.scalar_type()), reduce_heads(dk, kv).to(k.scalar_type()), reduce_heads(dv, kv).to(v.scalar_type())};
    }
  }
}

// How the queries [B, H, L, D] meet one part's keys [Bk, Hkv, S, D].
struct Fold {
  int64_t b, h, l, d;  // queries
  int64_t bk, hkv;     // keys
  bool folded;         // rows and query heads per KV head folded into the query length

  Fold(const at::Tensor& q, const at::Tensor& k, bool causal) {
    b = q.size(0), h = q.size(1), l = q.size(2), d = q.size(3);
    if (k.dim() != 4 || k.size(3) != d) throw std::runtime_error("attention: keys must be [B, heads, S, head_dim]");
    bk = k.size(0), hkv = k.size(1);
    if (h % hkv != 0) throw std::runtime_error("attention: KV heads must divide query heads");
    if (bk != b && bk != 1) throw std::runtime_error("attention: a part's batch must be the queries' or 1");
    if (k.size(2) == 0) throw std::runtime_error("attention: a key part is empty");
    if (causal && (bk != b || k.size(2) != l))
      throw std::runtime_error("attention: a causal part must hold the queries' own tokens");
    folded = !causal && (b != bk || h != hkv);
  }

  // [B, H, L(, D)] -> [Bk, Hkv, (B/Bk) * (H/Hkv) * L(, D)]: rows and grouped heads into the length.
  at::Tensor in(const at::Tensor& t) const {
    if (!folded) return t;
    return regroup(t, {bk, b / bk, hkv, h / hkv, l}, {bk, hkv, (b / bk) * (h / hkv) * l});
  }

  // The inverse of `in`.
  at::Tensor out(const at::Tensor& t) const {
    if (!folded) return t;
    return regroup(t, {bk, hkv, b / bk, h / hkv, l}, {b, h, l});
  }

 private:
  // View as `split` (plus the head dim of 4-d tensors), swap axes 1 and 2, reshape to `merged`.
  at::Tensor regroup(const at::Tensor& t, std::vector<int64_t> split, std::vector<int64_t> merged) const {
    if (t.dim() == 4) {
      split.push_back(d);
      merged.push_back(d);
    }
    return t.reshape(split).transpose(1, 2).reshape(merged);
  }
};

bool is_causal(int64_t mask, size_t part) { return ((mask >> part) & 1) != 0; }

// The merged attention of all parts: (output, log-sum-exp).
std::tuple<at::Tensor, at::Tensor> merged_forward(Kernel kernel, const at::Tensor& q, const variable_list& all,
                                                  size_t n_parts, int64_t causal, double scale) {
  std::vector<at::Tensor> outs, lses;
  for (size_t i = 0; i < n_parts; ++i) {
    const bool c = is_causal(causal, i);
    const auto& k = all[1 + 2 * i];
    const auto& v = all[2 + 2 * i];
    Fold fold(q, k, c);
    auto [o, l] = part_forward(kernel, fold.in(q), k, v, c, scale);
    outs.push_back(fold.out(o));
    lses.push_back(fold.out(l));
  }
  if (n_parts == 1) return {outs[0], lses[0]};
  // Merged in float32, or float64 for float64 queries.
  const auto wide = at::promote_types(q.scalar_type(), at::kFloat);
  auto lse = at::stack(lses, 0).logsumexp(0);
  at::Tensor acc;
  for (size_t i = 0; i < n_parts; ++i) {
    auto part = outs[i].to(wide) * (lses[i] - lse).exp().unsqueeze(-1).to(wide);
    acc = acc.defined() ? acc + part : part;
  }
  return {acc.to(q.scalar_type()), lse};
}

struct PartsAttention : torch::autograd::Function<PartsAttention> {
  // `all` = [q, k_0, v_0, k_1, v_1, ...]; bit i of `causal` marks part i causal.
  static variable_list forward(AutogradContext* ctx, int64_t kernel, int64_t causal, double scale,
                               at::TensorList all) {
    const size_t n_parts = (all.size() - 1) / 2;
    variable_list tensors = all.vec();
    auto [out, lse] = merged_forward(static_cast<Kernel>(kernel), tensors[0], tensors, n_parts, causal, scale);
    tensors.push_back(out);
    tensors.push_back(lse);
    ctx->save_for_backward(tensors);
    ctx->saved_data["kernel"] = kernel;
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["scale"] = scale;
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list saved = ctx->get_saved_variables();
    const auto kernel = static_cast<Kernel>(ctx->saved_data["kernel"].toInt());
    const int64_t causal = ctx->saved_data["causal"].toInt();
    const double scale = ctx->saved_data["scale"].toDouble();
    const size_t n_all = saved.size() - 2;
    const size_t n_parts = (n_all - 1) / 2;
    const auto& q = saved[0];
    const auto& out = saved[n_all];
    const auto& lse = saved[n_all + 1];
    // Three leading non-tensor arguments of forward (kernel, causal, scale) get no gradient.
    variable_list grads(3 + n_all);
    const auto& dout = grad_outputs[0];
    if (!dout.defined()) return grads;
    at::Tensor dq;
    for (size_t i = 0; i < n_parts; ++i) {
      const bool c = is_causal(causal, i);
      const auto& k = saved[1 + 2 * i];
      const auto& v = saved[2 + 2 * i];
      Fold fold(q, k, c);
      auto [gq, gk, gv] =
          part_backward(kernel, fold.in(dout.contiguous()), fold.in(q), k, v, fold.in(out), fold.in(lse), c, scale);
      gq = fold.out(gq);
      dq = dq.defined() ? dq + gq : gq;
      grads[3 + 1 + 2 * i] = gk;
      grads[3 + 2 + 2 * i] = gv;
    }
    grads[3] = dq;
    return grads;
  }
};

}  // namespace

extern "C" {

// The kernel `longrl_attention` picks for queries like `q` (0 CPU flash, 1 CUDA flash, 2 math).
int longrl_attention_kernel(void* q) { return auto_kernel(*static_cast<at::Tensor*>(q)); }

// Merged attention of `q` over `n_parts` parts (`ks[i]`, `vs[i]`, causal when bit i of `causal`)
// with `kernel` (-1: the one `longrl_attention_kernel` names); an owned output tensor in `out`.
// Differentiable when grad mode is on.
int longrl_attention(void* q, int n_parts, void* const* ks, void* const* vs, int64_t causal, double scale, int kernel,
                     void** out, char* err, size_t err_len) {
  return longrl::ffi_guard("attention: unknown C++ exception", err, err_len, [&] {
    if (n_parts < 1 || n_parts > 62) throw std::runtime_error("attention: between 1 and 62 key parts");
    std::vector<at::Tensor> all;
    all.push_back(*static_cast<at::Tensor*>(q));
    for (int i = 0; i < n_parts; ++i) {
      all.push_back(*static_cast<at::Tensor*>(ks[i]));
      all.push_back(*static_cast<at::Tensor*>(vs[i]));
    }
    if (all[0].dim() != 4) throw std::runtime_error("attention: queries must be [B, heads, L, head_dim]");
    const int64_t chosen = kernel < 0 ? auto_kernel(all[0]) : kernel;
    if (chosen == kCpuFlash && !all[0].device().is_cpu()) throw std::runtime_error("attention: CPU flash needs CPU tensors");
    if (chosen == kCudaFlash && !all[0].device().is_cuda())
      throw std::runtime_error("attention: CUDA flash needs CUDA tensors");
    variable_list result = PartsAttention::apply(chosen, causal, scale, at::TensorList(all));
    *out = new at::Tensor(std::move(result[0]));
  });
}

}  // extern "C"
