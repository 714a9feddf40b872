#include "model_binding.h"

#include <ATen/ATen.h>

#include "../async.h"
#include "../errors.h"
#include "../instance.h"
#include "../logprobs.h"
#include "../tensor.h"
#include "config.h"

namespace spin {

// ---- KV cache ------------------------------------------------------------------------

Napi::Function KVCacheHandle::Define(Napi::Env env) {
  Napi::Function cls = DefineClass(env, "NativeKVCache",
                                   {InstanceAccessor<&KVCacheHandle::Length>("length"),
                                    InstanceAccessor<&KVCacheHandle::Capacity>("capacity"),
                                    InstanceMethod<&KVCacheHandle::Reset>("reset"),
                                    InstanceMethod<&KVCacheHandle::Dispose>("dispose")});
  Instance(env).kv_cache_class = Napi::Persistent(cls);
  return cls;
}

KVCacheHandle::KVCacheHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KVCacheHandle>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) ThrowTypeError(info.Env(), "KVCache", "created by model.newCache()");
  cache_.reset(info[0].As<Napi::External<KVCache>>().Data());
}

KVCache* KVCacheHandle::From(const Args& args, size_t i) {
  const Napi::Value value = args.at(i);
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(Instance(args.env()).kv_cache_class.Value())) {
    args.Fail(i, "cache", "a KV cache from model.newCache()");
  }
  KVCacheHandle* handle = Unwrap(value.As<Napi::Object>());
  if (!handle->cache_) throw SpinError(ErrorCode::kDisposed, "the KV cache was disposed");
  return handle->cache_.get();
}

Napi::Value KVCacheHandle::Length(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cache_ ? static_cast<double>(cache_->length) : 0);
}
Napi::Value KVCacheHandle::Capacity(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cache_ ? static_cast<double>(cache_->capacity) : 0);
}
Napi::Value KVCacheHandle::Reset(const Napi::CallbackInfo& info) {
  if (cache_) cache_->length = 0;
  return info.Env().Undefined();
}
Napi::Value KVCacheHandle::Dispose(const Napi::CallbackInfo& info) {
  cache_.reset();
  return info.Env().Undefined();
}

// ---- model -----------------------------------------------------------------------------

Napi::Function ModelHandle::Define(Napi::Env env) {
  Napi::Function cls = DefineClass(env, "NativeModel",
                                   {InstanceMethod<&ModelHandle::Forward>("forward"),
                                    InstanceMethod<&ModelHandle::ForwardAsync>("forwardAsync"),
                                    InstanceMethod<&ModelHandle::Logprobs>("logprobs"),
                                    InstanceMethod<&ModelHandle::Parameters>("parameters"),
                                    InstanceMethod<&ModelHandle::LinearModules>("linearModules"),
                                    InstanceMethod<&ModelHandle::SetAdapter>("setAdapter"),
                                    InstanceMethod<&ModelHandle::AdapterTensors>("adapterTensors"),
                                    InstanceMethod<&ModelHandle::MergedWeights>("mergedWeights"),
                                    InstanceMethod<&ModelHandle::MergeAdapter>("mergeAdapter"),
                                    InstanceMethod<&ModelHandle::Attention>("attention"),
                                    InstanceMethod<&ModelHandle::SetAttention>("setAttention"),
                                    InstanceMethod<&ModelHandle::NewCache>("newCache"),
                                    InstanceMethod<&ModelHandle::Dispose>("dispose")});
  Instance(env).model_class = Napi::Persistent(cls);
  return cls;
}

ModelHandle::ModelHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelHandle>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) ThrowTypeError(info.Env(), "Model", "created by createModel()");
  model_ = *info[0].As<Napi::External<std::shared_ptr<Decoder>>>().Data();
}

std::shared_ptr<Decoder> ModelHandle::From(const Args& args, size_t i) {
  const Napi::Value value = i < args.size() ? args.at(i) : args.env().Undefined();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(Instance(args.env()).model_class.Value())) {
    args.Fail(i, "model", "a model from createModel()");
  }
  return Unwrap(value.As<Napi::Object>())->Model(args.call());
}

std::shared_ptr<Decoder> ModelHandle::Model(const char* call) const {
  if (!model_) throw SpinError(ErrorCode::kDisposed, "the model was disposed");
  return model_;
}

Napi::Value ModelHandle::Create(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("createModel", {
    args.ExpectAtMost(2);
    if (!args.present(0) || !args.at(0).IsObject()) args.Fail(0, "config", "an object");
    if (!args.present(1) || !args.at(1).IsObject()) args.Fail(1, "parameters", "an object of Tensors");
    ModelConfig config = ReadModelConfig(args.at(0).As<Napi::Object>());
    const Napi::Object given = args.at(1).As<Napi::Object>();
    std::map<std::string, at::Tensor> parameters;
    const Napi::Array names = given.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const std::string name = names.Get(i).As<Napi::String>().Utf8Value();
      const Napi::Value value = given.Get(name);
      if (!Tensor::Is(info.Env(), value)) args.Fail(1, "parameters", "an object of Tensors");
      parameters[name] = Tensor::FromValue(value, args.call());
    }
    auto model = std::make_shared<Decoder>(std::move(config), std::move(parameters));
    return Instance(info.Env()).model_class.New({Napi::External<std::shared_ptr<Decoder>>::New(info.Env(), &model)});
  });
}

namespace {

struct ForwardRequest {
  std::shared_ptr<Decoder> model;
  ForwardInputs inputs;
  at::Tensor logits_at;  // [B, K] positions whose logits are wanted, or undefined for all
  std::shared_ptr<KVCache> cache_owner;
};

at::Tensor RunForward(const ForwardRequest& request) {
  const at::Tensor hidden = request.model->Hidden(request.inputs);
  if (!request.logits_at.defined()) return request.model->Project(hidden);
  const at::Tensor& at = request.logits_at;
  if (at.dim() != 2 || at.size(0) != hidden.size(0)) {
    throw SpinError(ErrorCode::kShapeMismatch, "logitsAt must be [batch, K] positions");
  }
  const at::Tensor index = at.to(at::kLong).unsqueeze(-1).expand({at.size(0), at.size(1), hidden.size(-1)});
  return request.model->Project(hidden.gather(1, index));
}

// forward(ids, attentionMask, positions?, logitsAt?, cache?, checkpoint?)
ForwardRequest ReadForward(const Args& args, std::shared_ptr<Decoder> model) {
  args.ExpectAtMost(6);
  ForwardRequest request;
  request.model = std::move(model);
  request.inputs.ids = Tensor::From(args, 0, "ids");
  request.inputs.attention_mask = Tensor::From(args, 1, "attentionMask");
  if (args.present(2)) request.inputs.positions = Tensor::From(args, 2, "positions");
  if (args.present(3)) request.logits_at = Tensor::From(args, 3, "logitsAt");
  if (args.present(4)) request.inputs.cache = KVCacheHandle::From(args, 4);
  request.inputs.checkpoint_layers = args.OptionalBool(5, "checkpoint", false);
  const auto& ids = request.inputs.ids;
  if (ids.dim() != 2 || ids.scalar_type() != at::kLong) {
    throw SpinError(ErrorCode::kInvalidArgument, "ids must be a [batch, tokens] int64 tensor");
  }
  if (request.inputs.attention_mask.dim() != 2) {
    throw SpinError(ErrorCode::kInvalidArgument, "attentionMask must be a [batch, past + tokens] tensor");
  }
  if (request.inputs.positions.defined() && request.inputs.positions.sizes() != ids.sizes()) {
    throw SpinError(ErrorCode::kShapeMismatch, "positions must have the shape of ids");
  }
  const c10::Device device = request.model->device();
  request.inputs.ids = ids.to(device);
  request.inputs.attention_mask = request.inputs.attention_mask.to(device);
  if (request.inputs.positions.defined()) request.inputs.positions = request.inputs.positions.to(device, at::kLong);
  if (request.logits_at.defined()) request.logits_at = request.logits_at.to(device);
  return request;
}

// A cache is mutated by a forward: one forward at a time per cache.
class CacheLease {
 public:
  explicit CacheLease(KVCache* cache) : cache_(cache) {
    if (cache_ && cache_->busy.exchange(true)) {
      throw SpinError(ErrorCode::kInvalidArgument, "the KV cache is in use by another forward");
    }
  }
  ~CacheLease() {
    if (cache_) cache_->busy = false;
  }

 private:
  KVCache* cache_;
};

}  // namespace

Napi::Value ModelHandle::Forward(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("model.forward", {
    const ForwardRequest request = ReadForward(args, Model(args.call()));
    CacheLease lease(request.inputs.cache);
    return Tensor::Wrap(info.Env(), RunForward(request));
  });
}

Napi::Value ModelHandle::ForwardAsync(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("model.forwardAsync", {
    ForwardRequest request = ReadForward(args, Model(args.call()));
    if (request.inputs.cache) {
      // Keep the cache alive while the worker runs, even if JS disposes its handle.
      request.cache_owner = KVCacheHandle::Unwrap(args.at(4).As<Napi::Object>())->cache_;
    }
    const c10::Device device = request.model->device();
    return RunAsync<at::Tensor>(
        info.Env(), args.call(), device,
        [request]() {
          CacheLease lease(request.inputs.cache);
          return RunForward(request);
        },
        [](Napi::Env env, at::Tensor& logits) { return Tensor::Wrap(env, std::move(logits)); });
  });
}

// logprobs(ids, attentionMask, labels, checkpoint?, packing?) -> Promise<{sum, tokens, logitMean}>
Napi::Value ModelHandle::Logprobs(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("model.logprobs", {
    args.ExpectAtMost(5);
    ForwardInputs inputs;
    auto model = Model(args.call());
    const c10::Device device = model->device();
    inputs.ids = Tensor::From(args, 0, "ids").to(device);
    inputs.attention_mask = Tensor::From(args, 1, "attentionMask").to(device);
    const at::Tensor labels = Tensor::From(args, 2, "labels").to(device, at::kLong);
    inputs.checkpoint_layers = args.OptionalBool(3, "checkpoint", false);
    const bool packing = args.OptionalBool(4, "packing", true);
    if (inputs.ids.dim() != 2 || inputs.ids.scalar_type() != at::kLong) {
      throw SpinError(ErrorCode::kInvalidArgument, "ids must be a [rows, tokens] int64 tensor");
    }
    if (labels.sizes() != inputs.ids.sizes()) throw SpinError(ErrorCode::kShapeMismatch, "labels must have the shape of ids");
    return RunAsync<ResponseLogprobs>(
        info.Env(), args.call(), device,
        [model, inputs, labels, packing]() { return BatchLogprobs(*model, inputs, labels, packing, true); },
        [](Napi::Env env, ResponseLogprobs& result) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("sum", Tensor::Wrap(env, result.sum));
          out.Set("tokens", Tensor::Wrap(env, result.tokens));
          out.Set("logitMean", Tensor::Wrap(env, result.logit_mean));
          return out;
        });
  });
}

namespace {
// {name: Tensor} of named tensors (a map or a list of pairs).
template <typename Named>
Napi::Object NamedTensors(Napi::Env env, const Named& tensors) {
  Napi::Object out = Napi::Object::New(env);
  for (const auto& [name, tensor] : tensors) out.Set(name, Tensor::Wrap(env, tensor));
  return out;
}
}  // namespace

Napi::Value ModelHandle::Parameters(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("model.parameters", {
    const auto model = Model(args.call());
    model->RequireWhole(args.call());
    return NamedTensors(info.Env(), model->parameters());
  });
}

Napi::Value ModelHandle::LinearModules(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("model.linearModules", {
    const std::vector<LinearModule> modules = Model(args.call())->LinearModules();
    Napi::Array out = Napi::Array::New(info.Env(), modules.size());
    for (size_t i = 0; i < modules.size(); ++i) {
      Napi::Object module = Napi::Object::New(info.Env());
      module.Set("name", modules[i].name);
      module.Set("in", static_cast<double>(modules[i].in));
      module.Set("out", static_cast<double>(modules[i].out));
      out.Set(static_cast<uint32_t>(i), module);
    }
    return out;
  });
}

// setAdapter({scale, dropout, tensors: Record<string, NativeTensor>} | null)
Napi::Value ModelHandle::SetAdapter(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("model.setAdapter", {
    args.ExpectAtMost(1);
    auto model = Model(args.call());
    if (!args.present(0)) {
      model->SetAdapter(nullptr);
      return info.Env().Undefined();
    }
    if (!args.at(0).IsObject()) args.Fail(0, "adapter", "an object {scale, dropout, tensors} or null");
    const Napi::Object given = args.at(0).As<Napi::Object>();
    auto adapter = std::make_shared<LoraAdapter>();
    const Napi::Value scale = given.Get("scale"), dropout = given.Get("dropout"), tensors = given.Get("tensors");
    if (!scale.IsNumber() || !dropout.IsNumber() || !tensors.IsObject()) args.Fail(0, "adapter", "an object {scale, dropout, tensors} or null");
    adapter->scale = scale.As<Napi::Number>().DoubleValue();
    adapter->dropout = dropout.As<Napi::Number>().DoubleValue();
    const Napi::Object named = tensors.As<Napi::Object>();
    const Napi::Array names = named.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const std::string name = names.Get(i).As<Napi::String>().Utf8Value();
      if (!Tensor::Is(info.Env(), named.Get(name))) throw SpinError(ErrorCode::kInvalidArgument, "adapter tensor " + name + " is not a Tensor");
      adapter->tensors[name] = Tensor::FromValue(named.Get(name), args.call());
    }
    model->SetAdapter(std::move(adapter));
    return info.Env().Undefined();
  });
}

// The attached adapter's tensors by name (live), or null.
Napi::Value ModelHandle::AdapterTensors(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("model.adapterTensors", {
    auto model = Model(args.call());
    if (!model->adapter()) return info.Env().Null();
    model->RequireWhole(args.call());
    return NamedTensors(info.Env(), model->TrainableParameters());
  });
}

Napi::Value ModelHandle::MergedWeights(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("model.mergedWeights", {
    const auto model = Model(args.call());
    model->RequireWhole(args.call());
    return NamedTensors(info.Env(), model->MergedWeights());
  });
}

Napi::Value ModelHandle::MergeAdapter(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("model.mergeAdapter", {
    const auto model = Model(args.call());
    model->RequireWhole(args.call());
    model->MergeAdapter();
    return info.Env().Undefined();
  });
}

Napi::Value ModelHandle::Attention(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("model.attention", {
    args.ExpectAtMost(0);
    return Napi::String::New(info.Env(), Model(args.call())->attention_kernel() == AttentionKernel::kSdpa ? "sdpa" : "eager");
  });
}

// setAttention("sdpa" | "eager")
Napi::Value ModelHandle::SetAttention(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("model.setAttention", {
    args.ExpectAtMost(1);
    const std::string kind = args.String(0, "attention");
    if (kind != "sdpa" && kind != "eager") throw SpinError(ErrorCode::kInvalidArgument, "attention must be 'sdpa' or 'eager', got '" + kind + "'");
    Model(args.call())->SetAttentionKernel(kind == "sdpa" ? AttentionKernel::kSdpa : AttentionKernel::kEager);
    return info.Env().Undefined();
  });
}

Napi::Value ModelHandle::NewCache(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("model.newCache", {
    args.ExpectAtMost(2);
    KVCache* cache = Model(args.call())->NewCache(args.Int(0, "batch"), args.Int(1, "capacity"));
    return Instance(info.Env()).kv_cache_class.New({Napi::External<KVCache>::New(info.Env(), cache)});
  });
}

Napi::Value ModelHandle::Dispose(const Napi::CallbackInfo& info) {
  model_.reset();
  return info.Env().Undefined();
}

}  // namespace spin
