#include "dist.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "async.h"
#include "errors.h"
#include "model/model_binding.h"
#include "tensor.h"

#if __has_include(<gloo/algorithm.h>)
#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#define SPIN_HAS_GLOO 1
#endif

namespace spin {

namespace {

#ifdef SPIN_HAS_GLOO
struct ProcessGroupState {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  int rank = 0;
  int world = 1;
  std::chrono::milliseconds timeout{300000};
};

std::mutex g_mutex;
std::shared_ptr<ProcessGroupState> g_state;

std::shared_ptr<ProcessGroupState> Current() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_state) throw SpinError(ErrorCode::kInvalidArgument, "no process group: call initDistributed() first");
  return g_state;
}

// Waits for a collective; a dead or hung peer surfaces here as an error within the timeout.
template <typename WorkPtr>
void Wait(const WorkPtr& work, const ProcessGroupState& state, const char* what) {
  try {
    work->wait(state.timeout);
  } catch (const std::exception& e) {
    throw SpinError(ErrorCode::kIO, std::string(what) + " failed on rank " + std::to_string(state.rank) + " of " +
                                        std::to_string(state.world) + " (a peer died, hung past the " +
                                        std::to_string(state.timeout.count()) + " ms timeout, or disconnected): " + e.what());
  }
}

void AllReduceInPlace(const ProcessGroupState& state, at::Tensor& tensor, const std::string& op) {
  c10d::AllreduceOptions options;
  options.reduceOp = op == "max" ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
  options.timeout = state.timeout;
  std::vector<at::Tensor> tensors{tensor};
  Wait(state.group->allreduce(tensors, options), state, "allReduce");
  if (op == "avg") tensor.div_(state.world);  // Gloo has no AVG
}
#endif

[[noreturn]] void NoGloo() {
  throw SpinError(ErrorCode::kInvalidArgument, "this build of spin-native has no Gloo (libgloo-dev was missing at build time)");
}

}  // namespace

Napi::Value InitProcessGroup(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("initProcessGroup", {
    args.ExpectAtMost(1);
    if (!args.present(0) || !args.at(0).IsObject()) args.Fail(0, "options", "an object");
    const Napi::Object o = args.at(0).As<Napi::Object>();
    const int rank = o.Get("rank").ToNumber().Int32Value();
    const int world = o.Get("worldSize").ToNumber().Int32Value();
    const std::string address = o.Get("masterAddr").ToString().Utf8Value();
    const int port = o.Get("masterPort").ToNumber().Int32Value();
    const int64_t timeout_ms = o.Get("timeoutMs").IsNumber() ? o.Get("timeoutMs").ToNumber().Int64Value() : 300000;
    if (world < 1 || rank < 0 || rank >= world) throw SpinError(ErrorCode::kInvalidArgument, "rank must be in [0, worldSize)");
    if (port < 1 || port > 65535) throw SpinError(ErrorCode::kInvalidArgument, "masterPort must be a TCP port");
#ifdef SPIN_HAS_GLOO
    return RunAsync<bool>(
        info.Env(), args.call(), c10::Device(c10::kCPU),
        [=]() {
          auto state = std::make_shared<ProcessGroupState>();
          state->rank = rank;
          state->world = world;
          state->timeout = std::chrono::milliseconds(timeout_ms);
          c10d::TCPStoreOptions store_options;
          store_options.port = static_cast<uint16_t>(port);
          store_options.isServer = rank == 0;
          store_options.numWorkers = world;
          store_options.timeout = state->timeout;
          try {
            state->store = c10::make_intrusive<c10d::TCPStore>(address, store_options);
            auto options = c10d::ProcessGroupGloo::Options::create(state->timeout);
            options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(address));
            state->group = c10::make_intrusive<c10d::ProcessGroupGloo>(state->store, rank, world, options);
          } catch (const std::exception& e) {
            throw SpinError(ErrorCode::kIO, "rendezvous at " + address + ":" + std::to_string(port) + " failed for rank " +
                                                std::to_string(rank) + ": " + e.what());
          }
          std::lock_guard<std::mutex> lock(g_mutex);
          g_state = state;
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
#else
    NoGloo();
#endif
  });
}

Napi::Value DestroyProcessGroup(const Napi::CallbackInfo& info) {
#ifdef SPIN_HAS_GLOO
  std::lock_guard<std::mutex> lock(g_mutex);
  g_state.reset();
#endif
  return info.Env().Undefined();
}

Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("allReduce", {
    args.ExpectAtMost(2);
    at::Tensor tensor = Tensor::From(args, 0, "tensor");
    const std::string op = args.present(1) ? args.String(1, "op") : "sum";
    if (op != "sum" && op != "avg" && op != "max") throw SpinError(ErrorCode::kInvalidArgument, "op must be sum, avg or max");
#ifdef SPIN_HAS_GLOO
    auto state = Current();
    if (!tensor.is_contiguous()) throw SpinError(ErrorCode::kInvalidArgument, "allReduce needs a contiguous tensor");
    return RunAsync<bool>(
        info.Env(), args.call(), tensor.device(),
        [state, tensor, op]() mutable {
          c10::NoGradGuard no_grad;
          AllReduceInPlace(*state, tensor, op);
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
#else
    NoGloo();
#endif
  });
}

Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("broadcast", {
    args.ExpectAtMost(2);
    at::Tensor tensor = Tensor::From(args, 0, "tensor");
    const int64_t root = args.present(1) ? args.Int(1, "root") : 0;
#ifdef SPIN_HAS_GLOO
    auto state = Current();
    return RunAsync<bool>(
        info.Env(), args.call(), tensor.device(),
        [state, tensor, root]() mutable {
          c10::NoGradGuard no_grad;
          c10d::BroadcastOptions options;
          options.rootRank = root;
          options.timeout = state->timeout;
          std::vector<at::Tensor> tensors{tensor};
          Wait(state->group->broadcast(tensors, options), *state, "broadcast");
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
#else
    NoGloo();
#endif
  });
}

Napi::Value AllGather(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("allGather", {
    args.ExpectAtMost(1);
    at::Tensor tensor = Tensor::From(args, 0, "tensor").contiguous();
#ifdef SPIN_HAS_GLOO
    auto state = Current();
    return RunAsync<std::vector<at::Tensor>>(
        info.Env(), args.call(), tensor.device(),
        [state, tensor]() mutable {
          std::vector<std::vector<at::Tensor>> outputs(1);
          for (int r = 0; r < state->world; ++r) outputs[0].push_back(at::empty_like(tensor));
          std::vector<at::Tensor> inputs{tensor};
          c10d::AllgatherOptions options;
          options.timeout = state->timeout;
          Wait(state->group->allgather(outputs, inputs, options), *state, "allGather");
          return outputs[0];
        },
        [](Napi::Env env, std::vector<at::Tensor>& gathered) -> Napi::Value {
          Napi::Array out = Napi::Array::New(env, gathered.size());
          for (size_t i = 0; i < gathered.size(); ++i) out.Set(static_cast<uint32_t>(i), Tensor::Wrap(env, gathered[i]));
          return out;
        });
#else
    NoGloo();
#endif
  });
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("barrier", {
#ifdef SPIN_HAS_GLOO
    auto state = Current();
    return RunAsync<bool>(
        info.Env(), args.call(), c10::Device(c10::kCPU),
        [state]() {
          // A one-element all-reduce: unlike Gloo's barrier, it honours the timeout everywhere.
          at::Tensor token = at::zeros({1});
          AllReduceInPlace(*state, token, "sum");
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
#else
    NoGloo();
#endif
  });
}

Napi::Value AllReduceGradients(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("allReduceGradients", {
    args.ExpectAtMost(2);
    auto model = ModelHandle::From(args, 0);
    const int64_t bucket_bytes = args.present(1) ? args.Int(1, "bucketBytes") : 25 << 20;
#ifdef SPIN_HAS_GLOO
    auto state = Current();
    return RunAsync<bool>(
        info.Env(), args.call(), model->device(),
        [state, model, bucket_bytes]() {
          c10::NoGradGuard no_grad;
          std::vector<at::Tensor> grads;
          for (const auto& [name, p] : model->parameters()) {
            // A parameter without a gradient on this rank still takes part, as zeros.
            if (!p.grad().defined()) const_cast<at::Tensor&>(p).mutable_grad() = at::zeros_like(p);
            grads.push_back(p.grad());
          }
          // Flat buckets of about bucket_bytes, in parameter order (the same on every rank).
          size_t first = 0;
          while (first < grads.size()) {
            size_t last = first;
            int64_t bytes = 0;
            while (last < grads.size() && (last == first || bytes + grads[last].nbytes() <= static_cast<size_t>(bucket_bytes))) {
              bytes += grads[last].nbytes();
              ++last;
            }
            std::vector<at::Tensor> views;
            for (size_t i = first; i < last; ++i) views.push_back(grads[i].reshape({-1}));
            at::Tensor flat = at::cat(views);
            AllReduceInPlace(*state, flat, "avg");
            int64_t offset = 0;
            for (size_t i = first; i < last; ++i) {
              const int64_t n = grads[i].numel();
              grads[i].copy_(flat.narrow(0, offset, n).view_as(grads[i]));
              offset += n;
            }
            first = last;
          }
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
#else
    NoGloo();
#endif
  });
}

Napi::Value BroadcastParameters(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("broadcastParameters", {
    args.ExpectAtMost(2);
    auto model = ModelHandle::From(args, 0);
    const int64_t root = args.present(1) ? args.Int(1, "root") : 0;
#ifdef SPIN_HAS_GLOO
    auto state = Current();
    return RunAsync<bool>(
        info.Env(), args.call(), model->device(),
        [state, model, root]() {
          c10::NoGradGuard no_grad;
          for (const auto& [name, p] : model->parameters()) {
            c10d::BroadcastOptions options;
            options.rootRank = root;
            options.timeout = state->timeout;
            std::vector<at::Tensor> tensors{p};
            Wait(state->group->broadcast(tensors, options), *state, "broadcastParameters");
          }
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
#else
    NoGloo();
#endif
  });
}

}  // namespace spin
