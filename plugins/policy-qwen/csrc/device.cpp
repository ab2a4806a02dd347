// Peak memory of the accelerator's caching allocator (the figure `torch.cuda.max_memory_allocated`
// reports), for the CUDA tests and benchmarks: the C++ half of `src/device.rs`. Goes through
// `at::accelerator`, which libtorch_cpu exports, so the plugin links no CUDA library and loads on
// CPU-only machines. No C++ exception crosses into Rust (`ffi_guard.h`).

#include <ATen/DeviceAccelerator.h>

#include "ffi_guard.h"

extern "C" {

// Peak bytes allocated on accelerator `device` since the last reset, into `out`.
int longrl_accelerator_peak_bytes(int device, int64_t* out, char* err, size_t err_len) {
  return longrl::ffi_guard("accelerator stats: unknown C++ exception", err, err_len, [&] {
    auto stats = at::accelerator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    *out = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  });
}

// Start a new peak on accelerator `device`.
int longrl_accelerator_reset_peak(int device, char* err, size_t err_len) {
  return longrl::ffi_guard("accelerator stats: unknown C++ exception", err, err_len, [&] {
    at::accelerator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
  });
}

}  // extern "C"
