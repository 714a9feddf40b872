#include "args.h"

#include <cmath>

#include "errors.h"

namespace spin {

void Args::ExpectAtMost(size_t n) const {
  if (info_.Length() > n) {
    ThrowTypeError(env(), call_, "expected at most " + std::to_string(n) + " argument(s), got " +
                                     std::to_string(info_.Length()));
  }
}

void Args::Fail(size_t i, const char* name, const char* expected) const {
  ThrowTypeError(env(), call_,
                 "argument " + std::to_string(i + 1) + " '" + name + "' must be " + expected);
}

int64_t Args::Int(size_t i, const char* name) const {
  if (i >= size() || !info_[i].IsNumber()) Fail(i, name, "an integer");
  const double value = info_[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(value) || std::floor(value) != value || std::fabs(value) > 9007199254740991.0) {
    Fail(i, name, "an integer");
  }
  return static_cast<int64_t>(value);
}

double Args::Number(size_t i, const char* name) const {
  if (i >= size() || !info_[i].IsNumber()) Fail(i, name, "a number");
  return info_[i].As<Napi::Number>().DoubleValue();
}

bool Args::Bool(size_t i, const char* name) const {
  if (i >= size() || !info_[i].IsBoolean()) Fail(i, name, "a boolean");
  return info_[i].As<Napi::Boolean>().Value();
}

std::string Args::String(size_t i, const char* name) const {
  if (i >= size() || !info_[i].IsString()) Fail(i, name, "a string");
  return info_[i].As<Napi::String>().Utf8Value();
}

std::vector<int64_t> Args::IntList(size_t i, const char* name) const {
  if (i >= size() || !info_[i].IsArray()) Fail(i, name, "an array of integers");
  const Napi::Array array = info_[i].As<Napi::Array>();
  std::vector<int64_t> values;
  values.reserve(array.Length());
  for (uint32_t k = 0; k < array.Length(); ++k) {
    const Napi::Value item = array.Get(k);
    if (!item.IsNumber()) Fail(i, name, "an array of integers");
    const double value = item.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(value) || std::floor(value) != value || std::fabs(value) > 9007199254740991.0) {
      Fail(i, name, "an array of integers");
    }
    values.push_back(static_cast<int64_t>(value));
  }
  return values;
}

Napi::Function Args::Function(size_t i, const char* name) const {
  if (i >= size() || !info_[i].IsFunction()) Fail(i, name, "a function");
  return info_[i].As<Napi::Function>();
}

std::optional<int64_t> Args::OptionalInt(size_t i, const char* name) const {
  if (!present(i)) return std::nullopt;
  return Int(i, name);
}

std::optional<std::string> Args::OptionalString(size_t i, const char* name) const {
  if (!present(i)) return std::nullopt;
  return String(i, name);
}

std::optional<std::vector<int64_t>> Args::OptionalIntList(size_t i, const char* name) const {
  if (!present(i)) return std::nullopt;
  return IntList(i, name);
}

bool Args::OptionalBool(size_t i, const char* name, bool fallback) const {
  if (!present(i)) return fallback;
  return Bool(i, name);
}

}  // namespace spin
