// Tensor factories: filled, ranges and seeded random tensors.
#include "factories.h"

#include <ATen/ATen.h>

#include "dtype.h"
#include "errors.h"
#include "tensor.h"

namespace spin {

namespace {
at::TensorOptions Options(const Args& args, size_t dtype_at, const char* fallback_dtype) {
  const auto dtype = args.OptionalString(dtype_at, "dtype");
  const auto device = args.OptionalString(dtype_at + 1, "device");
  return at::TensorOptions()
      .dtype(ParseDType(dtype.value_or(fallback_dtype)))
      .device(device ? ParseDevice(*device) : c10::Device(c10::kCPU));
}

void CheckShape(const std::vector<int64_t>& shape) {
  for (int64_t size : shape) {
    if (size < 0) throw SpinError(ErrorCode::kShapeMismatch, "shape has a negative size");
  }
}
}  // namespace

// full(shape, value, dtype?, device?)
Napi::Value Full(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("full", {
    args.ExpectAtMost(4);
    const auto shape = args.IntList(0, "shape");
    CheckShape(shape);
    const double value = args.Number(1, "value");
    return Tensor::Wrap(info.Env(), at::full(shape, value, Options(args, 2, "float32")));
  });
}

// arange(start, end, step, dtype?, device?)
Napi::Value Arange(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("arange", {
    args.ExpectAtMost(5);
    const double start = args.Number(0, "start");
    const double end = args.Number(1, "end");
    const double step = args.Number(2, "step");
    if (step == 0) throw SpinError(ErrorCode::kInvalidArgument, "arange step must not be 0");
    return Tensor::Wrap(info.Env(), at::arange(start, end, step, Options(args, 3, "int64")));
  });
}

// random(kind "uniform" | "normal", shape, dtype?, device?), from the global generator.
Napi::Value Random(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("random", {
    args.ExpectAtMost(4);
    const std::string kind = args.String(0, "kind");
    const auto shape = args.IntList(1, "shape");
    CheckShape(shape);
    const at::TensorOptions options = Options(args, 2, "float32");
    if (kind == "uniform") return Tensor::Wrap(info.Env(), at::rand(shape, options));
    if (kind == "normal") return Tensor::Wrap(info.Env(), at::randn(shape, options));
    throw SpinError(ErrorCode::kInvalidArgument, "unknown distribution '" + kind + "' (uniform or normal)");
  });
}

// manualSeed(seed): seeds libtorch's default generators (CPU and every CUDA device).
Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("manualSeed", {
    args.ExpectAtMost(1);
    const int64_t seed = args.Int(0, "seed");
    if (seed < 0) throw SpinError(ErrorCode::kInvalidArgument, "seed must be non-negative");
    at::manual_seed(static_cast<uint64_t>(seed));
    return info.Env().Undefined();
  });
}

}  // namespace spin
