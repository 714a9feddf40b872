#include "runtime.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/GradMode.h>
#include <sched.h>
#include <torch/version.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "dist.h"
#include "errors.h"
#include "tensor.h"
#include "train_binding.h"

namespace spin {

namespace {

int AvailableCores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  const unsigned cores = std::thread::hardware_concurrency();
  return cores > 0 ? static_cast<int>(cores) : 1;
}

int64_t CudaDevices() {
  if (!c10::impl::hasDeviceGuardImpl(c10::DeviceType::CUDA)) return 0;
  return c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->deviceCount();
}

}  // namespace

void ApplyDefaultThreads() {
  const char* omp = std::getenv("OMP_NUM_THREADS");
  if (omp != nullptr && *omp != '\0') return;
  at::set_num_threads(AvailableCores());
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("setNumThreads", {
    args.ExpectAtMost(1);
    const int64_t threads = args.Int(0, "threads");
    if (threads < 1 || threads > 1024) throw SpinError(ErrorCode::kInvalidArgument, "threads must be in 1..1024");
    at::set_num_threads(static_cast<int>(threads));
    return info.Env().Undefined();
  });
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

// setGradEnabled(enabled) -> the previous mode; grad mode is per thread (this JS thread).
Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("setGradEnabled", {
    args.ExpectAtMost(1);
    const bool enabled = args.Bool(0, "enabled");
    const bool previous = c10::GradMode::is_enabled();
    c10::GradMode::set_enabled(enabled);
    return Napi::Boolean::New(info.Env(), previous);
  });
}

Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), c10::GradMode::is_enabled());
}

Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("cudaDeviceCount", { return Napi::Number::New(info.Env(), static_cast<double>(CudaDevices())); });
}

namespace {

// One KEY=value of the build configuration of the libtorch loaded at run time (not the
// headers this addon was compiled with), or "unknown".
std::string LoadedConfig(const std::string& key) {
  const std::string config = at::show_config();
  const size_t at = config.find(key + "=");
  if (at == std::string::npos) return "unknown";
  const size_t begin = at + key.size() + 1;
  return config.substr(begin, config.find_first_of(", \n", begin) - begin);
}

}  // namespace

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("runtimeInfo", {
    Napi::Object result = Napi::Object::New(info.Env());
    result.Set("torchVersion", TORCH_VERSION);
    result.Set("numThreads", at::get_num_threads());
    result.Set("availableCores", AvailableCores());
    result.Set("cudaDeviceCount", static_cast<double>(CudaDevices()));
    result.Set("parallelInfo", at::get_parallel_info());
    // BLAS_INFO: "open", "mkl", …; a BLAS linked into libtorch itself (pip torch's MKL) is no
    // separate library in the process.
    result.Set("blasBuild", LoadedConfig("BLAS_INFO"));
    result.Set("loadedTorchVersion", LoadedConfig("TORCH_VERSION"));
    // What this binary was compiled against: the loader refuses a libtorch that differs.
    Napi::Object built = Napi::Object::New(info.Env());
    built.Set("torchVersion", TORCH_VERSION);
    built.Set("cxx11Abi", static_cast<bool>(_GLIBCXX_USE_CXX11_ABI));
    built.Set("cxxStandard", static_cast<double>(__cplusplus / 100 % 100));
#ifdef SPIN_WITH_NCCL
    built.Set("nccl", true);
#else
    built.Set("nccl", false);
#endif
    result.Set("builtAgainst", built);
    Napi::Array backends = Napi::Array::New(info.Env());
    for (const std::string& name : DistributedBackends()) backends.Set(backends.Length(), name);
    result.Set("distributedBackends", backends);
    return result;
  });
}

Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("liveTensors", static_cast<double>(Tensor::LiveCount()));
  result.Set("reportedBytes", static_cast<double>(Tensor::ReportedBytes()));
  result.Set("liveOptimizers", static_cast<double>(OptimizerHandle::LiveCount()));
  result.Set("optimizerBytes", static_cast<double>(OptimizerHandle::ReportedBytes()));
  return result;
}

}  // namespace spin
