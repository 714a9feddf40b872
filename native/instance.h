// Per-environment state of the addon (one per Node.js worker thread that loads it).
#pragma once

#include <napi.h>

namespace spin {

struct InstanceData {
  Napi::FunctionReference tensor_class;
  Napi::FunctionReference model_class;
  Napi::FunctionReference kv_cache_class;
  Napi::FunctionReference optimizer_class;
  Napi::FunctionReference gradient_reducer_class;
  Napi::FunctionReference error_class;  // SpinNativeError, handed over by lib/core/native.ts
};

InstanceData& Instance(Napi::Env env);

}  // namespace spin
