// The curated op set: enough to write a custom loss or metric in TypeScript. Op families
// share one entry point each (unary, binary, reduce) so the native surface stays small;
// lib/core/tensor.ts gives every op its own typed method.
#include "tensor_ops.h"

#include <ATen/ATen.h>

#include <numeric>
#include <utility>

#include "async.h"
#include "dropout.h"
#include "errors.h"
#include "tensor.h"

namespace spin {

namespace {

using UnaryFn = at::Tensor (*)(const at::Tensor&);
using BinaryFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&);

template <typename Fn>
struct Named {
  const char* name;
  Fn fn;
};

const Named<UnaryFn> kUnaryOps[] = {
    {"neg", [](const at::Tensor& t) { return at::neg(t); }},
    {"abs", [](const at::Tensor& t) { return at::abs(t); }},
    {"sqrt", [](const at::Tensor& t) { return at::sqrt(t); }},
    {"rsqrt", [](const at::Tensor& t) { return at::rsqrt(t); }},
    {"square", [](const at::Tensor& t) { return at::square(t); }},
    {"reciprocal", [](const at::Tensor& t) { return at::reciprocal(t); }},
    {"exp", [](const at::Tensor& t) { return at::exp(t); }},
    {"log", [](const at::Tensor& t) { return at::log(t); }},
    {"log1p", [](const at::Tensor& t) { return at::log1p(t); }},
    {"sigmoid", [](const at::Tensor& t) { return at::sigmoid(t); }},
    {"logSigmoid", [](const at::Tensor& t) { return at::log_sigmoid(t); }},
    {"tanh", [](const at::Tensor& t) { return at::tanh(t); }},
    {"relu", [](const at::Tensor& t) { return at::relu(t); }},
    {"silu", [](const at::Tensor& t) { return at::silu(t); }},
    {"sign", [](const at::Tensor& t) { return at::sign(t); }},
    {"floor", [](const at::Tensor& t) { return at::floor(t); }},
    {"ceil", [](const at::Tensor& t) { return at::ceil(t); }},
    {"round", [](const at::Tensor& t) { return at::round(t); }},
    {"logicalNot", [](const at::Tensor& t) { return at::logical_not(t); }},
    {"isNan", [](const at::Tensor& t) { return at::isnan(t); }},
    {"isFinite", [](const at::Tensor& t) { return at::isfinite(t); }},
};

const Named<BinaryFn> kBinaryOps[] = {
    {"add", [](const at::Tensor& a, const at::Tensor& b) { return at::add(a, b); }},
    {"sub", [](const at::Tensor& a, const at::Tensor& b) { return at::sub(a, b); }},
    {"mul", [](const at::Tensor& a, const at::Tensor& b) { return at::mul(a, b); }},
    {"div", [](const at::Tensor& a, const at::Tensor& b) { return at::div(a, b); }},
    {"pow", [](const at::Tensor& a, const at::Tensor& b) { return at::pow(a, b); }},
    {"maximum", [](const at::Tensor& a, const at::Tensor& b) { return at::maximum(a, b); }},
    {"minimum", [](const at::Tensor& a, const at::Tensor& b) { return at::minimum(a, b); }},
    {"eq", [](const at::Tensor& a, const at::Tensor& b) { return at::eq(a, b); }},
    {"ne", [](const at::Tensor& a, const at::Tensor& b) { return at::ne(a, b); }},
    {"lt", [](const at::Tensor& a, const at::Tensor& b) { return at::lt(a, b); }},
    {"le", [](const at::Tensor& a, const at::Tensor& b) { return at::le(a, b); }},
    {"gt", [](const at::Tensor& a, const at::Tensor& b) { return at::gt(a, b); }},
    {"ge", [](const at::Tensor& a, const at::Tensor& b) { return at::ge(a, b); }},
    {"logicalAnd", [](const at::Tensor& a, const at::Tensor& b) { return at::logical_and(a, b); }},
    {"logicalOr", [](const at::Tensor& a, const at::Tensor& b) { return at::logical_or(a, b); }},
};

template <typename Fn, size_t N>
Fn Lookup(const Named<Fn> (&table)[N], const std::string& name, const char* family) {
  for (const auto& entry : table) {
    if (name == entry.name) return entry.fn;
  }
  throw SpinError(ErrorCode::kInvalidArgument, std::string("unknown ") + family + " op '" + name + "'");
}

// A JS number or boolean as an operand: wrapped like a Python scalar, so it follows the
// tensor's dtype (float32 tensor + 0.5 stays float32) instead of promoting it.
at::Tensor Operand(const Args& args, size_t i, const char* name) {
  const Napi::Value value = i < args.size() ? args.at(i) : args.env().Undefined();
  at::Tensor scalar;
  if (value.IsNumber()) {
    const double number = value.As<Napi::Number>().DoubleValue();
    const bool integral = std::isfinite(number) && std::trunc(number) == number && std::fabs(number) < 9.2e18;
    scalar = integral ? at::scalar_tensor(static_cast<int64_t>(number), at::kLong) : at::scalar_tensor(number, at::kDouble);
  } else if (value.IsBoolean()) {
    scalar = at::scalar_tensor(value.As<Napi::Boolean>().Value(), at::kBool);
  } else {
    return Tensor::From(args, i, name);
  }
  scalar.unsafeGetTensorImpl()->set_wrapped_number(true);
  return scalar;
}

std::vector<at::Tensor> TensorList(const Args& args, size_t i, const char* name) {
  if (!args.present(i) || !args.at(i).IsArray()) args.Fail(i, name, "an array of Tensors");
  const Napi::Array array = args.at(i).As<Napi::Array>();
  if (array.Length() == 0) throw SpinError(ErrorCode::kInvalidArgument, std::string(name) + " is empty");
  std::vector<at::Tensor> tensors;
  for (uint32_t k = 0; k < array.Length(); ++k) {
    const Napi::Value item = array.Get(k);
    if (!Tensor::Is(args.env(), item)) args.Fail(i, name, "an array of Tensors");
    tensors.push_back(Tensor::FromValue(item, args.call()));
  }
  return tensors;
}

at::Tensor ReduceAll(const std::string& op, const at::Tensor& flat) {
  if (op == "sum") return at::sum(flat, 0);
  if (op == "mean") return at::mean(flat, 0);
  if (op == "prod") return at::prod(flat, 0);
  if (op == "amax") return at::amax(flat, 0);
  if (op == "amin") return at::amin(flat, 0);
  if (op == "argmax") return at::argmax(flat, 0);
  if (op == "argmin") return at::argmin(flat, 0);
  if (op == "logsumexp") return at::logsumexp(flat, 0);
  if (op == "all") return at::all(flat, 0);
  if (op == "any") return at::any(flat, 0);
  throw SpinError(ErrorCode::kInvalidArgument, "unknown reduction '" + op + "'");
}

at::Tensor ReduceDims(const std::string& op, const at::Tensor& t, const std::vector<int64_t>& dims, bool keep) {
  const bool single = dims.size() == 1;
  if (op == "sum") return at::sum(t, dims, keep);
  if (op == "mean") return at::mean(t, dims, keep);
  if (op == "amax") return at::amax(t, dims, keep);
  if (op == "amin") return at::amin(t, dims, keep);
  if (op == "logsumexp") return at::logsumexp(t, dims, keep);
  if (!single) throw SpinError(ErrorCode::kInvalidArgument, "reduction '" + op + "' takes exactly one dim");
  if (op == "prod") return at::prod(t, dims[0], keep);
  if (op == "argmax") return at::argmax(t, dims[0], keep);
  if (op == "argmin") return at::argmin(t, dims[0], keep);
  if (op == "all") return at::all(t, dims[0], keep);
  if (op == "any") return at::any(t, dims[0], keep);
  throw SpinError(ErrorCode::kInvalidArgument, "unknown reduction '" + op + "'");
}

// Names the op family's call after the op itself ("tensor.add"), for error messages.
std::string OpCall(const Napi::CallbackInfo& info, const char* family) {
  const std::string op = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : family;
  return std::string("tensor.") + op;
}

}  // namespace

Napi::Value Tensor::Unary(const Napi::CallbackInfo& info) {
  SPIN_ENTRY(OpCall(info, "unary"), {
    args.ExpectAtMost(1);
    const UnaryFn fn = Lookup(kUnaryOps, args.String(0, "op"), "unary");
    return Wrap(info.Env(), fn(Value(args.call())));
  });
}

Napi::Value Tensor::Binary(const Napi::CallbackInfo& info) {
  SPIN_ENTRY(OpCall(info, "binary"), {
    args.ExpectAtMost(2);
    const BinaryFn fn = Lookup(kBinaryOps, args.String(0, "op"), "binary");
    return Wrap(info.Env(), fn(Value(args.call()), Operand(args, 1, "other")));
  });
}

// reduce(op, dims | null, keepDim): null dims reduce over every element.
Napi::Value Tensor::Reduce(const Napi::CallbackInfo& info) {
  SPIN_ENTRY(OpCall(info, "reduce"), {
    args.ExpectAtMost(3);
    const std::string op = args.String(0, "op");
    const auto dims = args.OptionalIntList(1, "dims");
    const bool keep = args.OptionalBool(2, "keepDim", false);
    const at::Tensor& self = Value(args.call());
    if (dims && dims->empty()) throw SpinError(ErrorCode::kInvalidArgument, "dims is empty (pass null to reduce all)");
    if (dims) return Wrap(info.Env(), ReduceDims(op, self, *dims, keep));
    at::Tensor result = ReduceAll(op, self.reshape({-1}));
    if (keep) result = result.reshape(std::vector<int64_t>(self.dim(), 1));
    return Wrap(info.Env(), result);
  });
}

Napi::Value Tensor::Softmax(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.softmax", {
    args.ExpectAtMost(2);
    const int64_t dim = args.Int(0, "dim");
    const bool log = args.OptionalBool(1, "log", false);
    const at::Tensor& self = Value(args.call());
    return Wrap(info.Env(), log ? at::log_softmax(self, dim) : at::softmax(self, dim));
  });
}

Napi::Value Tensor::Clamp(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.clamp", {
    args.ExpectAtMost(2);
    c10::optional<c10::Scalar> low, high;
    if (args.present(0)) low = args.Number(0, "min");
    if (args.present(1)) high = args.Number(1, "max");
    if (!low && !high) throw SpinError(ErrorCode::kInvalidArgument, "clamp needs min, max or both");
    return Wrap(info.Env(), at::clamp(Value(args.call()), low, high));
  });
}

Napi::Value Tensor::Dropout(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.dropout", {
    args.ExpectAtMost(1);
    const double p = args.Number(0, "p");
    if (!(p >= 0 && p < 1)) throw SpinError(ErrorCode::kInvalidArgument, "tensor.dropout: p must be in [0, 1), got " + std::to_string(p));
    const at::Tensor x = Value(args.call());
    if (!at::isFloatingType(x.scalar_type())) throw SpinError(ErrorCode::kDType, "tensor.dropout: needs a floating-point tensor, got " + std::string(c10::toString(x.scalar_type())));
    return Wrap(info.Env(), p == 0 ? x.clone() : spin::Dropout(x, p, x.scalar_type()));
  });
}

Napi::Value Tensor::Matmul(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.matmul", {
    args.ExpectAtMost(1);
    return Wrap(info.Env(), at::matmul(Value(args.call()), From(args, 0, "other")));
  });
}

Napi::Value Tensor::MatmulAsync(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.matmulAsync", {
    args.ExpectAtMost(1);
    at::Tensor a = Value(args.call());
    at::Tensor b = From(args, 0, "other");
    return RunAsync<at::Tensor>(
        info.Env(), args.call(), a.device(), [a, b]() { return at::matmul(a, b); },
        [](Napi::Env env, at::Tensor& result) { return Wrap(env, std::move(result)); });
  });
}

Napi::Value Tensor::Gather(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.gather", {
    args.ExpectAtMost(2);
    const int64_t dim = args.Int(0, "dim");
    return Wrap(info.Env(), at::gather(Value(args.call()), dim, From(args, 1, "index")));
  });
}

Napi::Value Tensor::IndexSelect(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.indexSelect", {
    args.ExpectAtMost(2);
    const int64_t dim = args.Int(0, "dim");
    return Wrap(info.Env(), at::index_select(Value(args.call()), dim, From(args, 1, "index")));
  });
}

Napi::Value Tensor::Select(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.select", {
    args.ExpectAtMost(2);
    return Wrap(info.Env(), Value(args.call()).select(args.Int(0, "dim"), args.Int(1, "index")));
  });
}

// slice(dim, start | null, end | null, step): Python's t[start:end:step] along dim.
Napi::Value Tensor::Slice(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.slice", {
    args.ExpectAtMost(4);
    const int64_t dim = args.Int(0, "dim");
    const auto start = args.OptionalInt(1, "start");
    const auto end = args.OptionalInt(2, "end");
    const int64_t step = args.present(3) ? args.Int(3, "step") : 1;
    if (step <= 0) throw SpinError(ErrorCode::kInvalidArgument, "slice step must be positive");
    c10::optional<int64_t> from, to;
    if (start) from = *start;
    if (end) to = *end;
    return Wrap(info.Env(), at::slice(Value(args.call()), dim, from, to, step));
  });
}

Napi::Value Tensor::Reshape(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.reshape", {
    args.ExpectAtMost(1);
    return Wrap(info.Env(), Value(args.call()).reshape(args.IntList(0, "shape")));
  });
}

Napi::Value Tensor::Transpose(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.transpose", {
    args.ExpectAtMost(2);
    return Wrap(info.Env(), Value(args.call()).transpose(args.Int(0, "dim0"), args.Int(1, "dim1")));
  });
}

Napi::Value Tensor::Permute(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.permute", {
    args.ExpectAtMost(1);
    return Wrap(info.Env(), Value(args.call()).permute(args.IntList(0, "dims")));
  });
}

Napi::Value Tensor::Squeeze(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.squeeze", {
    args.ExpectAtMost(1);
    const auto dim = args.OptionalInt(0, "dim");
    const at::Tensor& self = Value(args.call());
    return Wrap(info.Env(), dim ? self.squeeze(*dim) : self.squeeze());
  });
}

Napi::Value Tensor::Unsqueeze(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.unsqueeze", {
    args.ExpectAtMost(1);
    return Wrap(info.Env(), Value(args.call()).unsqueeze(args.Int(0, "dim")));
  });
}

Napi::Value Tensor::Expand(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("tensor.expand", {
    args.ExpectAtMost(1);
    return Wrap(info.Env(), Value(args.call()).expand(args.IntList(0, "shape")));
  });
}

Napi::Value Cat(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("cat", {
    args.ExpectAtMost(2);
    const auto tensors = TensorList(args, 0, "tensors");
    const int64_t dim = args.present(1) ? args.Int(1, "dim") : 0;
    return Tensor::Wrap(info.Env(), at::cat(tensors, dim));
  });
}

Napi::Value Stack(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("stack", {
    args.ExpectAtMost(2);
    const auto tensors = TensorList(args, 0, "tensors");
    const int64_t dim = args.present(1) ? args.Int(1, "dim") : 0;
    return Tensor::Wrap(info.Env(), at::stack(tensors, dim));
  });
}

// where(condition, a, b): a where condition holds, else b; a and b may be numbers.
Napi::Value Where(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("where", {
    args.ExpectAtMost(3);
    const at::Tensor& condition = Tensor::From(args, 0, "condition");
    return Tensor::Wrap(info.Env(), at::where(condition, Operand(args, 1, "a"), Operand(args, 2, "b")));
  });
}

}  // namespace spin
