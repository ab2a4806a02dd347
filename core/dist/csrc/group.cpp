// Group creation (the store, the world group, sub-groups) and the failure handling every
// collective shares: a failed group stays failed, and its message names the lost ranks.

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <set>
#include <sstream>

#include "group.h"

namespace longrl::dist {

namespace {

constexpr std::chrono::milliseconds kHeartbeat{1000};
// A rank whose counter has not moved for this long is lost: well over two beats, so a beat
// delayed by a loaded machine is not mistaken for a death.
constexpr std::chrono::milliseconds kLostAfter{3000};
// The heartbeat's store calls: short, so a group's end never waits long on a hung store.
constexpr std::chrono::milliseconds kHeartbeatStoreTimeout{5000};

std::string seconds(std::chrono::milliseconds ms) {
  std::ostringstream s;
  s << static_cast<double>(ms.count()) / 1000.0 << " s";
  return s.str();
}

std::string list(const std::vector<int>& ranks) {
  std::ostringstream s;
  for (size_t i = 0; i < ranks.size(); ++i) s << (i == 0 ? "" : ", ") << ranks[i];
  return s.str();
}

std::string heartbeat_key(int rank) { return "heartbeat/" + std::to_string(rank); }

at::Device device_for(BackendKind kind, int device_index) {
  if (kind == BackendKind::Nccl) return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index));
  return at::Device(at::kCPU);
}

c10::intrusive_ptr<c10d::Backend> make_backend(const Runtime& rt, const c10::intrusive_ptr<c10d::Store>& store,
                                               int rank, int size) {
  if (rt.kind == BackendKind::Nccl) return make_nccl(store, rank, size, rt.device, rt.timeout);
  return make_gloo(store, rank, size, rt.gloo_device, rt.timeout);
}

}  // namespace

#ifndef LONGRL_DIST_NCCL
c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>&, int, int, at::Device,
                                            std::chrono::milliseconds) {
  throw UsageError("this build of longrl-dist has no NCCL backend: build with the `cuda` feature "
                   "(after `cargo xtask setup --cuda`)");
}
#endif

Runtime::Runtime(Rendezvous rdzv_, int global_rank_, int world_size_, BackendKind kind_, at::Device device_,
                 std::chrono::milliseconds timeout_)
    : rdzv(std::move(rdzv_)),
      global_rank(global_rank_),
      world_size(world_size_),
      kind(kind_),
      device(device_),
      timeout(timeout_) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(rdzv.port);
  options.isServer = rdzv.store_host == global_rank;
  // As torch.distributed does: every rank counts itself in, and the store's host waits for all.
  options.numWorkers = static_cast<size_t>(world_size);
  options.waitWorkers = true;
  options.timeout = timeout;
  tcp = c10::make_intrusive<c10d::TCPStore>(rdzv.host, options);
  store = c10::make_intrusive<c10d::PrefixStore>(rdzv.prefix, tcp);
  if (kind == BackendKind::Gloo) gloo_device = longrl::dist::gloo_device(rdzv.host);
  heartbeat_ = std::thread([this] { beat(); });
}

Runtime::~Runtime() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
}

void Runtime::beat() {
  try {
    // A connection of its own, so a beat never waits behind the collectives' store calls.
    auto tcp_clone = tcp->clone();
    tcp_clone->setTimeout(kHeartbeatStoreTimeout);
    auto beats = c10::make_intrusive<c10d::PrefixStore>(rdzv.prefix, tcp_clone);
    const std::string key = heartbeat_key(global_rank);
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      lock.unlock();
      beats->add(key, 1);
      lock.lock();
      cv_.wait_for(lock, kHeartbeat, [this] { return stop_; });
    }
  } catch (...) {
    // The store is gone (its host died or the job ends): a failing collective's diagnosis says so.
  }
}

std::string Runtime::diagnose(const std::vector<int>& ranks) const {
  std::vector<int> peers;
  for (int r : ranks)
    if (r != global_rank) peers.push_back(r);
  try {
    // The established connection: when the store's host is dead it fails at once, where a new
    // connection would retry until the store timeout.
    std::vector<int64_t> before;
    for (int r : peers) before.push_back(store->add(heartbeat_key(r), 0));
    std::this_thread::sleep_for(kLostAfter);
    std::vector<int> lost;
    for (size_t i = 0; i < peers.size(); ++i)
      if (store->add(heartbeat_key(peers[i]), 0) == before[i]) lost.push_back(peers[i]);
    if (lost.empty())
      return "every other rank of the group is alive (heartbeats advancing): the ranks called different "
             "collectives, or one is too slow for the timeout";
    return std::string(lost.size() == 1 ? "lost rank " : "lost ranks ") + list(lost) + " (no heartbeat for " +
           seconds(kLostAfter) + ")";
  } catch (const std::exception& e) {
    std::string store_at = "the store at " + rdzv.host + ":" + std::to_string(rdzv.port);
    if (rdzv.store_host >= 0 && rdzv.store_host != global_rank)
      return "lost rank " + std::to_string(rdzv.store_host) + ": it hosts " + store_at + ", which no longer answers";
    return store_at + " no longer answers, so the lost ranks cannot be named";
  }
}

std::string Group::where(const char* op) const {
  std::ostringstream s;
  s << "rank " << (rt ? rt->global_rank : 0);
  if (name != "world") s << " (rank " << rank << " of group " << name << ")";
  s << " of " << (rt ? rt->world_size : 1) << ": " << op << ": ";
  return s.str();
}

std::chrono::milliseconds Group::timeout() const { return rt ? rt->timeout : std::chrono::milliseconds(0); }

void Group::wait(const c10::intrusive_ptr<c10d::Work>& work) const {
  if (kind == BackendKind::Nccl) {
    work->wait();  // orders the current stream after the collective; the watchdog enforces the timeout
  } else if (!work->wait(timeout())) {
    throw CommError("not finished within the timeout of " + seconds(timeout()));
  }
}

void Group::check_usable(const char* op) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failure_.empty()) throw CommError(where(op) + "not run: this group failed before: " + failure_);
}

void Group::fail(const char* op, const std::string& detail) {
  std::string message = detail;
  if (rt) message += "; " + rt->diagnose(ranks);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (failure_.empty()) failure_ = std::string(op) + ": " + message;
  }
  throw CommError(where(op) + message);
}

GroupPtr init_world(const Rendezvous& rdzv, int rank, int world_size, BackendKind kind, int device_index,
                    std::chrono::milliseconds timeout) {
  auto group = c10::make_intrusive<Group>();
  group->name = "world";
  group->rank = rank;
  group->size = world_size;
  group->kind = kind;
  group->device = device_for(kind, device_index);
  for (int r = 0; r < world_size; ++r) group->ranks.push_back(r);
  group->rt = c10::make_intrusive<Runtime>(rdzv, rank, world_size, kind, group->device, timeout);
  auto store = c10::make_intrusive<c10d::PrefixStore>("group/world", group->rt->store);
  group->backend = make_backend(*group->rt, store, rank, world_size);
  return group;
}

GroupPtr single(BackendKind kind, int device_index) {
  auto group = c10::make_intrusive<Group>();
  group->name = "world";
  group->kind = kind;
  group->device = device_for(kind, device_index);
  group->ranks = {0};
  return group;
}

GroupPtr split(Group& parent, const std::vector<int64_t>& members) {
  if (members.empty()) throw UsageError("split: the member list is empty");
  std::set<int64_t> seen;
  for (int64_t m : members) {
    if (m < 0 || m >= parent.size)
      throw UsageError("split: rank " + std::to_string(m) + " is not in group " + parent.name + " of size " +
                       std::to_string(parent.size));
    if (!seen.insert(m).second) throw UsageError("split: rank " + std::to_string(m) + " is listed twice");
  }
  // Counted on every member, so all of them agree on the name whether or not they join.
  const std::string name = parent.name + "/" + std::to_string(parent.splits_made++);
  auto at = std::find(members.begin(), members.end(), static_cast<int64_t>(parent.rank));
  if (at == members.end()) return {};
  auto group = c10::make_intrusive<Group>();
  group->rt = parent.rt;
  group->name = name;
  group->rank = static_cast<int>(at - members.begin());
  group->size = static_cast<int>(members.size());
  group->kind = parent.kind;
  group->device = parent.device;
  for (int64_t m : members) group->ranks.push_back(parent.ranks[static_cast<size_t>(m)]);
  if (group->size > 1) {
    auto store = c10::make_intrusive<c10d::PrefixStore>("group/" + name, parent.rt->store);
    group->backend = make_backend(*parent.rt, store, group->rank, group->size);
  }
  return group;
}

}  // namespace longrl::dist
