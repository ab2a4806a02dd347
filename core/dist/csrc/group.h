// The process-group layer of longrl-dist: a group of ranks over one c10d backend (Gloo on CPU,
// NCCL on CUDA), the store and heartbeat every group of a process shares, and the collectives.
//
// Every collective checks its arguments first and throws `UsageError` for a call that is wrong on
// this rank alone; any failure once the backend runs is a communication failure: the group is
// marked failed (later calls fail at once with the same message) and the message says which ranks
// stopped sending heartbeats, so "rank 1 is lost" reaches the caller instead of a bare socket error.

#pragma once

#include <ATen/ATen.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace longrl::dist {

// A call that is wrong on this rank alone (shape, dtype, split sizes): no peer took part, so the
// group stays usable and no peer diagnosis runs.
struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// A collective (or the rendezvous) failed once it involved peers.
struct CommError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Reduce : int { Sum = 0, Avg = 1, Max = 2, Min = 3 };
enum class BackendKind : int { Gloo = 1, Nccl = 2 };

// Where the store runs and how to reach it; `store_host` is the global rank hosting it, or -1
// when the launcher's agent does (torchrun with TORCHELASTIC_USE_AGENT_STORE=True).
struct Rendezvous {
  std::string host;
  int port;
  int store_host;
  std::string prefix;  // "longrl/<restart count>": our keys never meet the agent's
};

// What all groups of one process share: the store and the heartbeat thread. Each rank adds 1 to
// "heartbeat/<rank>" every `kHeartbeat`; a rank whose counter stands still is lost.
struct Runtime : c10::intrusive_ptr_target {
  Rendezvous rdzv;
  int global_rank;
  int world_size;
  BackendKind kind;
  at::Device device;
  std::chrono::milliseconds timeout;
  c10::intrusive_ptr<c10d::Store> tcp;    // the TCPStore (server on the store host, else client)
  c10::intrusive_ptr<c10d::Store> store;  // PrefixStore(rdzv.prefix, tcp)
  std::shared_ptr<void> gloo_device;      // gloo::transport::Device, opaque here

  Runtime(Rendezvous rdzv, int global_rank, int world_size, BackendKind kind, at::Device device,
          std::chrono::milliseconds timeout);
  ~Runtime() override;
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Names the lost ranks among `ranks` (global ranks): watches their heartbeats for a few
  // intervals. Returns a sentence for an error message; never throws.
  std::string diagnose(const std::vector<int>& ranks) const;

 private:
  void beat();
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread heartbeat_;
};

struct Group : torch::CustomClassHolder {
  c10::intrusive_ptr<Runtime> rt;             // null for a world of one process
  c10::intrusive_ptr<c10d::Backend> backend;  // null when size == 1
  std::string name;
  int rank = 0;
  int size = 1;
  std::vector<int> ranks;  // the global rank of each member
  BackendKind kind = BackendKind::Gloo;
  at::Device device = at::Device(at::kCPU);
  int64_t splits_made = 0;

  // Runs `body` as collective `op`: argument errors pass through as `UsageError`; any other error
  // marks the group failed and becomes a `CommError` naming this rank, the op and the lost ranks.
  template <class Body>
  auto run(const char* op, Body&& body) -> decltype(body()) {
    check_usable(op);
    try {
      return body();
    } catch (const UsageError& e) {
      throw UsageError(where(op) + e.what());
    } catch (const c10::Error& e) {
      fail(op, e.what_without_backtrace());
    } catch (const std::exception& e) {
      fail(op, e.what());
    }
  }

  std::string where(const char* op) const;
  std::chrono::milliseconds timeout() const;
  // Waits for `work` within the timeout (CPU backends); NCCL work is ordered on the stream.
  void wait(const c10::intrusive_ptr<c10d::Work>& work) const;

 private:
  void check_usable(const char* op);
  [[noreturn]] void fail(const char* op, const std::string& detail);
  std::mutex mu_;
  std::string failure_;
};

using GroupPtr = c10::intrusive_ptr<Group>;

// Group creation (group.cpp).
GroupPtr init_world(const Rendezvous& rdzv, int rank, int world_size, BackendKind kind, int device_index,
                    std::chrono::milliseconds timeout);
GroupPtr single(BackendKind kind, int device_index);
// Every member of `parent` calls this with the same `members` (ranks of `parent`), in the same
// order relative to other splits; non-members get null.
GroupPtr split(Group& parent, const std::vector<int64_t>& members);

// Collectives (collectives.cpp). Tensors returned are new; `all_reduce` and `broadcast` work in place.
void all_reduce(Group& g, at::Tensor& t, Reduce op);
void broadcast(Group& g, at::Tensor& t, int root);
at::Tensor all_gather(Group& g, const at::Tensor& input);
at::Tensor reduce_scatter(Group& g, const at::Tensor& input, Reduce op);
// Empty splits mean equal shares of the first dimension (input) or "ask the peers" (output); on
// return both hold the splits used.
at::Tensor all_to_all(Group& g, const at::Tensor& input, std::vector<int64_t>& output_splits,
                      std::vector<int64_t>& input_splits);
void barrier(Group& g);

// Autograd-aware collectives (autograd.cpp): gradients flow through them to `input`.
at::Tensor all_gather_autograd(const GroupPtr& g, const at::Tensor& input);
at::Tensor reduce_scatter_autograd(const GroupPtr& g, const at::Tensor& input);
at::Tensor all_to_all_autograd(const GroupPtr& g, const at::Tensor& input, std::vector<int64_t> output_splits,
                               std::vector<int64_t> input_splits);

// Backend factories: gloo.cpp always, nccl.cpp with the `cuda` feature.
std::shared_ptr<void> gloo_device(const std::string& master_host);
c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                            const std::shared_ptr<void>& device, std::chrono::milliseconds timeout);
c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                            at::Device device, std::chrono::milliseconds timeout);

}  // namespace longrl::dist
