// Host data in and out of tensors: typed arrays <-> tensors, always by copy, so no tensor
// ever aliases memory owned by the JavaScript heap.
#include <ATen/ATen.h>

#include <cstring>

#include "dtype.h"
#include "errors.h"
#include "tensor.h"
#include "tensor_data.h"

namespace spin {

namespace {

// The typed array that carries each dtype: 16-bit floats travel as their raw bits.
napi_typedarray_type ArrayTypeOf(c10::ScalarType type) {
  switch (type) {
    case c10::ScalarType::Float: return napi_float32_array;
    case c10::ScalarType::Double: return napi_float64_array;
    case c10::ScalarType::Half:
    case c10::ScalarType::BFloat16: return napi_uint16_array;
    case c10::ScalarType::Int: return napi_int32_array;
    case c10::ScalarType::Long: return napi_bigint64_array;
    case c10::ScalarType::Byte:
    case c10::ScalarType::Bool: return napi_uint8_array;
    default: throw SpinError(ErrorCode::kDType, std::string("no typed array for dtype ") + c10::toString(type));
  }
}

const char* ArrayTypeName(napi_typedarray_type type) {
  switch (type) {
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_uint8_array: return "Uint8Array";
    default: return "another typed array";
  }
}

}  // namespace

// fromTypedArray(data, shape, dtype, device?)
Napi::Value FromTypedArray(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("fromTypedArray", {
    args.ExpectAtMost(4);
    if (!args.present(0) || !args.at(0).IsTypedArray()) args.Fail(0, "data", "a typed array");
    const Napi::TypedArray data = args.at(0).As<Napi::TypedArray>();
    const std::vector<int64_t> shape = args.IntList(1, "shape");
    const c10::ScalarType dtype = ParseDType(args.String(2, "dtype"));
    const auto device_name = args.OptionalString(3, "device");

    const napi_typedarray_type expected = ArrayTypeOf(dtype);
    if (data.TypedArrayType() != expected) {
      throw SpinError(ErrorCode::kDType, std::string("dtype ") + DTypeName(dtype) + " takes a " +
                                             ArrayTypeName(expected) + ", got " +
                                             ArrayTypeName(data.TypedArrayType()));
    }
    int64_t numel = 1;
    for (int64_t size : shape) {
      if (size < 0) throw SpinError(ErrorCode::kShapeMismatch, "shape has a negative size");
      if (size != 0 && numel > INT64_MAX / size) throw SpinError(ErrorCode::kShapeMismatch, "shape is too large");
      numel *= size;
    }
    if (static_cast<size_t>(numel) != data.ElementLength()) {
      throw SpinError(ErrorCode::kShapeMismatch, "shape [" + c10::Join(", ", shape) + "] holds " +
                                                      std::to_string(numel) + " elements, data has " +
                                                      std::to_string(data.ElementLength()));
    }
    at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(dtype));
    if (numel > 0) {
      const auto* bytes = static_cast<const uint8_t*>(data.ArrayBuffer().Data()) + data.ByteOffset();
      std::memcpy(tensor.data_ptr(), bytes, data.ByteLength());
    }
    if (dtype == c10::ScalarType::Bool && numel > 0) {
      // A bool tensor must hold 0 or 1 in every byte; anything else is undefined in libtorch.
      const auto* bytes = static_cast<const uint8_t*>(tensor.data_ptr());
      for (int64_t i = 0; i < numel; ++i) {
        if (bytes[i] > 1) throw SpinError(ErrorCode::kInvalidArgument, "bool data must be 0 or 1 at index " + std::to_string(i));
      }
    }
    if (device_name) tensor = tensor.to(ParseDevice(*device_name));
    return Tensor::Wrap(info.Env(), tensor);
  });
}

Napi::Value Tensor::ToTypedArray(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.toTypedArray", {
    args.ExpectAtMost(0);
    const at::Tensor host = Value(args.call()).detach().to(c10::kCPU).contiguous();
    const napi_typedarray_type type = ArrayTypeOf(host.scalar_type());
    const size_t bytes = static_cast<size_t>(host.numel()) * host.element_size();
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(info.Env(), bytes);
    if (bytes > 0) std::memcpy(buffer.Data(), host.data_ptr(), bytes);
    napi_value array;
    NAPI_THROW_IF_FAILED(info.Env(), napi_create_typedarray(info.Env(), type, host.numel(), buffer, 0, &array),
                         Napi::Value());
    return Napi::Value(info.Env(), array);
  });
}

Napi::Value Tensor::Item(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.item", {
    args.ExpectAtMost(0);
    const at::Tensor& self = Value(args.call());
    if (self.numel() != 1) {
      throw SpinError(ErrorCode::kShapeMismatch,
                      "item() needs a tensor of one element, this one has " + std::to_string(self.numel()));
    }
    const c10::Scalar value = self.item();
    if (value.isBoolean()) return Napi::Boolean::New(info.Env(), value.toBool());
    if (value.isIntegral(false)) {
      const int64_t integer = value.toLong();
      if (integer > 9007199254740991LL || integer < -9007199254740991LL) {
        throw SpinError(ErrorCode::kInvalidArgument,
                        "item() value " + std::to_string(integer) + " is beyond 2^53; read it with toTypedArray()");
      }
      return Napi::Number::New(info.Env(), static_cast<double>(integer));
    }
    return Napi::Number::New(info.Env(), value.toDouble());
  });
}

}  // namespace spin
