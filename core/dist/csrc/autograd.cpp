// Autograd-aware collectives: the project's own torch::autograd::Functions around the plain
// collectives, because torch's `_c10d_functional_autograd` ops abort over Gloo in a plain C++
// program (scale-out.md F1.6). The group travels in the node as a capsule, so the backward
// collective runs on the same group, in the order backward reaches the nodes, which is the same
// on every rank when every rank builds the same graph.
//
// Gradient convention: the loss is the sum of every rank's loss. all_gather's output feeds every
// rank's loss, so the gradient of a rank's input is the sum over ranks of their gradients for
// its slice: a reduce-scatter (sum). reduce_scatter's backward is then an all-gather, and
// all_to_all's the all_to_all with the splits swapped.

#include <torch/csrc/autograd/custom_function.h>

#include "group.h"

namespace longrl::dist {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

GroupPtr group_of(AutogradContext* ctx) {
  return c10::static_intrusive_pointer_cast<Group>(ctx->saved_data["group"].toCapsule());
}

void keep_group(AutogradContext* ctx, const GroupPtr& g) {
  ctx->saved_data["group"] = at::IValue::make_capsule(g);
}

struct AllGather : torch::autograd::Function<AllGather> {
  static at::Tensor forward(AutogradContext* ctx, GroupPtr g, const at::Tensor& input) {
    keep_group(ctx, g);
    return all_gather(*g, input);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {at::Tensor(), reduce_scatter(*group_of(ctx), grads[0], Reduce::Sum)};
  }
};

struct ReduceScatter : torch::autograd::Function<ReduceScatter> {
  static at::Tensor forward(AutogradContext* ctx, GroupPtr g, const at::Tensor& input) {
    keep_group(ctx, g);
    return reduce_scatter(*g, input, Reduce::Sum);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {at::Tensor(), all_gather(*group_of(ctx), grads[0])};
  }
};

struct AllToAll : torch::autograd::Function<AllToAll> {
  static at::Tensor forward(AutogradContext* ctx, GroupPtr g, const at::Tensor& input,
                            std::vector<int64_t> output_splits, std::vector<int64_t> input_splits) {
    keep_group(ctx, g);
    at::Tensor out = all_to_all(*g, input, output_splits, input_splits);
    // The splits as resolved (equal or exchanged), so backward needs no size exchange.
    ctx->saved_data["input_splits"] = input_splits;
    ctx->saved_data["output_splits"] = output_splits;
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto sent = ctx->saved_data["input_splits"].toIntVector();
    auto received = ctx->saved_data["output_splits"].toIntVector();
    at::Tensor grad = all_to_all(*group_of(ctx), grads[0], sent, received);
    return {at::Tensor(), grad, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor all_gather_autograd(const GroupPtr& g, const at::Tensor& input) { return AllGather::apply(g, input); }

at::Tensor reduce_scatter_autograd(const GroupPtr& g, const at::Tensor& input) {
  return ReduceScatter::apply(g, input);
}

at::Tensor all_to_all_autograd(const GroupPtr& g, const at::Tensor& input, std::vector<int64_t> output_splits,
                               std::vector<int64_t> input_splits) {
  return AllToAll::apply(g, input, std::move(output_splits), std::move(input_splits));
}

}  // namespace longrl::dist
