// bf16 autocast for a block of work on one device, with float32 master weights: matmuls run
// in bfloat16 while parameters, gradients and the optimizer stay float32. Autocast state is
// thread-local in libtorch, so the guard lives inside the worker thread.
#pragma once

#include <c10/core/Device.h>

namespace spin {

class AutocastGuard {
 public:
  // enabled=false makes the guard a no-op.
  AutocastGuard(c10::Device device, bool enabled);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::Device device_;
  bool enabled_;
};

}  // namespace spin
