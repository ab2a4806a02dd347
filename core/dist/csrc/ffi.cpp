// The C entry points behind `src/ffi.rs`. A group crosses as an owned `GroupPtr*` (freed by
// `longrl_dist_group_free`), tensors as `at::Tensor*` (tch's `C_tensor`): inputs are borrowed,
// outputs are new heap tensors that Rust takes over. Every entry point returns 0 on success, or
// 1 with a message in `err` (ffi_guard.h); none throws.

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "ffi_guard.h"
#include "group.h"

using longrl::dist::BackendKind;
using longrl::dist::ffi_guard;
using longrl::dist::GroupPtr;
using longrl::dist::Reduce;

namespace {

longrl::dist::Group& group(void* handle) { return **static_cast<GroupPtr*>(handle); }
at::Tensor& tensor(void* handle) { return *static_cast<at::Tensor*>(handle); }

void give(void** out, at::Tensor t) { *out = new at::Tensor(std::move(t)); }
void give(void** out, GroupPtr g) { *out = g ? new GroupPtr(std::move(g)) : nullptr; }

std::vector<int64_t> splits(const int64_t* values, int n) {
  return n > 0 ? std::vector<int64_t>(values, values + n) : std::vector<int64_t>{};
}

}  // namespace

extern "C" {

// Joins the world group: connects to (or, when `store_host == rank`, serves) the TCPStore at
// host:port, then forms the backend's rendezvous with every other rank.
int longrl_dist_init(const char* host, int port, int store_host, const char* prefix, int rank, int world_size,
                     int backend, int device_index, int64_t timeout_ms, void** out, char* err, size_t err_len) {
  std::string context = "rank " + std::to_string(rank) + " of " + std::to_string(world_size) + ": rendezvous at " +
                        host + ":" + std::to_string(port) + ": ";
  return ffi_guard(context, err, err_len, [&] {
    longrl::dist::Rendezvous rdzv{host, port, store_host, prefix};
    give(out, longrl::dist::init_world(rdzv, rank, world_size, static_cast<BackendKind>(backend), device_index,
                                       std::chrono::milliseconds(timeout_ms)));
  });
}

// A world of one process: no store, every collective answered locally.
int longrl_dist_single(int backend, int device_index, void** out, char* err, size_t err_len) {
  return ffi_guard("single-process group: ", err, err_len,
                   [&] { give(out, longrl::dist::single(static_cast<BackendKind>(backend), device_index)); });
}

// `members`: ranks of the parent group. `*out` is null on ranks that are not members.
int longrl_dist_split(void* parent, const int64_t* members, int n, void** out, char* err, size_t err_len) {
  return ffi_guard(group(parent).where("split"), err, err_len,
                   [&] { give(out, longrl::dist::split(group(parent), splits(members, n))); });
}

void longrl_dist_group_free(void* handle) { delete static_cast<GroupPtr*>(handle); }
int longrl_dist_group_rank(void* handle) { return group(handle).rank; }
int longrl_dist_group_size(void* handle) { return group(handle).size; }

int longrl_dist_all_reduce(void* g, void* t, int op, char* err, size_t err_len) {
  return ffi_guard("", err, err_len, [&] { longrl::dist::all_reduce(group(g), tensor(t), static_cast<Reduce>(op)); });
}

int longrl_dist_broadcast(void* g, void* t, int root, char* err, size_t err_len) {
  return ffi_guard("", err, err_len, [&] { longrl::dist::broadcast(group(g), tensor(t), root); });
}

int longrl_dist_all_gather(void* g, void* input, int autograd, void** out, char* err, size_t err_len) {
  return ffi_guard("", err, err_len, [&] {
    auto& handle = *static_cast<GroupPtr*>(g);
    give(out, autograd != 0 ? longrl::dist::all_gather_autograd(handle, tensor(input))
                            : longrl::dist::all_gather(*handle, tensor(input)));
  });
}

int longrl_dist_reduce_scatter(void* g, void* input, int op, int autograd, void** out, char* err, size_t err_len) {
  return ffi_guard("", err, err_len, [&] {
    auto& handle = *static_cast<GroupPtr*>(g);
    give(out, autograd != 0 ? longrl::dist::reduce_scatter_autograd(handle, tensor(input))
                            : longrl::dist::reduce_scatter(*handle, tensor(input), static_cast<Reduce>(op)));
  });
}

// Empty splits: equal shares (input) or exchanged with the peers (output).
int longrl_dist_all_to_all(void* g, void* input, const int64_t* output_splits, int n_output,
                           const int64_t* input_splits, int n_input, int autograd, void** out, char* err,
                           size_t err_len) {
  return ffi_guard("", err, err_len, [&] {
    auto& handle = *static_cast<GroupPtr*>(g);
    auto outs = splits(output_splits, n_output);
    auto ins = splits(input_splits, n_input);
    give(out, autograd != 0 ? longrl::dist::all_to_all_autograd(handle, tensor(input), outs, ins)
                            : longrl::dist::all_to_all(*handle, tensor(input), outs, ins));
  });
}

int longrl_dist_barrier(void* g, char* err, size_t err_len) {
  return ffi_guard("", err, err_len, [&] { longrl::dist::barrier(group(g)); });
}

// A TCPStore server that waits for no one, as torchrun's elastic agent hosts it; kept alive until
// `longrl_dist_store_free`.
int longrl_dist_store_serve(const char* host, int port, int64_t timeout_ms, void** out, char* err, size_t err_len) {
  std::string context = std::string("store server at ") + host + ":" + std::to_string(port) + ": ";
  return ffi_guard(context, err, err_len, [&] {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = true;
    options.waitWorkers = false;
    options.multiTenant = true;
    options.timeout = std::chrono::milliseconds(timeout_ms);
    *out = new c10::intrusive_ptr<c10d::TCPStore>(c10::make_intrusive<c10d::TCPStore>(host, options));
  });
}

void longrl_dist_store_free(void* store) { delete static_cast<c10::intrusive_ptr<c10d::TCPStore>*>(store); }

}  // extern "C"
