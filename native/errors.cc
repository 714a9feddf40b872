#include "errors.h"

#include <c10/util/Exception.h>

#include <new>

#include "instance.h"

namespace spin {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kShapeMismatch: return "SHAPE_MISMATCH";
    case ErrorCode::kDType: return "DTYPE";
    case ErrorCode::kDevice: return "DEVICE";
    case ErrorCode::kOutOfMemory: return "OUT_OF_MEMORY";
    case ErrorCode::kDisposed: return "DISPOSED";
    case ErrorCode::kIO: return "IO";
    case ErrorCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case ErrorCode::kTorch: return "TORCH";
  }
  return "TORCH";
}

namespace {

bool Contains(const std::string& text, const char* needle) {
  return text.find(needle) != std::string::npos;
}

// libtorch raises most failures as plain c10::Error; its messages are stable enough to
// sort into the codes a caller can act on.
ErrorCode ClassifyTorchMessage(const std::string& m) {
  if (Contains(m, "out of memory") || Contains(m, "DefaultCPUAllocator: can't allocate")) {
    return ErrorCode::kOutOfMemory;
  }
  if (Contains(m, "out of bounds") || Contains(m, "out of range") || Contains(m, "duplicate dims")) {
    return ErrorCode::kInvalidArgument;
  }
  if (Contains(m, "same device") || Contains(m, "CUDA") || Contains(m, "device type")) {
    return ErrorCode::kDevice;
  }
  if (Contains(m, "scalar type") || Contains(m, "dtype") || Contains(m, "not implemented for") ||
      Contains(m, "result type")) {
    return ErrorCode::kDType;
  }
  if (Contains(m, "size") || Contains(m, "shape") || Contains(m, "cannot be multiplied") ||
      Contains(m, "dimension") || Contains(m, "must match")) {
    return ErrorCode::kShapeMismatch;
  }
  return ErrorCode::kTorch;
}

// Drops the C++ frames that some libtorch versions append to the message.
std::string WithoutBacktrace(std::string message) {
  const auto at = message.find("\nException raised from");
  if (at != std::string::npos) message.resize(at);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return message;
}

}  // namespace

Failure CaptureCurrentException() {
  try {
    throw;
  } catch (const SpinError& e) {
    return {e.code(), e.what()};
  } catch (const c10::OutOfMemoryError& e) {
    return {ErrorCode::kOutOfMemory, WithoutBacktrace(e.what_without_backtrace())};
  } catch (const c10::TypeError& e) {
    return {ErrorCode::kDType, WithoutBacktrace(e.what_without_backtrace())};
  } catch (const c10::IndexError& e) {
    return {ErrorCode::kInvalidArgument, WithoutBacktrace(e.what_without_backtrace())};
  } catch (const c10::Error& e) {
    std::string message = WithoutBacktrace(e.what_without_backtrace());
    return {ClassifyTorchMessage(message), message};
  } catch (const std::bad_alloc&) {
    return {ErrorCode::kOutOfMemory, "memory allocation failed"};
  } catch (const std::exception& e) {
    // Some libtorch checks (reshape's, in 1.13) throw plain std::runtime_error.
    std::string message = WithoutBacktrace(e.what());
    return {ClassifyTorchMessage(message), message};
  } catch (...) {
    return {ErrorCode::kTorch, "unknown native exception"};
  }
}

Napi::Error MakeError(Napi::Env env, const std::string& call, const Failure& failure) {
  const std::string message = call + ": " + failure.message;
  const char* code = ErrorCodeName(failure.code);
  const Napi::FunctionReference& error_class = Instance(env).error_class;
  if (error_class.IsEmpty()) {
    Napi::Error error = Napi::Error::New(env, message);
    error.Set("code", Napi::String::New(env, code));
    return error;
  }
  Napi::Object error = error_class.New(
      {Napi::String::New(env, message), Napi::String::New(env, code), Napi::String::New(env, call)});
  return Napi::Error(env, error);
}

void ThrowTypeError(Napi::Env env, const std::string& call, const std::string& what) {
  throw Napi::TypeError::New(env, call + ": " + what);
}

void RegisterErrorClass(Napi::Env env, Napi::Function error_class) {
  Instance(env).error_class = Napi::Persistent(error_class);
}

}  // namespace spin
