#include "tensor.h"

#include "dtype.h"
#include "errors.h"
#include "instance.h"

namespace spin {

std::atomic<int64_t> Tensor::live_count_{0};
std::atomic<int64_t> Tensor::reported_bytes_{0};

Napi::Function Tensor::Define(Napi::Env env) {
  Napi::Function cls = DefineClass(
      env, "NativeTensor",
      {
          InstanceAccessor<&Tensor::Shape>("shape"),
          InstanceAccessor<&Tensor::DType>("dtype"),
          InstanceAccessor<&Tensor::Device>("device"),
          InstanceAccessor<&Tensor::Disposed>("disposed"),
          InstanceAccessor<&Tensor::NBytes>("nbytes"),
          InstanceAccessor<&Tensor::RequiresGrad>("requiresGrad"),
          InstanceAccessor<&Tensor::IsLeaf>("isLeaf"),
          InstanceMethod<&Tensor::Dispose>("dispose"),
          InstanceMethod<&Tensor::To>("to"),
          InstanceMethod<&Tensor::Contiguous>("contiguous"),
          InstanceMethod<&Tensor::Clone>("clone"),
          InstanceMethod<&Tensor::Detach>("detach"),
          InstanceMethod<&Tensor::CopyFrom>("copyFrom"),
          InstanceMethod<&Tensor::ToTypedArray>("toTypedArray"),
          InstanceMethod<&Tensor::Item>("item"),
          InstanceMethod<&Tensor::Unary>("unary"),
          InstanceMethod<&Tensor::Binary>("binary"),
          InstanceMethod<&Tensor::Reduce>("reduce"),
          InstanceMethod<&Tensor::Softmax>("softmax"),
          InstanceMethod<&Tensor::Clamp>("clamp"),
          InstanceMethod<&Tensor::Dropout>("dropout"),
          InstanceMethod<&Tensor::Matmul>("matmul"),
          InstanceMethod<&Tensor::MatmulAsync>("matmulAsync"),
          InstanceMethod<&Tensor::Gather>("gather"),
          InstanceMethod<&Tensor::IndexSelect>("indexSelect"),
          InstanceMethod<&Tensor::Select>("select"),
          InstanceMethod<&Tensor::Slice>("slice"),
          InstanceMethod<&Tensor::Reshape>("reshape"),
          InstanceMethod<&Tensor::Transpose>("transpose"),
          InstanceMethod<&Tensor::Permute>("permute"),
          InstanceMethod<&Tensor::Squeeze>("squeeze"),
          InstanceMethod<&Tensor::Unsqueeze>("unsqueeze"),
          InstanceMethod<&Tensor::Expand>("expand"),
          InstanceMethod<&Tensor::SetRequiresGrad>("setRequiresGrad"),
          InstanceMethod<&Tensor::Backward>("backward"),
          InstanceMethod<&Tensor::Grad>("grad"),
          InstanceMethod<&Tensor::ZeroGrad>("zeroGrad"),
      });
  Instance(env).tensor_class = Napi::Persistent(cls);
  return cls;
}

Napi::Value Tensor::Wrap(Napi::Env env, at::Tensor value) {
  return Instance(env).tensor_class.New({Napi::External<at::Tensor>::New(env, &value)});
}

bool Tensor::Is(Napi::Env env, Napi::Value value) {
  return value.IsObject() && value.As<Napi::Object>().InstanceOf(Instance(env).tensor_class.Value());
}

const at::Tensor& Tensor::From(const Args& args, size_t i, const char* name) {
  if (i >= args.size() || !Is(args.env(), args.at(i))) args.Fail(i, name, "a Tensor");
  return FromValue(args.at(i), args.call());
}

const at::Tensor& Tensor::FromValue(Napi::Value value, const char* call) {
  return Unwrap(value.As<Napi::Object>())->Value(call);
}

// Only the addon creates handles: it passes the tensor as an External.
Tensor::Tensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tensor>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    ThrowTypeError(info.Env(), "Tensor",
                   "tensors are created by tensor(), zeros(), fromTypedArray() and tensor ops, not by new");
  }
  value_ = *info[0].As<Napi::External<at::Tensor>>().Data();
  ++live_count_;
  // V8 sees the host bytes this handle keeps alive, so garbage collection runs when they
  // pile up. Views report their whole storage: an overestimate only makes GC come sooner.
  if (value_.defined() && value_.has_storage() && value_.device().is_cpu()) {
    reported_bytes_here_ = static_cast<int64_t>(value_.storage().nbytes());
    reported_bytes_ += reported_bytes_here_;
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), reported_bytes_here_);
  }
}

Tensor::~Tensor() { Release(); }

void Tensor::Release() {
  if (!value_.defined() && reported_bytes_here_ == 0) return;
  if (value_.defined()) --live_count_;
  value_.reset();
  if (reported_bytes_here_ != 0) {
    reported_bytes_ -= reported_bytes_here_;
    Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_bytes_here_);
    reported_bytes_here_ = 0;
  }
}

const at::Tensor& Tensor::Value(const char* call) const {
  if (!value_.defined()) {
    throw SpinError(ErrorCode::kDisposed, "the tensor was disposed");
  }
  return value_;
}

Napi::Value Tensor::Shape(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.shape", {
    const auto sizes = Value(args.call()).sizes();
    Napi::Array shape = Napi::Array::New(info.Env(), sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) shape.Set(i, Napi::Number::New(info.Env(), sizes[i]));
    return shape;
  });
}

Napi::Value Tensor::DType(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.dtype", { return Napi::String::New(info.Env(), DTypeName(Value(args.call()).scalar_type())); });
}

Napi::Value Tensor::Device(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.device", { return Napi::String::New(info.Env(), DeviceName(Value(args.call()).device())); });
}

Napi::Value Tensor::Disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !value_.defined());
}

Napi::Value Tensor::NBytes(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.nbytes", {
    const at::Tensor& t = Value(args.call());
    return Napi::Number::New(info.Env(), static_cast<double>(t.numel() * t.element_size()));
  });
}

Napi::Value Tensor::Dispose(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

Napi::Value Tensor::To(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.to", {
    args.ExpectAtMost(2);
    const at::Tensor& self = Value(args.call());
    const auto device_name = args.OptionalString(0, "device");
    const auto dtype_name = args.OptionalString(1, "dtype");
    const c10::Device device = device_name ? ParseDevice(*device_name) : self.device();
    const c10::ScalarType dtype = dtype_name ? ParseDType(*dtype_name) : self.scalar_type();
    return Wrap(info.Env(), self.to(device, dtype));
  });
}

Napi::Value Tensor::Contiguous(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.contiguous", { return Wrap(info.Env(), Value(args.call()).contiguous()); });
}

Napi::Value Tensor::Clone(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.clone", { return Wrap(info.Env(), Value(args.call()).clone()); });
}

Napi::Value Tensor::Detach(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.detach", { return Wrap(info.Env(), Value(args.call()).detach()); });
}

Napi::Value Tensor::CopyFrom(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.copyFrom", {
    args.ExpectAtMost(1);
    const at::Tensor& source = From(args, 0, "source");
    Value(args.call()).copy_(source);
    return info.Env().Undefined();
  });
}

}  // namespace spin
