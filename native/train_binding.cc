#include "train_binding.h"

#include <ATen/ATen.h>

#include "async.h"
#include "autocast.h"
#include "errors.h"
#include "instance.h"
#include "logprobs.h"
#include "model/model_binding.h"
#include "spin_loss.h"
#include "tensor.h"

namespace spin {

namespace {

double OptionNumber(const Napi::Object& options, const char* key, double fallback) {
  const Napi::Value value = options.Get(key);
  if (value.IsUndefined() || value.IsNull()) return fallback;
  if (!value.IsNumber()) throw SpinError(ErrorCode::kInvalidArgument, std::string("option '") + key + "' must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

bool OptionBool(const Napi::Object& options, const char* key, bool fallback) {
  const Napi::Value value = options.Get(key);
  if (value.IsUndefined() || value.IsNull()) return fallback;
  if (!value.IsBoolean()) throw SpinError(ErrorCode::kInvalidArgument, std::string("option '") + key + "' must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

Napi::Object Options(const Args& args, size_t i) {
  if (!args.present(i)) return Napi::Object::New(args.env());
  if (!args.at(i).IsObject()) args.Fail(i, "options", "an object");
  return args.at(i).As<Napi::Object>();
}

struct Batch {
  ForwardInputs inputs;
  at::Tensor labels;
};

Batch ReadBatch(const Args& args, const std::shared_ptr<Decoder>& model, size_t first) {
  Batch batch;
  const c10::Device device = model->device();
  batch.inputs.ids = Tensor::From(args, first, "ids").to(device);
  batch.inputs.attention_mask = Tensor::From(args, first + 1, "attentionMask").to(device);
  batch.labels = Tensor::From(args, first + 2, "labels").to(device, at::kLong);
  if (batch.inputs.ids.dim() != 2 || batch.inputs.ids.scalar_type() != at::kLong) {
    throw SpinError(ErrorCode::kInvalidArgument, "ids must be a [rows, tokens] int64 tensor");
  }
  if (batch.labels.sizes() != batch.inputs.ids.sizes() || batch.inputs.attention_mask.sizes() != batch.inputs.ids.sizes()) {
    throw SpinError(ErrorCode::kShapeMismatch, "ids, attentionMask and labels must have one shape");
  }
  return batch;
}

// The policy's response log-probs of a batch, the forward under bf16 autocast when asked
// (backward then runs outside autocast, as PyTorch's recipe says).
ResponseLogprobs PolicyLogprobs(const Decoder& model, const Batch& batch, bool bf16) {
  AutocastGuard autocast(model.device(), bf16);
  return ComputeResponseLogprobs(model, model.Hidden(batch.inputs), batch.labels);
}

// Options both train steps take.
struct StepOptions {
  double scale = 1.0;     // multiplies the loss before backward (1 / accumulation steps)
  bool backward = true;   // false: evaluation (forward and metrics only)
  bool bf16 = false;      // forward under bf16 autocast
};

StepOptions ReadStepOptions(const Napi::Object& options, Batch& batch) {
  batch.inputs.checkpoint_layers = OptionBool(options, "checkpoint", false);
  return {OptionNumber(options, "scale", 1.0), OptionBool(options, "backward", true), OptionBool(options, "autocastBf16", false)};
}

Napi::Value MetricsObject(Napi::Env env, const std::vector<std::pair<std::string, double>>& metrics) {
  Napi::Object out = Napi::Object::New(env);
  for (const auto& [name, value] : metrics) out.Set(name, value);
  return out;
}

}  // namespace

Napi::Value SpinTrainStep(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("spinTrainStep", {
    args.ExpectAtMost(8);
    auto model = ModelHandle::From(args, 0);
    Batch batch = ReadBatch(args, model, 1);
    const int64_t rows = batch.inputs.ids.size(0);
    if (rows % 2 != 0) throw SpinError(ErrorCode::kShapeMismatch, "a SPIN batch holds [real; generated]: an even number of rows");
    const int64_t pairs = rows / 2;
    const at::Tensor opponent_real = Tensor::From(args, 4, "opponentReal").to(model->device(), at::kFloat);
    const at::Tensor opponent_generated = Tensor::From(args, 5, "opponentGenerated").to(model->device(), at::kFloat);
    if (opponent_real.numel() != pairs || opponent_generated.numel() != pairs) {
      throw SpinError(ErrorCode::kShapeMismatch, "opponent log-probs must have one value per pair (" + std::to_string(pairs) + ")");
    }
    at::Tensor identical;
    if (args.present(6)) identical = Tensor::From(args, 6, "identical");
    const Napi::Object options = Options(args, 7);
    SpinLossConfig config;
    const Napi::Value loss_type = options.Get("lossType");
    if (loss_type.IsString()) config.type = ParseSpinLossType(loss_type.As<Napi::String>().Utf8Value());
    config.beta = OptionNumber(options, "beta", 0.1);
    config.label_smoothing = OptionNumber(options, "labelSmoothing", 0.0);
    config.sft_weight = OptionNumber(options, "sftWeight", 0.0);
    const StepOptions step = ReadStepOptions(options, batch);
    return RunAsync<std::vector<std::pair<std::string, double>>>(
        info.Env(), args.call(), model->device(),
        [=]() {
          c10::AutoGradMode grad(step.backward);
          const ResponseLogprobs policy = PolicyLogprobs(*model, batch, step.bf16);
          const at::Tensor tokens_real = policy.tokens.narrow(0, 0, pairs);
          const at::Tensor tokens_generated = policy.tokens.narrow(0, pairs, pairs);
          if (tokens_real.min().item<int64_t>() == 0 || tokens_generated.min().item<int64_t>() == 0) {
            throw SpinError(ErrorCode::kInvalidArgument, "a pair has a response with no label tokens (see the collator's truncation)");
          }
          const PairLogprobs logps{policy.sum.narrow(0, 0, pairs), policy.sum.narrow(0, pairs, pairs), opponent_real,
                                   opponent_generated};
          SpinLossResult result = SpinLoss(logps, config, identical, policy.logit_mean.narrow(0, 0, pairs),
                                           policy.logit_mean.narrow(0, pairs, pairs), tokens_real, tokens_generated);
          const double loss = result.metrics.front().second;
          if (step.backward && std::isfinite(loss)) result.loss.mul(step.scale).backward();
          return result.metrics;
        },
        [](Napi::Env env, std::vector<std::pair<std::string, double>>& metrics) { return MetricsObject(env, metrics); });
  });
}

Napi::Value SftTrainStep(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("sftTrainStep", {
    args.ExpectAtMost(5);
    auto model = ModelHandle::From(args, 0);
    Batch batch = ReadBatch(args, model, 1);
    const Napi::Object options = Options(args, 4);
    const StepOptions step = ReadStepOptions(options, batch);
    return RunAsync<std::vector<std::pair<std::string, double>>>(
        info.Env(), args.call(), model->device(),
        [=]() {
          c10::AutoGradMode grad(step.backward);
          const ResponseLogprobs policy = PolicyLogprobs(*model, batch, step.bf16);
          const double tokens = policy.tokens.sum().item<double>();
          if (tokens == 0) throw SpinError(ErrorCode::kInvalidArgument, "the batch has no label tokens");
          // Mean negative log-likelihood per response token, as transformers' causal-LM loss.
          const at::Tensor loss = policy.sum.sum().neg().div(tokens);
          const double value = loss.item<double>();
          if (step.backward && std::isfinite(value)) loss.mul(step.scale).backward();
          return std::vector<std::pair<std::string, double>>{{"loss", value}, {"tokens", tokens}};
        },
        [](Napi::Env env, std::vector<std::pair<std::string, double>>& metrics) { return MetricsObject(env, metrics); });
  });
}

// ---- optimizer -----------------------------------------------------------------------------

Napi::Function OptimizerHandle::Define(Napi::Env env) {
  Napi::Function cls = DefineClass(env, "NativeOptimizer",
                                   {InstanceMethod<&OptimizerHandle::Step>("step"),
                                    InstanceMethod<&OptimizerHandle::State>("state"),
                                    InstanceMethod<&OptimizerHandle::LoadState>("loadState"),
                                    InstanceMethod<&OptimizerHandle::Dispose>("dispose"),
                                    InstanceAccessor<&OptimizerHandle::Steps>("steps"),
                                    InstanceAccessor<&OptimizerHandle::Disposed>("disposed")});
  Instance(env).optimizer_class = Napi::Persistent(cls);
  return cls;
}

std::atomic<int64_t> OptimizerHandle::live_count_{0};
std::atomic<int64_t> OptimizerHandle::reported_bytes_{0};

OptimizerHandle::OptimizerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OptimizerHandle>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) ThrowTypeError(info.Env(), "Optimizer", "created by createOptimizer()");
  optimizer_ = *info[0].As<Napi::External<std::shared_ptr<Optimizer>>>().Data();
  ++live_count_;
  // The state is as large as the model (RMSprop) or twice (AdamW): V8 must see it, or a
  // dropped optimizer is collected long after its memory is needed.
  for (const auto& [name, tensor] : optimizer_->State()) {
    if (tensor.defined() && tensor.has_storage() && tensor.device().is_cpu()) reported_bytes_here_ += static_cast<int64_t>(tensor.storage().nbytes());
  }
  reported_bytes_ += reported_bytes_here_;
  Napi::MemoryManagement::AdjustExternalMemory(info.Env(), reported_bytes_here_);
}

OptimizerHandle::~OptimizerHandle() { Release(); }

void OptimizerHandle::Release() {
  if (!optimizer_) return;
  // A step in flight holds its own reference: the state is freed when it ends.
  optimizer_.reset();
  --live_count_;
  reported_bytes_ -= reported_bytes_here_;
  Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_bytes_here_);
  reported_bytes_here_ = 0;
}

Optimizer& OptimizerHandle::Get(const char* call) const {
  if (!optimizer_) throw SpinError(ErrorCode::kDisposed, std::string(call) + ": the optimizer was disposed");
  return *optimizer_;
}

Napi::Value OptimizerHandle::Dispose(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

Napi::Value OptimizerHandle::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !optimizer_); }

Napi::Value OptimizerHandle::Create(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("createOptimizer", {
    args.ExpectAtMost(2);
    auto model = ModelHandle::From(args, 0);
    const Napi::Object options = Options(args, 1);
    OptimizerConfig config;
    const Napi::Value kind = options.Get("kind");
    const std::string name = kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "rmsprop";
    if (name == "rmsprop") {
      config.kind = OptimizerKind::kRMSprop;
    } else if (name == "adamw") {
      config.kind = OptimizerKind::kAdamW;
    } else {
      throw SpinError(ErrorCode::kInvalidArgument, "unknown optimizer '" + name + "' (rmsprop or adamw)");
    }
    config.alpha = OptionNumber(options, "alpha", 0.99);
    config.beta1 = OptionNumber(options, "beta1", 0.9);
    config.beta2 = OptionNumber(options, "beta2", 0.999);
    config.eps = OptionNumber(options, "eps", 1e-8);
    config.weight_decay = OptionNumber(options, "weightDecay", 0.0);
    std::vector<std::pair<std::string, at::Tensor>> parameters(model->parameters().begin(), model->parameters().end());
    auto optimizer = std::make_shared<Optimizer>(std::move(parameters), config);
    return Instance(info.Env()).optimizer_class.New(
        {Napi::External<std::shared_ptr<Optimizer>>::New(info.Env(), &optimizer)});
  });
}

// step(lr, maxGradNorm) -> Promise<{gradNorm, applied}>
Napi::Value OptimizerHandle::Step(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("optimizer.step", {
    args.ExpectAtMost(2);
    const double lr = args.Number(0, "lr");
    const double max_norm = args.present(1) ? args.Number(1, "maxGradNorm") : 0.0;
    if (!(lr >= 0)) throw SpinError(ErrorCode::kInvalidArgument, "lr must be a non-negative number");
    Get("optimizer.step");
    auto optimizer = optimizer_;
    return RunAsync<StepResult>(
        info.Env(), args.call(), c10::Device(c10::kCPU), [optimizer, lr, max_norm]() { return optimizer->Step(lr, max_norm); },
        [](Napi::Env env, StepResult& result) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("gradNorm", result.grad_norm);
          out.Set("applied", result.applied);
          return out;
        });
  });
}

Napi::Value OptimizerHandle::State(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("optimizer.state", {
    Napi::Object out = Napi::Object::New(info.Env());
    for (const auto& [name, tensor] : Get("optimizer.state").State()) out.Set(name, Tensor::Wrap(info.Env(), tensor));
    return out;
  });
}

Napi::Value OptimizerHandle::Steps(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("optimizer.steps", { return Napi::Number::New(info.Env(), static_cast<double>(Get("optimizer.steps").steps())); });
}

// loadState(state: Record<string, NativeTensor>, steps)
Napi::Value OptimizerHandle::LoadState(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("optimizer.loadState", {
    args.ExpectAtMost(2);
    if (!args.present(0) || !args.at(0).IsObject()) args.Fail(0, "state", "an object of Tensors");
    const Napi::Object given = args.at(0).As<Napi::Object>();
    std::map<std::string, at::Tensor> state;
    const Napi::Array names = given.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const std::string name = names.Get(i).As<Napi::String>().Utf8Value();
      if (!Tensor::Is(info.Env(), given.Get(name))) args.Fail(0, "state", "an object of Tensors");
      state[name] = Tensor::FromValue(given.Get(name), args.call());
    }
    Get("optimizer.loadState").LoadState(state, args.Int(1, "steps"));
    return info.Env().Undefined();
  });
}

}  // namespace spin
