#include "dtype.h"

#include <c10/core/DeviceGuard.h>
#include <c10/util/Exception.h>

#include "errors.h"

namespace spin {

namespace {
struct DTypeEntry {
  const char* name;
  c10::ScalarType type;
};
constexpr DTypeEntry kDTypes[] = {
    {"float32", c10::ScalarType::Float},   {"float64", c10::ScalarType::Double},
    {"float16", c10::ScalarType::Half},    {"bfloat16", c10::ScalarType::BFloat16},
    {"int32", c10::ScalarType::Int},       {"int64", c10::ScalarType::Long},
    {"uint8", c10::ScalarType::Byte},      {"bool", c10::ScalarType::Bool},
};
}  // namespace

c10::ScalarType ParseDType(const std::string& name) {
  for (const auto& entry : kDTypes) {
    if (name == entry.name) return entry.type;
  }
  throw SpinError(ErrorCode::kDType,
                  "unknown dtype '" + name +
                      "' (expected float32, float64, float16, bfloat16, int32, int64, uint8 or bool)");
}

const char* DTypeName(c10::ScalarType type) {
  for (const auto& entry : kDTypes) {
    if (type == entry.type) return entry.name;
  }
  throw SpinError(ErrorCode::kDType,
                  std::string("tensor has dtype ") + c10::toString(type) + ", which spin-native does not expose");
}

c10::Device ParseDevice(const std::string& name) {
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(name);
  } catch (const c10::Error&) {
    throw SpinError(ErrorCode::kDevice, "unknown device '" + name + "' (expected 'cpu', 'cuda' or 'cuda:N')");
  }
  if (!device.is_cpu() && !device.is_cuda()) {
    throw SpinError(ErrorCode::kDevice, "unsupported device '" + name + "' (expected 'cpu' or 'cuda:N')");
  }
  if (device.is_cuda()) {
    const auto count = c10::impl::hasDeviceGuardImpl(c10::DeviceType::CUDA)
                           ? c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->deviceCount()
                           : 0;
    if (count == 0) {
      throw SpinError(ErrorCode::kDevice,
                      "device '" + name +
                          "' requested, but CUDA is not available (CPU-only libtorch build, or no NVIDIA driver)");
    }
    if (device.has_index() && device.index() >= count) {
      throw SpinError(ErrorCode::kDevice, "device '" + name + "' requested, but only " +
                                              std::to_string(count) + " CUDA device(s) are visible");
    }
  }
  return device;
}

std::string DeviceName(const c10::Device& device) {
  if (device.is_cuda()) return "cuda:" + std::to_string(device.has_index() ? device.index() : 0);
  return device.str();
}

}  // namespace spin
