// Fallback declarations (see README.md). The header holds gloo::Context by shared_ptr and calls
// one member in an inline function (ProcessGroupGloo::setTimeout, never called by the shim).
#pragma once
#include <chrono>
namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
}  // namespace gloo
