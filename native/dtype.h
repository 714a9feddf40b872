// Names of dtypes and devices as JavaScript spells them ("float32", "cuda:0").
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace spin {

// Throws SpinError(kDType) for an unknown name.
c10::ScalarType ParseDType(const std::string& name);
const char* DTypeName(c10::ScalarType type);

// Throws SpinError(kDevice) for a malformed name or a CUDA device this build cannot reach.
c10::Device ParseDevice(const std::string& name);
std::string DeviceName(const c10::Device& device);

}  // namespace spin
