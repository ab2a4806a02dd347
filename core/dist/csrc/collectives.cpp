// The collectives over a group. Tensors reach the backend as detached aliases under grad mode
// (what the autograd functions need: Gloo copies on its own thread, see autograd.cpp), and a
// group of one process answers every collective locally, so callers never special-case it.

#include <numeric>

#include "group.h"

namespace longrl::dist {

namespace {

// Starts a backend call and waits for it. Grad mode is on for the call, as in scale-out.md's
// working probe: Gloo re-enters the caller's thread-local state on its worker thread and copies
// into views of our outputs there. An error raised while the call is being set up, before any
// peer is involved, is this rank's mistake (dtype, shape); distributed errors and everything
// after the start are communication failures.
template <class Start>
void submit(Group& g, Start&& start) {
  at::AutoGradMode grad(true);
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = start();
  } catch (const c10::DistError&) {
    throw;
  } catch (const c10::Error& e) {
    throw UsageError(e.what_without_backtrace());
  }
  g.wait(work);
}

const char* reduce_name(Reduce op) {
  switch (op) {
    case Reduce::Sum: return "sum";
    case Reduce::Avg: return "avg";
    case Reduce::Max: return "max";
    case Reduce::Min: return "min";
  }
  return "?";
}

// Avg is a sum divided by the group size: Gloo has no AVG, and one code path keeps CPU and CUDA
// results identical.
c10d::ReduceOp c10d_op(Reduce op) {
  switch (op) {
    case Reduce::Max: return c10d::ReduceOp::MAX;
    case Reduce::Min: return c10d::ReduceOp::MIN;
    default: return c10d::ReduceOp::SUM;
  }
}

void finish_avg(Group& g, at::Tensor& t, Reduce op) {
  if (op == Reduce::Avg && g.size > 1) t.div_(g.size);
}

void check_tensor(const Group& g, const at::Tensor& t, const char* what) {
  if (!t.defined()) throw UsageError(std::string(what) + " is undefined");
  if (t.is_sparse()) throw UsageError(std::string(what) + " is sparse; collectives take dense tensors");
  if (t.device().type() != g.device.type())
    throw UsageError(std::string(what) + " is on " + t.device().str() + " but the group works on " +
                     g.device.str());
}

void check_in_place(const Group& g, const at::Tensor& t) {
  check_tensor(g, t, "the tensor");
  if (!t.is_contiguous())
    throw UsageError("the tensor is not contiguous; an in-place collective needs contiguous memory");
}

void check_avg(const at::Tensor& t, Reduce op) {
  if (op == Reduce::Avg && !at::isFloatingType(t.scalar_type()) && !at::isComplexType(t.scalar_type()))
    throw UsageError(std::string("avg needs a floating-point tensor, got ") + c10::toString(t.scalar_type()));
}

std::vector<int64_t> with_first_dim(const at::Tensor& t, int64_t rows) {
  std::vector<int64_t> shape = t.sizes().vec();
  if (shape.empty()) shape.push_back(rows);
  else shape[0] = rows;
  return shape;
}

int64_t rows(const at::Tensor& t) { return t.dim() == 0 ? 1 : t.size(0); }

void check_splits(const std::vector<int64_t>& splits, int size, int64_t total, const char* which) {
  if (static_cast<int>(splits.size()) != size)
    throw UsageError(std::string(which) + " has " + std::to_string(splits.size()) + " entries; the group has " +
                     std::to_string(size) + " ranks");
  int64_t sum = 0;
  for (int64_t s : splits) {
    if (s < 0) throw UsageError(std::string(which) + " has a negative entry");
    sum += s;
  }
  if (sum != total)
    throw UsageError(std::string(which) + " sum to " + std::to_string(sum) + " rows, the tensor has " +
                     std::to_string(total));
}

}  // namespace

void all_reduce(Group& g, at::Tensor& t, Reduce op) {
  std::string name = std::string("all_reduce(") + reduce_name(op) + ")";
  g.run(name.c_str(), [&] {
    check_in_place(g, t);
    check_avg(t, op);
    if (g.size == 1) return;
    std::vector<at::Tensor> tensors{t.detach()};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d_op(op);
    options.timeout = g.timeout();
    submit(g, [&] { return g.backend->allreduce(tensors, options); });
    finish_avg(g, t, op);
  });
}

void broadcast(Group& g, at::Tensor& t, int root) {
  g.run("broadcast", [&] {
    check_in_place(g, t);
    if (root < 0 || root >= g.size)
      throw UsageError("root " + std::to_string(root) + " is not a rank of the group (size " +
                       std::to_string(g.size) + ")");
    if (g.size == 1) return;
    std::vector<at::Tensor> tensors{t.detach()};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.timeout = g.timeout();
    submit(g, [&] { return g.backend->broadcast(tensors, options); });
  });
}

at::Tensor all_gather(Group& g, const at::Tensor& input) {
  return g.run("all_gather", [&] {
    check_tensor(g, input, "the input");
    at::Tensor in = input.detach().contiguous();
    if (in.dim() == 0) in = in.reshape({1});
    at::Tensor out = at::empty(with_first_dim(in, rows(in) * g.size), in.options());
    if (g.size == 1) return out.copy_(in);
    c10d::AllgatherOptions options;
    options.timeout = g.timeout();
    submit(g, [&] { return g.backend->_allgather_base(out, in, options); });
    return out;
  });
}

at::Tensor reduce_scatter(Group& g, const at::Tensor& input, Reduce op) {
  std::string name = std::string("reduce_scatter(") + reduce_name(op) + ")";
  return g.run(name.c_str(), [&] {
    check_tensor(g, input, "the input");
    check_avg(input, op);
    if (input.dim() == 0 || input.size(0) % g.size != 0)
      throw UsageError("the input's first dimension (" + std::to_string(rows(input)) +
                       ") is not a multiple of the group size " + std::to_string(g.size));
    at::Tensor in = input.detach().contiguous();
    at::Tensor out = at::empty(with_first_dim(in, in.size(0) / g.size), in.options());
    if (g.size == 1) return out.copy_(in);
    c10d::ReduceScatterOptions options;
    options.reduceOp = c10d_op(op);
    options.timeout = g.timeout();
    submit(g, [&] { return g.backend->_reduce_scatter_base(out, in, options); });
    finish_avg(g, out, op);
    return out;
  });
}

at::Tensor all_to_all(Group& g, const at::Tensor& input, std::vector<int64_t>& output_splits,
                      std::vector<int64_t>& input_splits) {
  return g.run("all_to_all", [&]() -> at::Tensor {
    check_tensor(g, input, "the input");
    if (input.dim() == 0) throw UsageError("the input is a scalar; all_to_all splits the first dimension");
    at::Tensor in = input.detach().contiguous();
    const int64_t n = in.size(0);
    const bool equal_shares = input_splits.empty() && output_splits.empty();
    if (input_splits.empty()) {
      if (n % g.size != 0)
        throw UsageError("without input splits the first dimension (" + std::to_string(n) +
                         ") must be a multiple of the group size " + std::to_string(g.size));
      input_splits.assign(static_cast<size_t>(g.size), n / g.size);
    }
    check_splits(input_splits, g.size, n, "the input splits");
    if (equal_shares) {
      // Every rank sends equal shares of a tensor of the same shape, so it receives as much.
      output_splits = input_splits;
    } else if (output_splits.empty()) {
      // Learn what every peer sends here: one small all_to_all of the split sizes.
      at::Tensor sizes = at::tensor(input_splits, at::TensorOptions().dtype(at::kLong)).to(g.device);
      at::Tensor received = at::empty_like(sizes);
      if (g.size == 1) {
        received.copy_(sizes);
      } else {
        std::vector<int64_t> ones_out(static_cast<size_t>(g.size), 1), ones_in = ones_out;
        c10d::AllToAllOptions options;
        options.timeout = g.timeout();
        submit(g, [&] { return g.backend->alltoall_base(received, sizes, ones_out, ones_in, options); });
      }
      at::Tensor host = received.cpu();
      output_splits.assign(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + g.size);
    } else if (static_cast<int>(output_splits.size()) != g.size) {
      throw UsageError("the output splits have " + std::to_string(output_splits.size()) +
                       " entries; the group has " + std::to_string(g.size) + " ranks");
    }
    for (int64_t s : output_splits)
      if (s < 0) throw UsageError("the output splits have a negative entry");
    int64_t total = std::accumulate(output_splits.begin(), output_splits.end(), int64_t{0});
    at::Tensor out = at::empty(with_first_dim(in, total), in.options());
    if (g.size == 1) {
      check_splits(output_splits, 1, n, "the output splits");
      return out.copy_(in);
    }
    c10d::AllToAllOptions options;
    options.timeout = g.timeout();
    // Copies: the backend takes the split vectors by non-const reference and may move from them
    // (Gloo does), while the caller keeps ours (the autograd node saves them for backward).
    std::vector<int64_t> outs = output_splits, ins = input_splits;
    submit(g, [&] { return g.backend->alltoall_base(out, in, outs, ins, options); });
    return out;
  });
}

void barrier(Group& g) {
  g.run("barrier", [&] {
    if (g.size == 1) return;
    c10d::BarrierOptions options;
    options.timeout = g.timeout();
    if (g.kind == BackendKind::Nccl) {
      options.device_ids = {g.device.index()};
      options.device = g.device;
    }
    submit(g, [&] { return g.backend->barrier(options); });
  });
}

}  // namespace longrl::dist
