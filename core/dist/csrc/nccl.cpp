// The NCCL backend (CUDA tensors), compiled only with the crate's `cuda` feature: it needs nccl.h
// from the nvidia-nccl wheel and the CUDA headers (`cargo xtask setup --cuda`), and links
// libtorch_cuda, which carries ProcessGroupNCCL.

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "group.h"

namespace longrl::dist {

c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                            at::Device device, std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  // The watchdog's limit for every collective of this group.
  options->timeout = timeout;
  auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
  backend->setBoundDeviceId(device);
  // Form the communicator now, so a rendezvous failure surfaces here and not in the first step.
  backend->eagerConnectSingleDevice(device);
  return backend;
}

}  // namespace longrl::dist
