// Module init: the native surface typed in types/native.d.ts.
#include <napi.h>

#include "dist.h"
#include "errors.h"
#include "factories.h"
#include "generate.h"
#include "instance.h"
#include "model/model_binding.h"
#include "safetensors.h"
#include "train_binding.h"
#include "runtime.h"
#include "tensor.h"
#include "tensor_data.h"
#include "tensor_ops.h"

namespace spin {
namespace {

// registerErrorClass(SpinNativeError): lib/core/native.ts hands over the JS error class once.
Napi::Value RegisterErrorClassEntry(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("registerErrorClass", {
    args.ExpectAtMost(1);
    RegisterErrorClass(info.Env(), args.Function(0, "errorClass"));
    return info.Env().Undefined();
  });
}

}  // namespace
}  // namespace spin

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace spin;
  env.SetInstanceData(new InstanceData());
  ApplyDefaultThreads();

  exports.Set("NativeTensor", Tensor::Define(env));
  exports.Set("NativeModel", ModelHandle::Define(env));
  exports.Set("NativeKVCache", KVCacheHandle::Define(env));
  exports.Set("NativeOptimizer", OptimizerHandle::Define(env));
  exports.Set("NativeGradientReducer", GradientReducerHandle::Define(env));
  const std::pair<const char*, Napi::Function::Callback> functions[] = {
      {"registerErrorClass", RegisterErrorClassEntry},
      {"fromTypedArray", FromTypedArray},
      {"full", Full},
      {"arange", Arange},
      {"random", Random},
      {"manualSeed", ManualSeed},
      {"cat", Cat},
      {"stack", Stack},
      {"where", Where},
      {"setNumThreads", SetNumThreads},
      {"getNumThreads", GetNumThreads},
      {"setGradEnabled", SetGradEnabled},
      {"isGradEnabled", IsGradEnabled},
      {"cudaDeviceCount", CudaDeviceCount},
      {"runtimeInfo", RuntimeInfo},
      {"memoryStats", MemoryStats},
      {"createModel", ModelHandle::Create},
      {"mapSafetensors", MapSafetensors},
      {"writeSafetensors", WriteSafetensors},
      {"createOptimizer", OptimizerHandle::Create},
      {"spinTrainStep", SpinTrainStep},
      {"sftTrainStep", SftTrainStep},
      {"spinLoss", SpinLossBinding},
      {"spinMetrics", SpinMetricsBinding},
      {"generate", Generate},
      {"initProcessGroup", InitProcessGroup},
      {"destroyProcessGroup", DestroyProcessGroup},
      {"allReduce", AllReduce},
      {"broadcast", Broadcast},
      {"allGather", AllGather},
      {"barrier", Barrier},
      {"createGradientReducer", GradientReducerHandle::Create},
      {"broadcastParameters", BroadcastParameters},
  };
  for (const auto& [name, callback] : functions) {
    exports.Set(name, Napi::Function::New(env, callback, name));
  }
  return exports;
}

NODE_API_MODULE(spin_native, Init)
