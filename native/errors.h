// Every C++ failure reaches JavaScript as a SpinNativeError (lib/core/errors.ts) with a code,
// the name of the call, and libtorch's reason without its C++ backtrace.
#pragma once

#include <napi.h>

#include <stdexcept>
#include <string>

namespace spin {

// Keep in sync with ErrorCode in lib/core/errors.ts.
enum class ErrorCode {
  kShapeMismatch,
  kDType,
  kDevice,
  kOutOfMemory,
  kDisposed,
  kIO,
  kInvalidArgument,
  kTorch,  // a libtorch failure that fits no narrower code
};

const char* ErrorCodeName(ErrorCode code);

// Raised by the addon's own checks; carries its code.
class SpinError : public std::runtime_error {
 public:
  SpinError(ErrorCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

// A failure captured as plain data, so it can cross from a worker thread to the JS thread.
struct Failure {
  ErrorCode code;
  std::string message;
};

// Classifies the exception being handled. Call only inside a catch block.
Failure CaptureCurrentException();

// Builds the JS error for `call`; the error class comes from RegisterErrorClass.
Napi::Error MakeError(Napi::Env env, const std::string& call, const Failure& failure);

// Throws a TypeError for a wrongly typed or missing argument.
[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& call, const std::string& what);

void RegisterErrorClass(Napi::Env env, Napi::Function error_class);

// Runs `body`; any C++ exception other than a JS error already thrown becomes a
// SpinNativeError naming `call`.
template <typename Body>
auto Guard(Napi::Env env, const std::string& call, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw MakeError(env, call, CaptureCurrentException());
  }
}

}  // namespace spin
