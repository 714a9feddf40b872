// Strict argument readers for native entry points: a wrong type or a missing argument is a
// TypeError naming the call and the parameter.
#pragma once

#include <napi.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "errors.h"

namespace spin {

class Args {
 public:
  Args(const Napi::CallbackInfo& info, std::string call) : info_(info), call_(std::move(call)) {}

  Napi::Env env() const { return info_.Env(); }
  const char* call() const { return call_.c_str(); }
  size_t size() const { return info_.Length(); }
  bool present(size_t i) const { return i < info_.Length() && !info_[i].IsUndefined() && !info_[i].IsNull(); }
  Napi::Value at(size_t i) const { return info_[i]; }

  void ExpectAtMost(size_t n) const;
  int64_t Int(size_t i, const char* name) const;
  double Number(size_t i, const char* name) const;
  bool Bool(size_t i, const char* name) const;
  std::string String(size_t i, const char* name) const;
  std::vector<int64_t> IntList(size_t i, const char* name) const;
  Napi::Function Function(size_t i, const char* name) const;

  std::optional<int64_t> OptionalInt(size_t i, const char* name) const;
  std::optional<std::string> OptionalString(size_t i, const char* name) const;
  std::optional<std::vector<int64_t>> OptionalIntList(size_t i, const char* name) const;
  bool OptionalBool(size_t i, const char* name, bool fallback) const;

  [[noreturn]] void Fail(size_t i, const char* name, const char* expected) const;

 private:
  const Napi::CallbackInfo& info_;
  std::string call_;
};

}  // namespace spin

// The body of a native entry point: reads arguments through `args` and turns any C++
// failure into a SpinNativeError naming `call`. Use as SPIN_ENTRY("tensor.add", { ... }).
#define SPIN_ENTRY(entry_name, ...)          \
  ::spin::Args args(info, entry_name);      \
  return ::spin::Guard(info.Env(), args.call(), [&]() -> Napi::Value __VA_ARGS__)
