// Module-level tensor ops that take several tensors (see tensor_ops.cc).
#pragma once

#include <napi.h>

namespace spin {

Napi::Value Cat(const Napi::CallbackInfo& info);
Napi::Value Stack(const Napi::CallbackInfo& info);
Napi::Value Where(const Napi::CallbackInfo& info);

}  // namespace spin
