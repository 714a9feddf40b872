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
  int64_t max_sequences = 0;  // rows decoding together (continuous batching)
  int64_t token_budget = 0;   // prompt tokens prefilled together
};

struct GenerateResult {
  std::vector<std::vector<int64_t>> tokens;
  std::vector<std::string> finish;  // "eos" | "stop" | "length"
  double prefill_seconds = 0;
  double decode_seconds = 0;
  double sampling_seconds = 0;  // of decode_seconds: choosing the next tokens
  int64_t steps = 0;
};

using StreamFn = Napi::ThreadSafeFunction;

bool EndsWith(const std::vector<int64_t>& tokens, const std::vector<int64_t>& suffix) {
  if (suffix.empty() || suffix.size() > tokens.size()) return false;
  return std::equal(suffix.rbegin(), suffix.rend(), tokens.rbegin());
}

// The decode loop's state: KV-cache slots, each holding one prompt's row or free.
class SlotBatch {
 public:
  SlotBatch(const GenerateRequest& r, int64_t slots, int64_t capacity)
      : r_(r), model_(*r.model), cache_(model_.NewCache(slots, capacity)), row_(slots, -1) {
    cache_->row_lengths.assign(slots, 0);
    if (r.sampling.repetition_penalty != 1.0) seen_ = at::zeros({slots, model_.config().vocab_size}, at::TensorOptions().dtype(at::kBool).device(model_.device()));
  }

  int64_t slots() const { return static_cast<int64_t>(row_.size()); }
  int64_t row(int64_t slot) const { return row_[slot]; }
  std::vector<int64_t> Free() const { return Where([](int64_t row) { return row < 0; }); }
  std::vector<int64_t> Busy() const { return Where([](int64_t row) { return row >= 0; }); }

  // Prefills `rows`' prompts into `slots` in one packed forward; their next-token logits land
  // in the slots' rows of the logits.
  void Join(const std::vector<int64_t>& slots, const std::vector<int64_t>& rows) {
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t row : rows) prompts.push_back(r_.prompts[row]);
    ForwardInputs inputs;
    inputs.packed = PackSequences(prompts, model_.device());
    inputs.cache = cache_.get();
    inputs.slots = slots;
    const at::Tensor hidden = model_.Hidden(inputs).select(0, 0);
    std::vector<int64_t> last;
    for (const auto& [start, length] : inputs.packed->groups) last.push_back(start + length - 1);
    const auto long_options = at::TensorOptions().dtype(at::kLong);
    SetJoined(slots, rows, model_.Project(hidden.index_select(0, at::tensor(last, long_options).to(model_.device()))));
  }

  // Records the rows that joined `slots`, with their next-token logits.
  void SetJoined(const std::vector<int64_t>& slots, const std::vector<int64_t>& rows, const at::Tensor& logits) {
    const auto long_options = at::TensorOptions().dtype(at::kLong);
    if (!logits_.defined()) logits_ = at::zeros({this->slots(), logits.size(1)}, logits.options());
    logits_.index_copy_(0, at::tensor(slots, long_options).to(model_.device()), logits);
    for (size_t i = 0; i < slots.size(); ++i) {
      row_[slots[i]] = rows[i];
      if (seen_.defined()) {
        seen_[slots[i]].fill_(false);
        seen_[slots[i]].index_fill_(0, at::tensor(r_.prompts[rows[i]], long_options).to(model_.device()), true);
      }
    }
  }

  // The next token of every busy slot (in Busy() order), each row drawing from its generator.
  std::vector<int64_t> Choose(const std::vector<int64_t>& busy, std::vector<at::Generator>& generators) {
    const at::Tensor index = at::tensor(busy, at::TensorOptions().dtype(at::kLong)).to(model_.device());
    const bool all = static_cast<int64_t>(busy.size()) == slots();
    std::vector<at::Generator> row_generators;
    for (int64_t slot : busy) row_generators.push_back(generators[row_[slot]]);
    const at::Tensor logits = all ? logits_ : logits_.index_select(0, index);
    const at::Tensor seen = !seen_.defined() || all ? seen_ : seen_.index_select(0, index);
    const at::Tensor next = ChooseNextTokens(logits, r_.sampling, seen, row_generators).to(at::kCPU).contiguous();
    if (seen_.defined()) seen_.index_put_({index, next.to(model_.device())}, at::scalar_tensor(true, seen_.options()));
    return std::vector<int64_t>(next.data_ptr<int64_t>(), next.data_ptr<int64_t>() + next.numel());
  }

  // Prefills a prompt longer than the budget into `slot` in chunks of at most `chunk` tokens,
  // each attending to the chunks before it in the slot (an aligned one-row view of the cache).
  void JoinInChunks(int64_t slot, int64_t row, int64_t chunk) {
    const std::vector<int64_t>& prompt = r_.prompts[row];
    const int64_t length = static_cast<int64_t>(prompt.size());
    KVCache view;
    for (size_t layer = 0; layer < cache_->keys.size(); ++layer) {
      view.keys.push_back(cache_->keys[layer].narrow(0, slot, 1));
      view.values.push_back(cache_->values[layer].narrow(0, slot, 1));
    }
    view.batch = 1;
    view.capacity = cache_->capacity;
    const auto long_options = at::TensorOptions().dtype(at::kLong);
    at::Tensor hidden;
    for (int64_t start = 0; start < length; start += chunk) {
      const int64_t size = std::min(chunk, length - start);
      ForwardInputs inputs;
      inputs.ids = at::tensor(std::vector<int64_t>(prompt.begin() + start, prompt.begin() + start + size), long_options).to(model_.device()).view({1, size});
      inputs.attention_mask = at::ones({1, start + size}, long_options.device(model_.device()));
      inputs.cache = &view;
      hidden = model_.Hidden(inputs);
    }
    cache_->row_lengths[slot] = length;
    SetJoined({slot}, {row}, model_.Project(hidden.select(1, hidden.size(1) - 1)));
  }

  void Leave(int64_t slot) { row_[slot] = -1; }

  // Drops the free slots (no prompt is waiting to use them): later steps cost less.
  void Compact() {
    const std::vector<int64_t> busy = Busy();
    const at::Tensor keep = at::tensor(busy, at::TensorOptions().dtype(at::kLong)).to(model_.device());
    for (auto& k : cache_->keys) k = k.index_select(0, keep);
    for (auto& v : cache_->values) v = v.index_select(0, keep);
    cache_->batch = static_cast<int64_t>(busy.size());
    std::vector<int64_t> lengths, rows;
    for (int64_t slot : busy) {
      lengths.push_back(cache_->row_lengths[slot]);
      rows.push_back(row_[slot]);
    }
    cache_->row_lengths = std::move(lengths);
    row_ = std::move(rows);
    if (seen_.defined()) seen_ = seen_.index_select(0, keep);
    logits_ = logits_.index_select(0, keep);
  }

  // Appends each slot's token (`tokens` by slot; free slots get a placeholder that their next
  // prefill overwrites) and computes every slot's next logits.
  void Step(const std::vector<int64_t>& tokens) {
    ForwardInputs inputs;
    inputs.ids = at::tensor(tokens, at::TensorOptions().dtype(at::kLong)).to(model_.device()).view({slots(), 1});
    inputs.cache = cache_.get();
    logits_ = model_.Project(model_.Hidden(inputs).select(1, 0));
    for (int64_t slot : Free()) cache_->row_lengths[slot] = 0;
  }

 private:
  template <typename Predicate>
  std::vector<int64_t> Where(Predicate predicate) const {
    std::vector<int64_t> out;
    for (size_t slot = 0; slot < row_.size(); ++slot) {
      if (predicate(row_[slot])) out.push_back(static_cast<int64_t>(slot));
    }
    return out;
  }

  const GenerateRequest& r_;
  const Decoder& model_;
  std::unique_ptr<KVCache> cache_;
  std::vector<int64_t> row_;  // slot -> prompt row, -1 when free
  at::Tensor logits_;         // [slots, V]: each slot's next-token logits
  at::Tensor seen_;           // [slots, V]: tokens each slot's row has seen (repetition penalty)
};

void Stream(StreamFn* stream, std::vector<std::pair<int64_t, int64_t>> streamed) {
  if (stream == nullptr || streamed.empty()) return;
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

// Continuous batching: at most max_sequences rows decode together; a finished row leaves its
// slot and the next waiting prompt takes it, prefilled with the other joiners of that step in
// one packed forward of at most token_budget tokens (a longer prompt alone, in chunks).
GenerateResult RunGenerate(const GenerateRequest& r, StreamFn* stream) {
  using Clock = std::chrono::steady_clock;
  c10::InferenceMode inference;
  const int64_t count = static_cast<int64_t>(r.prompts.size());
  int64_t longest = 0;
  for (const auto& p : r.prompts) longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
  SlotBatch batch(r, std::min(count, r.max_sequences), longest + r.max_new_tokens);
  std::vector<at::Generator> generators;
  for (int64_t row = 0; row < count; ++row) generators.push_back(at::make_generator<at::CPUGeneratorImpl>(r.seeds[row]));

  GenerateResult result;
  result.tokens.assign(count, {});
  result.finish.assign(count, "length");
  int64_t waiting = 0;  // the next prompt to join
  for (;;) {
    auto start = Clock::now();
    std::vector<int64_t> free = batch.Free(), joining_slots, joining_rows;
    int64_t budget = 0;
    for (size_t f = 0; f < free.size() && waiting < count; ++f) {
      const int64_t length = static_cast<int64_t>(r.prompts[waiting].size());
      if (length > r.token_budget) {
        batch.JoinInChunks(free[f], waiting++, r.token_budget);
        continue;
      }
      if (!joining_rows.empty() && budget + length > r.token_budget) {
        batch.Join(joining_slots, joining_rows);
        joining_slots.clear();
        joining_rows.clear();
        budget = 0;
      }
      joining_slots.push_back(free[f]);
      joining_rows.push_back(waiting++);
      budget += length;
    }
    if (!joining_rows.empty()) batch.Join(joining_slots, joining_rows);
    result.prefill_seconds += std::chrono::duration<double>(Clock::now() - start).count();

    start = Clock::now();
    const std::vector<int64_t> busy = batch.Busy();
    if (busy.empty()) break;
    const std::vector<int64_t> chosen = batch.Choose(busy, generators);
    result.sampling_seconds += std::chrono::duration<double>(Clock::now() - start).count();
    // A free slot decodes a placeholder (token 0, inside every vocabulary) until it is reused
    // or compacted away; its output is never read.
    std::vector<int64_t> step_tokens(batch.slots(), 0);
    std::vector<std::pair<int64_t, int64_t>> streamed;
    for (size_t i = 0; i < busy.size(); ++i) {
      const int64_t slot = busy[i], row = batch.row(slot), token = chosen[i];
      auto& tokens = result.tokens[row];
      tokens.push_back(token);
      streamed.push_back({row, token});
      step_tokens[slot] = token;
      const bool eos = std::find(r.eos_ids.begin(), r.eos_ids.end(), token) != r.eos_ids.end();
      bool stop = false;
      for (const auto& sequence : r.stop_sequences) stop = stop || EndsWith(tokens, sequence);
      if (eos || stop) result.finish[row] = eos ? "eos" : "stop";
      if (eos || stop || static_cast<int64_t>(tokens.size()) == r.max_new_tokens) batch.Leave(slot);
    }
    ++result.steps;
    Stream(stream, std::move(streamed));
    const int64_t busy_after = static_cast<int64_t>(batch.Busy().size());
    if (busy_after == 0 && waiting == count) break;
    // No prompt waits for the free slots: drop them once they are a quarter of the batch.
    if (waiting == count && (batch.slots() - busy_after) * 4 >= batch.slots()) {
      std::vector<int64_t> kept;
      for (int64_t slot : batch.Busy()) kept.push_back(step_tokens[slot]);
      batch.Compact();
      step_tokens = std::move(kept);
    }
    batch.Step(step_tokens);
    result.decode_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  }
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
    request.max_sequences = static_cast<int64_t>(number("maxBatchSequences", static_cast<double>(request.prompts.size())));
    request.token_budget = static_cast<int64_t>(number("prefillTokenBudget", 4096));
    if (request.max_sequences < 1) throw SpinError(ErrorCode::kInvalidArgument, "maxBatchSequences must be >= 1");
    if (request.token_budget < 1) throw SpinError(ErrorCode::kInvalidArgument, "prefillTokenBudget must be >= 1");
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
          out.Set("samplingSeconds", result.sampling_seconds);
          out.Set("steps", static_cast<double>(result.steps));
          return out;
        });
  });
}

}  // namespace spin
