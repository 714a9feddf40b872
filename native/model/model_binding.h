// NativeModel and NativeKVCache: the JS handles of a Decoder and of its KV cache.
#pragma once

#include <napi.h>

#include <memory>

#include "../args.h"
#include "decoder.h"

namespace spin {

class KVCacheHandle : public Napi::ObjectWrap<KVCacheHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit KVCacheHandle(const Napi::CallbackInfo& info);
  static KVCache* From(const Args& args, size_t i);

 private:
  friend class ModelHandle;
  Napi::Value Length(const Napi::CallbackInfo& info);
  Napi::Value Capacity(const Napi::CallbackInfo& info);
  Napi::Value Reset(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  std::shared_ptr<KVCache> cache_;
};

class ModelHandle : public Napi::ObjectWrap<ModelHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  // createModel(config, parameters: Record<string, NativeTensor>)
  static Napi::Value Create(const Napi::CallbackInfo& info);
  // The decoder behind argument i: TypeError unless a model, DISPOSED if disposed.
  static std::shared_ptr<Decoder> From(const Args& args, size_t i);
  explicit ModelHandle(const Napi::CallbackInfo& info);

 private:
  std::shared_ptr<Decoder> Model(const char* call) const;
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value ForwardAsync(const Napi::CallbackInfo& info);
  Napi::Value Logprobs(const Napi::CallbackInfo& info);
  Napi::Value Parameters(const Napi::CallbackInfo& info);
  Napi::Value LinearModules(const Napi::CallbackInfo& info);
  Napi::Value SetAdapter(const Napi::CallbackInfo& info);
  Napi::Value AdapterTensors(const Napi::CallbackInfo& info);
  Napi::Value MergedWeights(const Napi::CallbackInfo& info);
  Napi::Value MergeAdapter(const Napi::CallbackInfo& info);
  Napi::Value Attention(const Napi::CallbackInfo& info);
  Napi::Value SetAttention(const Napi::CallbackInfo& info);
  Napi::Value NewCache(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  std::shared_ptr<Decoder> model_;
};

}  // namespace spin
