// Process-wide runtime controls: threads, grad mode, devices, versions and memory stats.
#pragma once

#include <napi.h>

namespace spin {

// Sets libtorch's intra-op threads to the cores this process may use, unless the user
// chose a count with OMP_NUM_THREADS. Called once at load.
void ApplyDefaultThreads();

Napi::Value SetNumThreads(const Napi::CallbackInfo& info);
Napi::Value GetNumThreads(const Napi::CallbackInfo& info);
Napi::Value SetGradEnabled(const Napi::CallbackInfo& info);
Napi::Value IsGradEnabled(const Napi::CallbackInfo& info);
Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info);
Napi::Value RuntimeInfo(const Napi::CallbackInfo& info);
Napi::Value MemoryStats(const Napi::CallbackInfo& info);

}  // namespace spin
