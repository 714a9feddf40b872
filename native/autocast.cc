#include "autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace spin {

// libtorch 2.4 replaced the per-device setters with device-type ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define SPIN_AUTOCAST_BY_DEVICE_TYPE 1
#endif

AutocastGuard::AutocastGuard(c10::Device device, bool enabled) : device_(device), enabled_(enabled) {
  if (!enabled_) return;
#ifdef SPIN_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(device_.type(), at::kBFloat16);
  at::autocast::set_autocast_enabled(device_.type(), true);
#else
  if (device_.is_cuda()) {
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
#endif
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
#ifdef SPIN_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(device_.type(), false);
#else
  if (device_.is_cuda()) {
    at::autocast::set_enabled(false);
  } else {
    at::autocast::set_cpu_enabled(false);
  }
#endif
  at::autocast::clear_cache();
}

}  // namespace spin
