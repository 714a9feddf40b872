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

// The options object's `key`: the caller passes resolved values (the defaults live in the
// TypeScript options table), so a missing one is an error naming it.
Napi::Value Required(const Napi::Object& options, const char* key) {
  const Napi::Value value = options.Get(key);
  if (value.IsUndefined() || value.IsNull()) throw SpinError(ErrorCode::kInvalidArgument, std::string("option '") + key + "' is required");
  return value;
}

double OptionNumber(const Napi::Object& options, const char* key) {
  const Napi::Value value = Required(options, key);
  if (!value.IsNumber()) throw SpinError(ErrorCode::kInvalidArgument, std::string("option '") + key + "' must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

bool OptionBool(const Napi::Object& options, const char* key) {
  const Napi::Value value = Required(options, key);
  if (!value.IsBoolean()) throw SpinError(ErrorCode::kInvalidArgument, std::string("option '") + key + "' must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

std::string OptionString(const Napi::Object& options, const char* key) {
  const Napi::Value value = Required(options, key);
  if (!value.IsString()) throw SpinError(ErrorCode::kInvalidArgument, std::string("option '") + key + "' must be a string");
  return value.As<Napi::String>().Utf8Value();
}

Napi::Object Options(const Args& args, size_t i) {
  if (!args.present(i) || !args.at(i).IsObject()) args.Fail(i, "options", "an object");
  return args.at(i).As<Napi::Object>();
}

// The named tensor of a batch object ({ids, attentionMask, labels, …}).
at::Tensor BatchTensor(const Napi::Object& batch, const char* key, const char* call) {
  const Napi::Value value = batch.Get(key);
  if (!Tensor::Is(batch.Env(), value)) throw SpinError(ErrorCode::kInvalidArgument, std::string("batch.") + key + " must be a Tensor");
  return Tensor::FromValue(value, call);
}

struct Batch {
  ForwardInputs inputs;
  at::Tensor labels;
  bool packed = false;  // run without padding (packed_batch.h)
};

Batch ReadBatch(const Napi::Object& given, const std::shared_ptr<Decoder>& model, const char* call) {
  Batch batch;
  const c10::Device device = model->device();
  batch.inputs.ids = BatchTensor(given, "ids", call).to(device);
  batch.inputs.attention_mask = BatchTensor(given, "attentionMask", call).to(device);
  batch.labels = BatchTensor(given, "labels", call).to(device, at::kLong);
  if (batch.inputs.ids.dim() != 2 || batch.inputs.ids.scalar_type() != at::kLong) {
    throw SpinError(ErrorCode::kInvalidArgument, "ids must be a [rows, tokens] int64 tensor");
  }
  if (batch.labels.sizes() != batch.inputs.ids.sizes() || batch.inputs.attention_mask.sizes() != batch.inputs.ids.sizes()) {
    throw SpinError(ErrorCode::kShapeMismatch, "ids, attentionMask and labels must have one shape");
  }
  return batch;
}

// The policy's response log-probs of a batch, the forward under bf16 autocast when asked
// (backward then runs outside autocast, as PyTorch's recipe says). `share_pairs`: the batch is
// [real; generated] and each pair's prompt runs once.
ResponseLogprobs PolicyLogprobs(const Decoder& model, const Batch& batch, bool bf16, bool share_pairs) {
  AutocastGuard autocast(model.device(), bf16);
  return BatchLogprobs(model, batch.inputs, batch.labels, batch.packed, share_pairs);
}

// Options both train steps take.
struct StepOptions {
  double scale = 1.0;     // multiplies the loss before backward (1 / accumulation steps)
  bool backward = true;   // false: evaluation (forward and metrics only)
  bool bf16 = false;      // forward under bf16 autocast
};

StepOptions ReadStepOptions(const Napi::Object& options, Batch& batch) {
  batch.inputs.checkpoint_layers = OptionBool(options, "checkpoint");
  batch.packed = OptionBool(options, "packing");
  const StepOptions step{OptionNumber(options, "scale"), OptionBool(options, "backward"), OptionBool(options, "autocastBf16")};
  // Adapter dropout is on in a step that trains, off in evaluation.
  batch.inputs.training = step.backward;
  return step;
}

SpinLossConfig ReadLossConfig(const Napi::Object& options) {
  return {ParseSpinLossType(OptionString(options, "lossType")), OptionNumber(options, "beta"), OptionNumber(options, "labelSmoothing")};
}

// Σ over rows of the per-token mean logit, divided by the tokens (the original's logits/* metric).
double PerTokenMean(const at::Tensor& sum, const at::Tensor& tokens) {
  const double count = tokens.to(at::kDouble).sum().item<double>();
  return count == 0 ? 0.0 : sum.to(at::kDouble).sum().item<double>() / count;
}

Napi::Value MetricsObject(Napi::Env env, const Metrics& metrics) {
  Napi::Object out = Napi::Object::New(env);
  for (const auto& [name, value] : metrics) out.Set(name, value);
  return out;
}

}  // namespace

// spinTrainStep(model, {ids, attentionMask, labels, opponentReal, opponentGenerated, identical?}, options)
Napi::Value SpinTrainStep(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("spinTrainStep", {
    args.ExpectAtMost(3);
    auto model = ModelHandle::From(args, 0);
    const Napi::Object given = Options(args, 1);
    Batch batch = ReadBatch(given, model, args.call());
    const int64_t rows = batch.inputs.ids.size(0);
    if (rows % 2 != 0) throw SpinError(ErrorCode::kShapeMismatch, "a SPIN batch holds [real; generated]: an even number of rows");
    const int64_t pairs = rows / 2;
    const at::Tensor opponent_real = BatchTensor(given, "opponentReal", args.call()).to(model->device(), at::kFloat);
    const at::Tensor opponent_generated = BatchTensor(given, "opponentGenerated", args.call()).to(model->device(), at::kFloat);
    if (opponent_real.numel() != pairs || opponent_generated.numel() != pairs) {
      throw SpinError(ErrorCode::kShapeMismatch, "opponent log-probs must have one value per pair (" + std::to_string(pairs) + ")");
    }
    const Napi::Value identical_value = given.Get("identical");
    const at::Tensor identical = identical_value.IsUndefined() || identical_value.IsNull() ? at::Tensor() : BatchTensor(given, "identical", args.call());
    const Napi::Object options = Options(args, 2);
    const SpinLossConfig loss = ReadLossConfig(options);
    const double sft_weight = OptionNumber(options, "sftWeight");
    const bool average = OptionBool(options, "averageLogProb");
    const StepOptions step = ReadStepOptions(options, batch);
    return RunAsync<Metrics>(
        info.Env(), args.call(), model->device(),
        [=]() {
          c10::AutoGradMode grad(step.backward);
          const ResponseLogprobs policy = PolicyLogprobs(*model, batch, step.bf16, true);
          const at::Tensor tokens_real = policy.tokens.narrow(0, 0, pairs);
          const at::Tensor tokens_generated = policy.tokens.narrow(0, pairs, pairs);
          if (tokens_real.min().item<int64_t>() == 0 || tokens_generated.min().item<int64_t>() == 0) {
            throw SpinError(ErrorCode::kInvalidArgument, "a pair has a response with no label tokens (see the collator's truncation)");
          }
          const at::Tensor policy_real = policy.sum.narrow(0, 0, pairs);
          PairLogprobs logps{policy_real, policy.sum.narrow(0, pairs, pairs), opponent_real, opponent_generated};
          if (average) {
            // Per-token means (TRL ≥ 0.7.11's IPO): the opponent scored the same tokens.
            const at::Tensor real_count = tokens_real.to(at::kFloat), generated_count = tokens_generated.to(at::kFloat);
            logps = {logps.policy_real.div(real_count), logps.policy_generated.div(generated_count), logps.opponent_real.div(real_count),
                     logps.opponent_generated.div(generated_count)};
          }
          at::Tensor total = SpinLoss(logps, loss, identical);
          Metrics metrics;
          // The SFT term is added only when asked for, so that α = 0 is the original loss bit for bit.
          if (sft_weight != 0) {
            const at::Tensor sft = SftLoss(policy_real, tokens_real);
            metrics = {{"loss/spin", total.detach().item<double>()}, {"loss/sft", sft.detach().item<double>()}};
            total = total.add(sft.mul(sft_weight));
          }
          const double value = total.detach().item<double>();
          metrics.insert(metrics.begin(), {"loss", value});
          for (auto& metric : SpinMetrics(logps, loss.beta, identical)) metrics.push_back(std::move(metric));
          metrics.push_back({"logits/real", PerTokenMean(policy.logit_mean.narrow(0, 0, pairs), tokens_real)});
          metrics.push_back({"logits/generated", PerTokenMean(policy.logit_mean.narrow(0, pairs, pairs), tokens_generated)});
          if (step.backward && std::isfinite(value)) total.mul(step.scale).backward();
          return metrics;
        },
        [](Napi::Env env, Metrics& metrics) { return MetricsObject(env, metrics); });
  });
}

namespace {

// The four log-prob tensors (arguments 0–3) and `identical` (4, optional), checked.
std::pair<PairLogprobs, at::Tensor> ReadPairLogprobs(const Args& args) {
  args.ExpectAtMost(6);
  PairLogprobs logps{Tensor::From(args, 0, "policyReal"), Tensor::From(args, 1, "policyGenerated"), Tensor::From(args, 2, "opponentReal"),
                     Tensor::From(args, 3, "opponentGenerated")};
  at::Tensor identical = args.present(4) ? Tensor::From(args, 4, "identical") : at::Tensor();
  CheckPairLogprobs(logps, identical);
  return {std::move(logps), std::move(identical)};
}

}  // namespace

// spinLoss(policyReal, policyGenerated, opponentReal, opponentGenerated, identical?, {lossType, beta, labelSmoothing})
Napi::Value SpinLossBinding(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("spinLoss", {
    const auto [logps, identical] = ReadPairLogprobs(args);
    return Tensor::Wrap(info.Env(), SpinLoss(logps, ReadLossConfig(Options(args, 5)), identical));
  });
}

// spinMetrics(policyReal, policyGenerated, opponentReal, opponentGenerated, identical?, {beta})
Napi::Value SpinMetricsBinding(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("spinMetrics", {
    const auto [logps, identical] = ReadPairLogprobs(args);
    const double beta = OptionNumber(Options(args, 5), "beta");
    at::NoGradGuard no_grad;
    return MetricsObject(info.Env(), SpinMetrics(logps, beta, identical));
  });
}

// sftTrainStep(model, {ids, attentionMask, labels}, options)
Napi::Value SftTrainStep(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("sftTrainStep", {
    args.ExpectAtMost(3);
    auto model = ModelHandle::From(args, 0);
    Batch batch = ReadBatch(Options(args, 1), model, args.call());
    const Napi::Object options = Options(args, 2);
    const StepOptions step = ReadStepOptions(options, batch);
    return RunAsync<Metrics>(
        info.Env(), args.call(), model->device(),
        [=]() {
          c10::AutoGradMode grad(step.backward);
          const ResponseLogprobs policy = PolicyLogprobs(*model, batch, step.bf16, false);
          const double tokens = policy.tokens.sum().item<double>();
          if (tokens == 0) throw SpinError(ErrorCode::kInvalidArgument, "the batch has no label tokens");
          // Mean negative log-likelihood per response token, as transformers' causal-LM loss.
          const at::Tensor loss = SftLoss(policy.sum, policy.tokens);
          const double value = loss.item<double>();
          if (step.backward && std::isfinite(value)) loss.mul(step.scale).backward();
          return Metrics{{"loss", value}, {"tokens", tokens}};
        },
        [](Napi::Env env, Metrics& metrics) { return MetricsObject(env, metrics); });
  });
}

// ---- optimizer -----------------------------------------------------------------------------

Napi::Function OptimizerHandle::Define(Napi::Env env) {
  Napi::Function cls = DefineClass(env, "NativeOptimizer",
                                   {InstanceMethod<&OptimizerHandle::Step>("step"),
                                    InstanceMethod<&OptimizerHandle::State>("state"),
                                    InstanceMethod<&OptimizerHandle::LoadState>("loadState"),
                                    InstanceMethod<&OptimizerHandle::DiscardGradients>("discardGradients"),
                                    InstanceMethod<&OptimizerHandle::ShardParameters>("shardParameters"),
                                    InstanceMethod<&OptimizerHandle::GatherParameters>("gatherParameters"),
                                    InstanceMethod<&OptimizerHandle::GatheredWeights>("gatheredWeights"),
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

std::shared_ptr<Optimizer> OptimizerHandle::From(const Args& args, size_t i) {
  const Napi::Value value = args.at(i);
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(Instance(args.env()).optimizer_class.Value())) {
    args.Fail(i, "optimizer", "an optimizer from createOptimizer()");
  }
  const OptimizerHandle* handle = Unwrap(value.As<Napi::Object>());
  if (!handle->optimizer_) throw SpinError(ErrorCode::kDisposed, std::string(args.call()) + ": the optimizer was disposed");
  return handle->optimizer_;
}

Napi::Value OptimizerHandle::Create(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("createOptimizer", {
    args.ExpectAtMost(3);
    auto model = ModelHandle::From(args, 0);
    const Napi::Object options = Options(args, 1);
    OptimizerConfig config;
    const std::string name = OptionString(options, "kind");
    if (name == "rmsprop") {
      config.kind = OptimizerKind::kRMSprop;
    } else if (name == "adamw") {
      config.kind = OptimizerKind::kAdamW;
    } else {
      throw SpinError(ErrorCode::kInvalidArgument, "unknown optimizer '" + name + "' (rmsprop or adamw)");
    }
    config.alpha = OptionNumber(options, "alpha");
    config.beta1 = OptionNumber(options, "beta1");
    config.beta2 = OptionNumber(options, "beta2");
    config.eps = OptionNumber(options, "eps");
    config.weight_decay = OptionNumber(options, "weightDecay");
    // The adapter's tensors when one is attached (the base is frozen), otherwise every parameter.
    std::vector<std::pair<std::string, at::Tensor>> parameters = model->TrainableParameters();
    std::shared_ptr<Optimizer> optimizer;
    if (args.present(2)) {
      const Napi::Object sharding = Options(args, 2);
      const double stage = OptionNumber(sharding, "stage");
      const double bucket_bytes = OptionNumber(sharding, "bucketBytes");
      RequireBackend();
#ifdef SPIN_HAS_C10D
      // The partition's layout covers what requires grad: make the parameters trainable first.
      for (auto& [name, p] : parameters) p.requires_grad_(true);
      auto partition = ZeroPartition::Create(ProcessGroup::Current(), model, std::move(parameters), static_cast<int64_t>(bucket_bytes), static_cast<int>(stage));
      optimizer = std::make_shared<Optimizer>(std::move(partition), config);
#endif
    } else {
      optimizer = std::make_shared<Optimizer>(std::move(parameters), config);
    }
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

Napi::Value OptimizerHandle::DiscardGradients(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("optimizer.discardGradients", {
    Get("optimizer.discardGradients").DiscardGradients();
    return info.Env().Undefined();
  });
}

#ifdef SPIN_HAS_C10D
namespace {
ZeroPartition& WeightPartition(const Optimizer& optimizer, const char* call) {
  const auto& partition = optimizer.partition();
  if (!partition || partition->stage() < 3) throw SpinError(ErrorCode::kInvalidArgument, std::string(call) + ": the optimizer does not shard weights (ZeRO stage 3)");
  return *partition;
}
}  // namespace
#endif

Napi::Value OptimizerHandle::ShardParameters(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("optimizer.shardParameters", {
    RequireBackend();
#ifdef SPIN_HAS_C10D
    WeightPartition(Get(args.call()), args.call()).ShardParameters();
#endif
    return info.Env().Undefined();
  });
}

Napi::Value OptimizerHandle::GatherParameters(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("optimizer.gatherParameters", {
    RequireBackend();
#ifdef SPIN_HAS_C10D
    const std::shared_ptr<ZeroPartition> partition = WeightPartition(Get(args.call()), args.call()).shared_from_this();
    return RunAsync<bool>(
        info.Env(), args.call(), c10::Device(c10::kCPU),
        [partition]() {
          partition->GatherAllParameters();
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
#endif
  });
}

Napi::Value OptimizerHandle::GatheredWeights(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("optimizer.gatheredWeights", {
    args.ExpectAtMost(1);
    const int root = static_cast<int>(args.Int(0, "root"));
    RequireBackend();
#ifdef SPIN_HAS_C10D
    const std::shared_ptr<ZeroPartition> partition = WeightPartition(Get(args.call()), args.call()).shared_from_this();
    if (root < 0 || root >= partition->world()) throw SpinError(ErrorCode::kInvalidArgument, "root must be a rank of the group");
    using Weights = std::vector<std::pair<std::string, at::Tensor>>;
    return RunAsync<Weights>(
        info.Env(), args.call(), c10::Device(c10::kCPU), [partition, root]() { return partition->GatherToRank(root); },
        [root, partition](Napi::Env env, Weights& weights) -> Napi::Value {
          if (partition->rank() != root) return env.Null();
          Napi::Object out = Napi::Object::New(env);
          for (const auto& [name, tensor] : weights) out.Set(name, Tensor::Wrap(env, tensor));
          return out;
        });
#endif
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
