// Module-level entry point that creates a tensor from host data (see tensor_data.cc).
#pragma once

#include <napi.h>

namespace spin {

Napi::Value FromTypedArray(const Napi::CallbackInfo& info);

}  // namespace spin
