// Tensor: the JavaScript handle of one at::Tensor. The handle owns one reference; dispose()
// (or garbage collection, as a safety net) drops it. Methods are spread over tensor_*.cc by
// concern: lifecycle and conversions here, host data, ops and autograd in their own files.
#pragma once

#include <ATen/core/Tensor.h>
#include <napi.h>

#include <atomic>
#include <cstdint>

#include "args.h"

namespace spin {

class Tensor : public Napi::ObjectWrap<Tensor> {
 public:
  static Napi::Function Define(Napi::Env env);

  // A new JS handle holding its own reference to `value`.
  static Napi::Value Wrap(Napi::Env env, at::Tensor value);

  // The tensor behind argument i: TypeError unless it is a Tensor, DISPOSED if disposed.
  static const at::Tensor& From(const Args& args, size_t i, const char* name);
  // The tensor behind a value already known to be a Tensor (Is): DISPOSED if disposed.
  static const at::Tensor& FromValue(Napi::Value value, const char* call);
  static bool Is(Napi::Env env, Napi::Value value);

  // Handles alive and the host bytes they report to V8 (for leak tests and diagnostics).
  static int64_t LiveCount() { return live_count_.load(); }
  static int64_t ReportedBytes() { return reported_bytes_.load(); }

  explicit Tensor(const Napi::CallbackInfo& info);
  ~Tensor() override;

 private:
  const at::Tensor& Value(const char* call) const;
  void Release();

  // tensor.cc: lifecycle, metadata, conversions
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value DType(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value NBytes(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Contiguous(const Napi::CallbackInfo& info);
  Napi::Value Clone(const Napi::CallbackInfo& info);
  Napi::Value Detach(const Napi::CallbackInfo& info);
  Napi::Value CopyFrom(const Napi::CallbackInfo& info);

  // tensor_data.cc: host data out
  Napi::Value ToTypedArray(const Napi::CallbackInfo& info);
  Napi::Value Item(const Napi::CallbackInfo& info);

  // tensor_ops.cc: the curated op set
  Napi::Value Unary(const Napi::CallbackInfo& info);
  Napi::Value Binary(const Napi::CallbackInfo& info);
  Napi::Value Reduce(const Napi::CallbackInfo& info);
  Napi::Value Softmax(const Napi::CallbackInfo& info);
  Napi::Value Clamp(const Napi::CallbackInfo& info);
  Napi::Value Dropout(const Napi::CallbackInfo& info);
  Napi::Value Matmul(const Napi::CallbackInfo& info);
  Napi::Value MatmulAsync(const Napi::CallbackInfo& info);
  Napi::Value Gather(const Napi::CallbackInfo& info);
  Napi::Value IndexSelect(const Napi::CallbackInfo& info);
  Napi::Value Select(const Napi::CallbackInfo& info);
  Napi::Value Slice(const Napi::CallbackInfo& info);
  Napi::Value Reshape(const Napi::CallbackInfo& info);
  Napi::Value Transpose(const Napi::CallbackInfo& info);
  Napi::Value Permute(const Napi::CallbackInfo& info);
  Napi::Value Squeeze(const Napi::CallbackInfo& info);
  Napi::Value Unsqueeze(const Napi::CallbackInfo& info);
  Napi::Value Expand(const Napi::CallbackInfo& info);

  // tensor_autograd.cc
  Napi::Value RequiresGrad(const Napi::CallbackInfo& info);
  Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info);
  Napi::Value IsLeaf(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value Grad(const Napi::CallbackInfo& info);
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info);

  at::Tensor value_;
  int64_t reported_bytes_here_ = 0;

  static std::atomic<int64_t> live_count_;
  static std::atomic<int64_t> reported_bytes_;
};

}  // namespace spin
