// The Gloo backend (CPU tensors). The only translation unit that sees gloo's headers: they come
// from Debian's libgloo-dev (extracted by `cargo xtask setup`) or, without it, from
// csrc/gloo-decls. libgloo itself is never linked: libtorch_cpu carries gloo's code.

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <cstdlib>
#include <sstream>

#include "group.h"

namespace longrl::dist {

namespace {

using GlooDevice = ::gloo::transport::Device;

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

}  // namespace

// torch.distributed's choice: GLOO_SOCKET_IFNAME names the interfaces (comma-separated), else the
// address this machine's hostname resolves to. A loopback master means every rank is on this
// machine, so bind loopback too (containers often have no resolvable hostname).
std::shared_ptr<void> gloo_device(const std::string& master_host) {
  std::shared_ptr<GlooDevice> device;
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
    std::stringstream names(ifname);
    std::string first;
    std::getline(names, first, ',');
    device = c10d::ProcessGroupGloo::createDeviceForInterface(first);
  } else if (is_loopback(master_host)) {
    device = c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  } else {
    device = c10d::ProcessGroupGloo::createDefaultDevice();
  }
  return std::static_pointer_cast<void>(device);
}

c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                            const std::shared_ptr<void>& device, std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(std::static_pointer_cast<GlooDevice>(device));
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
}

}  // namespace longrl::dist
