#include "dist.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <chrono>
#include <string>
#include <vector>

#include "async.h"
#include "errors.h"
#include "gradient_reducer.h"
#include "instance.h"
#include "model/model_binding.h"
#include "process_group.h"
#include "tensor.h"
#include "train_binding.h"

namespace spin {

namespace {

Reduction ParseReduction(const std::string& op) {
  if (op == "sum") return Reduction::kSum;
  if (op == "avg") return Reduction::kAverage;
  if (op == "max") return Reduction::kMax;
  throw SpinError(ErrorCode::kInvalidArgument, "op must be sum, avg or max");
}

Napi::Value Undefined(Napi::Env env, bool&) { return env.Undefined(); }

#ifdef SPIN_HAS_C10D
// Runs `collective` on a worker thread against the current group; resolves to undefined.
template <typename Collective>
Napi::Value RunCollective(const Napi::CallbackInfo& info, const Args& args, c10::Device device, Collective collective) {
  auto group = ProcessGroup::Current();
  return RunAsync<bool>(
      info.Env(), args.call(), device,
      [group, collective]() mutable {
        c10::NoGradGuard no_grad;
        collective(*group);
        return true;
      },
      Undefined);
}
#endif

}  // namespace

std::vector<std::string> DistributedBackends() {
  std::vector<std::string> backends;
#ifdef SPIN_HAS_GLOO
  backends.push_back("gloo");
#endif
#ifdef SPIN_HAS_NCCL
  backends.push_back("nccl");
#endif
  return backends;
}

Napi::Value InitProcessGroup(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("initProcessGroup", {
    args.ExpectAtMost(1);
    if (!args.present(0) || !args.at(0).IsObject()) args.Fail(0, "options", "an object");
    const Napi::Object o = args.at(0).As<Napi::Object>();
    GroupOptions options;
    options.rank = o.Get("rank").ToNumber().Int32Value();
    options.world = o.Get("worldSize").ToNumber().Int32Value();
    options.address = o.Get("masterAddr").ToString().Utf8Value();
    options.port = o.Get("masterPort").ToNumber().Int32Value();
    options.local_rank = o.Get("localRank").IsNumber() ? o.Get("localRank").ToNumber().Int32Value() : 0;
    options.single_node = o.Get("singleNode").ToBoolean();
    const Napi::Value job_id = o.Get("jobId");
    if (!job_id.IsString() || job_id.As<Napi::String>().Utf8Value().empty()) args.Fail(0, "options.jobId", "a non-empty string");
    options.job_id = job_id.As<Napi::String>().Utf8Value();
    options.timeout = std::chrono::milliseconds(o.Get("timeoutMs").IsNumber() ? o.Get("timeoutMs").ToNumber().Int64Value() : 1800000);
    // c10d reads a zero timeout as "wait forever".
    if (options.timeout.count() <= 0) throw SpinError(ErrorCode::kInvalidArgument, "timeoutMs must be positive");
    if (options.world < 1 || options.rank < 0 || options.rank >= options.world) {
      throw SpinError(ErrorCode::kInvalidArgument, "rank must be in [0, worldSize)");
    }
    if (options.port < 1 || options.port > 65535) throw SpinError(ErrorCode::kInvalidArgument, "masterPort must be a TCP port");
    RequireBackend();
#ifdef SPIN_HAS_C10D
    ProcessGroup::PrepareEnvironment();
    return RunAsync<bool>(
        info.Env(), args.call(), c10::Device(c10::kCPU),
        [options]() {
          ProcessGroup::Join(options);
          return true;
        },
        Undefined);
#endif
  });
}

Napi::Value DestroyProcessGroup(const Napi::CallbackInfo& info) {
#ifdef SPIN_HAS_C10D
  ProcessGroup::Leave();
#endif
  return info.Env().Undefined();
}

Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("allReduce", {
    args.ExpectAtMost(2);
    at::Tensor tensor = Tensor::From(args, 0, "tensor");
    const Reduction op = ParseReduction(args.present(1) ? args.String(1, "op") : "sum");
    if (!tensor.is_contiguous()) throw SpinError(ErrorCode::kInvalidArgument, "allReduce needs a contiguous tensor");
    RequireBackend();
#ifdef SPIN_HAS_C10D
    return RunCollective(info, args, tensor.device(), [tensor, op](ProcessGroup& group) mutable { group.AllReduce(tensor, op); });
#endif
  });
}

Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("broadcast", {
    args.ExpectAtMost(2);
    at::Tensor tensor = Tensor::From(args, 0, "tensor");
    const int64_t root = args.present(1) ? args.Int(1, "root") : 0;
    if (!tensor.is_contiguous()) throw SpinError(ErrorCode::kInvalidArgument, "broadcast needs a contiguous tensor");
    RequireBackend();
#ifdef SPIN_HAS_C10D
    return RunCollective(info, args, tensor.device(), [tensor, root](ProcessGroup& group) mutable { group.Broadcast(tensor, root); });
#endif
  });
}

Napi::Value AllGather(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("allGather", {
    args.ExpectAtMost(1);
    at::Tensor tensor = Tensor::From(args, 0, "tensor");
    RequireBackend();
#ifdef SPIN_HAS_C10D
    auto group = ProcessGroup::Current();
    return RunAsync<std::vector<at::Tensor>>(
        info.Env(), args.call(), tensor.device(), [group, tensor]() { return group->AllGather(tensor).unbind(0); },
        [](Napi::Env env, std::vector<at::Tensor>& gathered) -> Napi::Value {
          Napi::Array out = Napi::Array::New(env, gathered.size());
          for (size_t i = 0; i < gathered.size(); ++i) out.Set(static_cast<uint32_t>(i), Tensor::Wrap(env, gathered[i]));
          return out;
        });
#endif
  });
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("barrier", {
    RequireBackend();
#ifdef SPIN_HAS_C10D
    // A one-element all-reduce: unlike Gloo's barrier, it honours the timeout everywhere.
    return RunCollective(info, args, c10::Device(c10::kCPU), [](ProcessGroup& group) {
      at::Tensor token = at::zeros({1});
      group.AllReduce(token, Reduction::kSum);
    });
#endif
  });
}

Napi::Value BroadcastParameters(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("broadcastParameters", {
    args.ExpectAtMost(2);
    auto model = ModelHandle::From(args, 0);
    const int64_t root = args.present(1) ? args.Int(1, "root") : 0;
    model->RequireWhole(args.call());
    RequireBackend();
#ifdef SPIN_HAS_C10D
    return RunCollective(info, args, model->device(), [model, root](ProcessGroup& group) {
      for (const auto& [name, parameter] : model->TrainableParameters()) {
        at::Tensor target = parameter;
        group.Broadcast(target, root);
      }
    });
#endif
  });
}

// ---- gradient reducer ----------------------------------------------------------------------

Napi::Function GradientReducerHandle::Define(Napi::Env env) {
  Napi::Function cls = DefineClass(env, "NativeGradientReducer",
                                   {InstanceMethod<&GradientReducerHandle::Arm>("arm"),
                                    InstanceMethod<&GradientReducerHandle::Finish>("finish"),
                                    InstanceMethod<&GradientReducerHandle::Dispose>("dispose")});
  Instance(env).gradient_reducer_class = Napi::Persistent(cls);
  return cls;
}

GradientReducerHandle::GradientReducerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GradientReducerHandle>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) ThrowTypeError(info.Env(), "GradientReducer", "created by createGradientReducer()");
  reducer_ = *info[0].As<Napi::External<std::shared_ptr<GradientReducer>>>().Data();
}

Napi::Value GradientReducerHandle::Create(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("createGradientReducer", {
    args.ExpectAtMost(3);
    auto model = ModelHandle::From(args, 0);
    const int64_t bucket_bytes = args.present(1) ? args.Int(1, "bucketBytes") : 25 << 20;
    RequireBackend();
#ifdef SPIN_HAS_C10D
    // With a stage-2 optimizer, the reducer fills its gradient shards (its layout, its buckets).
    const auto optimizer = args.present(2) ? OptimizerHandle::From(args, 2) : nullptr;
    const bool sharded = optimizer && optimizer->partition() && optimizer->partition()->stage() >= 2;
    auto reducer = sharded ? GradientReducer::Create(optimizer->partition()) : GradientReducer::Create(ProcessGroup::Current(), *model, bucket_bytes);
    return Instance(info.Env()).gradient_reducer_class.New(
        {Napi::External<std::shared_ptr<GradientReducer>>::New(info.Env(), &reducer)});
#endif
  });
}

Napi::Value GradientReducerHandle::Arm(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("gradientReducer.arm", {
    if (!reducer_) throw SpinError(ErrorCode::kDisposed, "the gradient reducer was disposed");
#ifdef SPIN_HAS_C10D
    reducer_->Arm();
#endif
    return info.Env().Undefined();
  });
}

Napi::Value GradientReducerHandle::Finish(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("gradientReducer.finish", {
    if (!reducer_) throw SpinError(ErrorCode::kDisposed, "the gradient reducer was disposed");
#ifdef SPIN_HAS_C10D
    auto reducer = reducer_;
    return RunAsync<ReductionStats>(
        info.Env(), args.call(), c10::Device(c10::kCPU), [reducer]() { return reducer->Finish(); },
        [](Napi::Env env, ReductionStats& stats) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("buckets", static_cast<double>(stats.buckets));
          out.Set("overlapped", static_cast<double>(stats.overlapped));
          return out;
        });
#else
    return info.Env().Undefined();
#endif
  });
}

// Releases the reducer: its hooks become no-ops (a running finish() keeps it alive until it resolves).
Napi::Value GradientReducerHandle::Dispose(const Napi::CallbackInfo& info) {
  reducer_.reset();
  return info.Env().Undefined();
}

}  // namespace spin
