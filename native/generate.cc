#include "generate.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "async.h"
#include "errors.h"
#include "model/decoder.h"
#include "model/model_binding.h"
#include "sampling.h"

namespace spin {

namespace {

struct GenerateRequest {
  std::shared_ptr<Decoder> model;
  std::vector<std::vector<int64_t>> prompts;
  SamplingConfig sampling;
  int64_t max_new_tokens = 256;
  std::vector<int64_t> eos_ids;
  std::vector<std::vector<int64_t>> stop_sequences;
  std::vector<uint64_t> seeds;  // one per row
  int64_t pad_id = 0;
};

struct GenerateResult {
  std::vector<std::vector<int64_t>> tokens;
  std::vector<std::string> finish;  // "eos" | "stop" | "length"
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int64_t steps = 0;
};

using StreamFn = Napi::ThreadSafeFunction;

bool EndsWith(const std::vector<int64_t>& tokens, const std::vector<int64_t>& suffix) {
  if (suffix.empty() || suffix.size() > tokens.size()) return false;
  return std::equal(suffix.rbegin(), suffix.rend(), tokens.rbegin());
}

// Keeps only the rows in `keep` (indices into the current batch) in every per-row tensor.
void Compact(KVCache& cache, at::Tensor& mask, at::Tensor& seen, const at::Tensor& keep) {
  for (auto& k : cache.keys) k = k.index_select(0, keep);
  for (auto& v : cache.values) v = v.index_select(0, keep);
  cache.batch = keep.size(0);
  mask = mask.index_select(0, keep);
  if (seen.defined()) seen = seen.index_select(0, keep);
}

GenerateResult RunGenerate(const GenerateRequest& r, StreamFn* stream) {
  using Clock = std::chrono::steady_clock;
  c10::InferenceMode inference;
  const Decoder& model = *r.model;
  const int64_t batch = static_cast<int64_t>(r.prompts.size());
  int64_t longest = 0;
  for (const auto& p : r.prompts) longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
  const c10::Device device = model.device();
  const auto long_options = at::TensorOptions().dtype(at::kLong);

  // Left padding: every prompt ends at column longest - 1.
  at::Tensor ids = at::full({batch, longest}, r.pad_id, long_options);
  at::Tensor mask = at::zeros({batch, longest}, long_options);
  for (int64_t b = 0; b < batch; ++b) {
    const auto& p = r.prompts[b];
    const int64_t offset = longest - static_cast<int64_t>(p.size());
    if (!p.empty()) {
      ids[b].narrow(0, offset, p.size()).copy_(at::tensor(p, long_options));
      mask[b].narrow(0, offset, p.size()).fill_(1);
    }
  }
  ids = ids.to(device);
  mask = mask.to(device);
  at::Tensor seen;  // [B, V] tokens each row has seen, for the repetition penalty
  if (r.sampling.repetition_penalty != 1.0) {
    seen = at::zeros({batch, model.config().vocab_size}, at::TensorOptions().dtype(at::kBool));
    for (int64_t b = 0; b < batch; ++b) seen[b].index_fill_(0, at::tensor(r.prompts[b], long_options), true);
    seen = seen.to(device);
  }
  std::vector<at::Generator> generators;
  for (int64_t b = 0; b < batch; ++b) generators.push_back(at::make_generator<at::CPUGeneratorImpl>(r.seeds[b]));

  std::unique_ptr<KVCache> cache(model.NewCache(batch, longest + r.max_new_tokens));
  ForwardInputs inputs;
  inputs.ids = ids;
  inputs.attention_mask = mask;
  inputs.cache = cache.get();

  GenerateResult result;
  result.tokens.assign(batch, {});
  result.finish.assign(batch, "length");
  std::vector<int64_t> slots(batch);  // batch slot -> prompt row
  for (int64_t b = 0; b < batch; ++b) slots[b] = b;
  std::vector<bool> finished(batch, false);  // per slot
  int64_t unfinished = batch;

  auto start = Clock::now();
  at::Tensor hidden = model.Hidden(inputs);
  at::Tensor logits = model.Project(hidden.select(1, hidden.size(1) - 1));  // [B, V]
  result.prefill_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  start = Clock::now();

  for (int64_t step = 0; step < r.max_new_tokens; ++step) {
    std::vector<at::Generator> slot_generators;
    for (int64_t row : slots) slot_generators.push_back(generators[row]);
    at::Tensor next = ChooseNextTokens(logits, r.sampling, seen, slot_generators).to(at::kCPU).contiguous();
    int64_t* chosen = next.data_ptr<int64_t>();
    std::vector<std::pair<int64_t, int64_t>> streamed;
    for (size_t i = 0; i < slots.size(); ++i) {
      if (finished[i]) {
        chosen[i] = r.pad_id;  // a finished row still in the batch: its token is ignored
        continue;
      }
      auto& tokens = result.tokens[slots[i]];
      tokens.push_back(chosen[i]);
      streamed.push_back({slots[i], chosen[i]});
      const bool eos = std::find(r.eos_ids.begin(), r.eos_ids.end(), chosen[i]) != r.eos_ids.end();
      bool stop = false;
      for (const auto& sequence : r.stop_sequences) stop = stop || EndsWith(tokens, sequence);
      if (eos || stop) {
        result.finish[slots[i]] = eos ? "eos" : "stop";
        finished[i] = true;
        --unfinished;
      }
    }
    result.steps = step + 1;
    if (stream != nullptr && !streamed.empty()) {
      auto* payload = new std::vector<std::pair<int64_t, int64_t>>(std::move(streamed));
      stream->NonBlockingCall(payload, [](Napi::Env env, Napi::Function callback, std::vector<std::pair<int64_t, int64_t>>* data) {
        Napi::Array rows = Napi::Array::New(env, data->size());
        Napi::Array tokens = Napi::Array::New(env, data->size());
        for (size_t i = 0; i < data->size(); ++i) {
          rows.Set(static_cast<uint32_t>(i), static_cast<double>((*data)[i].first));
          tokens.Set(static_cast<uint32_t>(i), static_cast<double>((*data)[i].second));
        }
        delete data;
        callback.Call({rows, tokens});
      });
    }
    if (unfinished == 0 || step + 1 == r.max_new_tokens) break;

    at::Tensor step_ids = next.to(device).unsqueeze(1);
    // Once a quarter of the batch has finished, drop those rows: later steps cost less.
    const int64_t finished_in_batch = static_cast<int64_t>(slots.size()) - unfinished;
    if (finished_in_batch * 4 >= static_cast<int64_t>(slots.size())) {
      std::vector<int64_t> keep, kept_slots;
      for (size_t i = 0; i < slots.size(); ++i) {
        if (!finished[i]) {
          keep.push_back(static_cast<int64_t>(i));
          kept_slots.push_back(slots[i]);
        }
      }
      const at::Tensor keep_index = at::tensor(keep, long_options).to(device);
      step_ids = step_ids.index_select(0, keep_index);
      Compact(*cache, mask, seen, keep_index);
      slots.swap(kept_slots);
      finished.assign(slots.size(), false);
    }
    if (seen.defined()) seen.scatter_(1, step_ids, true);
    mask = at::cat({mask, at::ones({mask.size(0), 1}, mask.options())}, 1);
    inputs.ids = step_ids;
    inputs.attention_mask = mask;
    hidden = model.Hidden(inputs);
    logits = model.Project(hidden.select(1, 0));
  }
  result.decode_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

std::vector<int64_t> IntArray(const Napi::Value& value, const char* what) {
  if (!value.IsArray() && !value.IsTypedArray()) throw SpinError(ErrorCode::kInvalidArgument, std::string(what) + " must be an array of token ids");
  const Napi::Object array = value.As<Napi::Object>();
  const uint32_t length = array.Get("length").As<Napi::Number>().Uint32Value();
  std::vector<int64_t> out;
  out.reserve(length);
  for (uint32_t i = 0; i < length; ++i) {
    const Napi::Value item = array.Get(i);
    if (!item.IsNumber()) throw SpinError(ErrorCode::kInvalidArgument, std::string(what) + " must hold numbers");
    const double v = item.As<Napi::Number>().DoubleValue();
    if (v < 0 || v != static_cast<double>(static_cast<int64_t>(v))) throw SpinError(ErrorCode::kInvalidArgument, std::string(what) + " holds an invalid token id");
    out.push_back(static_cast<int64_t>(v));
  }
  return out;
}

}  // namespace

Napi::Value Generate(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("generate", {
    args.ExpectAtMost(4);
    GenerateRequest request;
    request.model = ModelHandle::From(args, 0);
    if (!args.present(1) || !args.at(1).IsArray()) args.Fail(1, "prompts", "an array of token-id arrays");
    const Napi::Array prompts = args.at(1).As<Napi::Array>();
    if (prompts.Length() == 0) throw SpinError(ErrorCode::kInvalidArgument, "no prompts");
    for (uint32_t i = 0; i < prompts.Length(); ++i) {
      request.prompts.push_back(IntArray(prompts.Get(i), ("prompt " + std::to_string(i)).c_str()));
      if (request.prompts.back().empty()) throw SpinError(ErrorCode::kInvalidArgument, "prompt " + std::to_string(i) + " is empty");
    }
    if (!args.present(2) || !args.at(2).IsObject()) args.Fail(2, "options", "an object");
    const Napi::Object o = args.at(2).As<Napi::Object>();
    auto number = [&](const char* key, double fallback) {
      const Napi::Value v = o.Get(key);
      return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
    };
    request.sampling.greedy = !o.Get("doSample").ToBoolean().Value();
    request.sampling.temperature = number("temperature", 1.0);
    request.sampling.top_k = static_cast<int64_t>(number("topK", 0));
    request.sampling.top_p = number("topP", 1.0);
    request.sampling.min_p = number("minP", 0.0);
    request.sampling.repetition_penalty = number("repetitionPenalty", 1.0);
    CheckSamplingConfig(request.sampling);
    request.max_new_tokens = static_cast<int64_t>(number("maxNewTokens", 256));
    if (request.max_new_tokens < 1) throw SpinError(ErrorCode::kInvalidArgument, "maxNewTokens must be >= 1");
    request.pad_id = static_cast<int64_t>(number("padTokenId", 0));
    if (o.Get("eosTokenIds").IsArray()) request.eos_ids = IntArray(o.Get("eosTokenIds"), "eosTokenIds");
    if (o.Get("stopSequences").IsArray()) {
      const Napi::Array stops = o.Get("stopSequences").As<Napi::Array>();
      for (uint32_t i = 0; i < stops.Length(); ++i) request.stop_sequences.push_back(IntArray(stops.Get(i), "stopSequences"));
    }
    const Napi::Value seeds = o.Get("seeds");
    const double seed = number("seed", 0);
    for (size_t i = 0; i < request.prompts.size(); ++i) {
      const double row_seed = seeds.IsArray() ? seeds.As<Napi::Array>().Get(static_cast<uint32_t>(i)).ToNumber().DoubleValue() : seed + static_cast<double>(i);
      request.seeds.push_back(static_cast<uint64_t>(row_seed));
    }
    const ModelConfig& config = request.model->config();
    for (size_t i = 0; i < request.prompts.size(); ++i) {
      for (int64_t id : request.prompts[i]) {
        if (id >= config.vocab_size) throw SpinError(ErrorCode::kInvalidArgument, "prompt " + std::to_string(i) + " holds token id " + std::to_string(id) + " outside the vocabulary");
      }
      const int64_t needed = static_cast<int64_t>(request.prompts[i].size()) + request.max_new_tokens;
      if (config.architecture == Architecture::kGpt2 && needed > config.max_positions) {
        throw SpinError(ErrorCode::kInvalidArgument, "prompt " + std::to_string(i) + " (" + std::to_string(request.prompts[i].size()) +
                                                         " tokens) + maxNewTokens exceeds the model's " + std::to_string(config.max_positions) + " positions");
      }
    }
    std::shared_ptr<StreamFn> stream;
    if (args.present(3)) {
      stream = std::shared_ptr<StreamFn>(new StreamFn(StreamFn::New(info.Env(), args.Function(3, "onTokens"), "spin-generate-stream", 0, 1)),
                                         [](StreamFn* f) {
                                           f->Release();
                                           delete f;
                                         });
    }
    return RunAsync<GenerateResult>(
        info.Env(), args.call(), request.model->device(),
        [request, stream]() { return RunGenerate(request, stream.get()); },
        [](Napi::Env env, GenerateResult& result) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          Napi::Array tokens = Napi::Array::New(env, result.tokens.size());
          Napi::Array finish = Napi::Array::New(env, result.finish.size());
          for (size_t i = 0; i < result.tokens.size(); ++i) {
            Napi::Array row = Napi::Array::New(env, result.tokens[i].size());
            for (size_t t = 0; t < result.tokens[i].size(); ++t) row.Set(static_cast<uint32_t>(t), static_cast<double>(result.tokens[i][t]));
            tokens.Set(static_cast<uint32_t>(i), row);
            finish.Set(static_cast<uint32_t>(i), result.finish[i]);
          }
          out.Set("tokens", tokens);
          out.Set("finish", finish);
          out.Set("prefillSeconds", result.prefill_seconds);
          out.Set("decodeSeconds", result.decode_seconds);
          out.Set("steps", static_cast<double>(result.steps));
          return out;
        });
  });
}

}  // namespace spin
