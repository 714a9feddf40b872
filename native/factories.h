// Module-level tensor factories (see factories.cc).
#pragma once

#include <napi.h>

namespace spin {

Napi::Value Full(const Napi::CallbackInfo& info);
Napi::Value Arange(const Napi::CallbackInfo& info);
Napi::Value Random(const Napi::CallbackInfo& info);
Napi::Value ManualSeed(const Napi::CallbackInfo& info);

}  // namespace spin
