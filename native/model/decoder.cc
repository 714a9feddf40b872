// The decoder (decoder.h). One file because the parameter binding, the layer, the three input
// kinds of a forward (padded rows, packed sequences, a decode step over KV-cache slots) and the
// adapter slots all index the same per-layer weights.
#include "decoder.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/version.h>

#include <algorithm>
#include <sstream>
#include <tuple>

#include "../errors.h"
#include "attention.h"
#include "checkpoint.h"
#include "fused_cpu.h"
#include "matvec.h"
#include "rope.h"
#include "upcast.h"

namespace spin {

namespace {

using Shape = std::vector<int64_t>;

std::string LayerPrefix(const ModelConfig& config, int64_t i) {
  return (config.architecture == Architecture::kGpt2 ? "transformer.h." : "model.layers.") + std::to_string(i) + ".";
}

std::string ShapeText(c10::IntArrayRef shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

// x's shape with its last dimension replaced by `features`.
std::vector<int64_t> OutputShape(const at::Tensor& x, int64_t features) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = features;
  return shape;
}

// x @ Wᵀ + b (weight [out, in], as nn.Linear). A single row goes through matrix-vector
// products (matvec.h; else gemv: OpenBLAS 0.3.21 would pack the whole weight for a one-row
// GEMM, which triples the memory traffic of batch-1 decoding).
at::Tensor Linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  // 16-bit products of many rows in float32 on the CPU (upcast.h).
  if (UpcastGemm(x, x.numel() / x.size(-1))) return UpcastProduct(x.reshape({-1, x.size(-1)}), weight, bias, false).view(OutputShape(x, weight.size(0)));
  if (x.numel() != x.size(-1)) return at::linear(x, weight, bias);
  const at::Tensor row = x.reshape({-1});
  std::optional<at::Tensor> out = MatVec(weight, row, bias);
  if (!out) out = bias.defined() ? at::addmv(bias, weight, row) : at::mv(weight, row);
  return out->view(OutputShape(x, weight.size(0)));
}

// x @ W + b with a Conv1D weight [in, out] (GPT-2), with the same one-row path.
at::Tensor Conv1D(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const std::vector<int64_t> shape = OutputShape(x, weight.size(1));
  if (x.numel() == x.size(-1)) {
    const at::Tensor row = x.reshape({-1});
    std::optional<at::Tensor> out = VecMat(row, weight, bias);
    return (out ? *out : at::addmv(bias, weight.t(), row)).view(shape);
  }
  if (UpcastGemm(x, x.numel() / x.size(-1))) return UpcastProduct(x.reshape({-1, x.size(-1)}), weight, bias, true).view(shape);
  return at::addmm(bias, x.reshape({-1, x.size(-1)}), weight).view(shape);
}

}  // namespace

std::vector<std::pair<std::string, Shape>> ExpectedParameters(const ModelConfig& c) {
  std::vector<std::pair<std::string, Shape>> names;
  const int64_t h = c.hidden_size;
  if (c.architecture == Architecture::kGpt2) {
    names.push_back({"transformer.wte.weight", {c.vocab_size, h}});
    names.push_back({"transformer.wpe.weight", {c.max_positions, h}});
    for (int64_t i = 0; i < c.num_layers; ++i) {
      const std::string p = LayerPrefix(c, i);
      for (const char* norm : {"ln_1", "ln_2"}) {
        names.push_back({p + norm + ".weight", {h}});
        names.push_back({p + norm + ".bias", {h}});
      }
      names.push_back({p + "attn.c_attn.weight", {h, 3 * h}});
      names.push_back({p + "attn.c_attn.bias", {3 * h}});
      names.push_back({p + "attn.c_proj.weight", {h, h}});
      names.push_back({p + "attn.c_proj.bias", {h}});
      names.push_back({p + "mlp.c_fc.weight", {h, c.intermediate_size}});
      names.push_back({p + "mlp.c_fc.bias", {c.intermediate_size}});
      names.push_back({p + "mlp.c_proj.weight", {c.intermediate_size, h}});
      names.push_back({p + "mlp.c_proj.bias", {h}});
    }
    names.push_back({"transformer.ln_f.weight", {h}});
    names.push_back({"transformer.ln_f.bias", {h}});
    if (!c.tie_word_embeddings) names.push_back({"lm_head.weight", {c.vocab_size, h}});
    return names;
  }
  const int64_t q_out = c.num_heads * c.head_dim;
  const int64_t kv_out = c.num_kv_heads * c.head_dim;
  names.push_back({"model.embed_tokens.weight", {c.vocab_size, h}});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = LayerPrefix(c, i);
    names.push_back({p + "input_layernorm.weight", {h}});
    names.push_back({p + "post_attention_layernorm.weight", {h}});
    const std::pair<const char*, Shape> projections[] = {
        {"self_attn.q_proj", {q_out, h}}, {"self_attn.k_proj", {kv_out, h}}, {"self_attn.v_proj", {kv_out, h}}};
    for (const auto& [name, shape] : projections) {
      names.push_back({p + name + ".weight", shape});
      if (c.qkv_bias) names.push_back({p + name + ".bias", {shape[0]}});
    }
    names.push_back({p + "self_attn.o_proj.weight", {h, q_out}});
    if (c.o_bias) names.push_back({p + "self_attn.o_proj.bias", {h}});
    const std::pair<const char*, Shape> mlp[] = {{"mlp.gate_proj", {c.intermediate_size, h}},
                                                 {"mlp.up_proj", {c.intermediate_size, h}},
                                                 {"mlp.down_proj", {h, c.intermediate_size}}};
    for (const auto& [name, shape] : mlp) {
      names.push_back({p + name + ".weight", shape});
      if (c.mlp_bias) names.push_back({p + name + ".bias", {shape[0]}});
    }
  }
  names.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) names.push_back({"lm_head.weight", {c.vocab_size, h}});
  return names;
}

Decoder::Decoder(ModelConfig config, std::map<std::string, at::Tensor> parameters)
    : config_(std::move(config)), parameters_(std::move(parameters)) {
  const auto expected = ExpectedParameters(config_);
  std::vector<std::string> problems;
  std::map<std::string, bool> known;
  c10::optional<c10::ScalarType> dtype;
  c10::optional<c10::Device> device;
  for (const auto& [name, shape] : expected) {
    known[name] = true;
    const auto found = parameters_.find(name);
    if (found == parameters_.end()) {
      problems.push_back("missing " + name + " " + ShapeText(shape));
      continue;
    }
    if (found->second.sizes() != c10::IntArrayRef(shape)) {
      problems.push_back(name + " has shape " + ShapeText(found->second.sizes()) + ", expected " + ShapeText(shape));
    }
    if (!dtype) dtype = found->second.scalar_type();
    if (!device) device = found->second.device();
    if (found->second.scalar_type() != *dtype || found->second.device() != *device) {
      problems.push_back(name + " differs in dtype or device from the other parameters");
    }
  }
  for (const auto& [name, tensor] : parameters_) {
    if (!known.count(name)) problems.push_back("unexpected " + name);
  }
  if (!problems.empty()) {
    std::string message = "checkpoint does not fit the config (" + std::to_string(problems.size()) + " problem(s)):";
    for (size_t i = 0; i < problems.size() && i < 20; ++i) message += "\n  " + problems[i];
    if (problems.size() > 20) message += "\n  …";
    throw SpinError(ErrorCode::kShapeMismatch, message);
  }
  Bind();
}

void Decoder::Bind() {
  auto get = [this](const std::string& name) -> at::Tensor {
    const auto found = parameters_.find(name);
    return found == parameters_.end() ? at::Tensor() : found->second;
  };
  const bool gpt2 = config_.architecture == Architecture::kGpt2;
  embed_ = get(gpt2 ? "transformer.wte.weight" : "model.embed_tokens.weight");
  positions_embed_ = get("transformer.wpe.weight");
  final_norm_weight_ = get(gpt2 ? "transformer.ln_f.weight" : "model.norm.weight");
  final_norm_bias_ = get("transformer.ln_f.bias");
  lm_head_ = config_.tie_word_embeddings ? embed_ : get("lm_head.weight");
  layers_.clear();
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    const std::string p = LayerPrefix(config_, i);
    Layer layer;
    if (gpt2) {
      layer.norm1_weight = get(p + "ln_1.weight");
      layer.norm1_bias = get(p + "ln_1.bias");
      layer.norm2_weight = get(p + "ln_2.weight");
      layer.norm2_bias = get(p + "ln_2.bias");
      layer.qkv = get(p + "attn.c_attn.weight");
      layer.qkv_bias = get(p + "attn.c_attn.bias");
      layer.proj = get(p + "attn.c_proj.weight");
      layer.proj_bias = get(p + "attn.c_proj.bias");
      layer.fc = get(p + "mlp.c_fc.weight");
      layer.fc_bias = get(p + "mlp.c_fc.bias");
      layer.fc_out = get(p + "mlp.c_proj.weight");
      layer.fc_out_bias = get(p + "mlp.c_proj.bias");
    } else {
      layer.norm1_weight = get(p + "input_layernorm.weight");
      layer.norm2_weight = get(p + "post_attention_layernorm.weight");
      layer.q = get(p + "self_attn.q_proj.weight");
      layer.k = get(p + "self_attn.k_proj.weight");
      layer.v = get(p + "self_attn.v_proj.weight");
      layer.o = get(p + "self_attn.o_proj.weight");
      layer.q_bias = get(p + "self_attn.q_proj.bias");
      layer.k_bias = get(p + "self_attn.k_proj.bias");
      layer.v_bias = get(p + "self_attn.v_proj.bias");
      layer.o_bias = get(p + "self_attn.o_proj.bias");
      layer.gate = get(p + "mlp.gate_proj.weight");
      layer.up = get(p + "mlp.up_proj.weight");
      layer.down = get(p + "mlp.down_proj.weight");
      layer.gate_bias = get(p + "mlp.gate_proj.bias");
      layer.up_bias = get(p + "mlp.up_proj.bias");
      layer.down_bias = get(p + "mlp.down_proj.bias");
    }
    layers_.push_back(std::move(layer));
  }
  if (!gpt2) inverse_frequencies_ = RopeInverseFrequencies(config_, embed_.device(), embed_.scalar_type());
}

at::Tensor Decoder::PositionsFromMask(const at::Tensor& attention_mask, int64_t queries) {
  const at::Tensor positions = attention_mask.to(at::kLong).cumsum(-1).sub(1).clamp_min(0);
  return positions.narrow(1, positions.size(1) - queries, queries);
}

// RMSNorm as transformers: in float32, then scaled by the weight in the input dtype.
// GPT-2: LayerNorm with bias.
at::Tensor Decoder::Norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) const {
  if (config_.architecture == Architecture::kGpt2) {
    return at::layer_norm(x, {x.size(-1)}, weight, bias, config_.norm_eps);
  }
  if (std::optional<at::Tensor> fused = FusedRmsNorm(x, weight, config_.norm_eps)) return *fused;
  // float32 for 16-bit and float32 models (as transformers); float64 models stay float64.
  const at::Tensor x32 = x.to(at::promote_types(x.scalar_type(), at::kFloat));
  const at::Tensor normed = x32.mul(at::rsqrt(x32.pow(2).mean(-1, true).add(config_.norm_eps)));
  return weight.mul(normed.to(x.scalar_type()));
}

Decoder::Attend Decoder::PaddedAttend(at::Tensor mask) const {
  const bool gpt2 = config_.architecture == Architecture::kGpt2;
  const AttentionKernel kernel = attention_kernel_;
  return [mask = std::move(mask), gpt2, kernel](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    return Attention(q, k, v, mask, gpt2, kernel);
  };
}

Decoder::Attend Decoder::PackedAttend(std::shared_ptr<const PackedSequences> packed, std::optional<int64_t> sliding_window) const {
  const bool gpt2 = config_.architecture == Architecture::kGpt2;
  const AttentionKernel kernel = attention_kernel_;
  const c10::ScalarType mask_dtype = dtype();
  return [packed = std::move(packed), sliding_window, gpt2, kernel, mask_dtype](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    // Each group attends within itself; its mask is rebuilt per layer (a few passes over
    // [L, L], against the H·d multiply-adds per score) rather than kept for the whole forward.
    if (packed->groups.empty()) return at::zeros_like(q);
    std::vector<at::Tensor> outputs;
    for (size_t g = 0; g < packed->groups.size(); ++g) {
      const auto [start, length] = packed->groups[g];
      const at::Tensor mask = GroupMask(*packed, g, sliding_window, mask_dtype);
      outputs.push_back(Attention(q.narrow(2, start, length), k.narrow(2, start, length), v.narrow(2, start, length), mask, gpt2, kernel));
    }
    return outputs.size() == 1 ? outputs[0] : at::cat(outputs, 2);
  };
}

at::Tensor Decoder::LayerForward(const Layer& L, int64_t index, const at::Tensor& hidden, const Attend& attend,
                                 const at::Tensor& rope_cos, const at::Tensor& rope_sin, const StoreKV& store, bool training) const {
  const int64_t batch = hidden.size(0);
  const int64_t tokens = hidden.size(1);
  const int64_t head_dim = config_.head_dim;
  const bool gpt2 = config_.architecture == Architecture::kGpt2;
  // A projection with its adapter term (none when no adapter is attached).
  const LoraAdapter* adapter = adapter_.get();
  auto linear = [&](const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const LoraWeights& lora) {
    const at::Tensor y = gpt2 ? Conv1D(x, weight, bias) : Linear(x, weight, bias);
    return adapter ? AddLora(y, x, lora, *adapter, training) : y;
  };
  // Projections of one input (q, k, v; gate, up). A one-row input takes them in one pass over
  // the threads (matvec.h); otherwise one product each.
  struct Projection {
    const at::Tensor& weight;
    const at::Tensor& bias;
    const LoraWeights& lora;
  };
  auto linears = [&](const at::Tensor& x, std::initializer_list<Projection> projections) {
    std::optional<std::vector<at::Tensor>> fused;
    if (x.numel() == x.size(-1)) {
      std::vector<at::Tensor> weights, biases;
      for (const Projection& p : projections) weights.push_back(p.weight), biases.push_back(p.bias);
      fused = MatVecs(weights, x.reshape({-1}), biases);
    }
    std::vector<at::Tensor> out;
    for (const Projection& p : projections) {
      if (!fused) {
        out.push_back(linear(x, p.weight, p.bias, p.lora));
        continue;
      }
      const at::Tensor y = (*fused)[out.size()].view(OutputShape(x, p.weight.size(0)));
      out.push_back(adapter ? AddLora(y, x, p.lora, *adapter, training) : y);
    }
    return out;
  };

  at::Tensor x = Norm(hidden, L.norm1_weight, L.norm1_bias);
  at::Tensor q, k, v;
  if (gpt2) {
    const auto qkv = linear(x, L.qkv, L.qkv_bias, L.qkv_lora).chunk(3, -1);
    q = qkv[0], k = qkv[1], v = qkv[2];
  } else {
    const std::vector<at::Tensor> qkv = linears(x, {{L.q, L.q_bias, L.q_lora}, {L.k, L.k_bias, L.k_lora}, {L.v, L.v_bias, L.v_lora}});
    q = qkv[0], k = qkv[1], v = qkv[2];
  }
  q = q.view({batch, tokens, -1, head_dim}).transpose(1, 2);
  k = k.view({batch, tokens, -1, head_dim}).transpose(1, 2);
  v = v.view({batch, tokens, -1, head_dim}).transpose(1, 2);
  if (!gpt2) {
    const RopeTables tables{rope_cos, rope_sin};
    q = ApplyRope(q, tables);
    k = ApplyRope(k, tables);
  }
  if (store) std::tie(k, v) = store(index, k, v);
  at::Tensor attended = attend(q, k, v).transpose(1, 2).reshape({batch, tokens, -1});
  at::Tensor out = gpt2 ? linear(attended, L.proj, L.proj_bias, L.proj_lora) : linear(attended, L.o, L.o_bias, L.o_lora);
  at::Tensor h = hidden.add(out);

  x = Norm(h, L.norm2_weight, L.norm2_bias);
  if (gpt2) {
    out = linear(at::gelu(linear(x, L.fc, L.fc_bias, L.fc_lora), "tanh"), L.fc_out, L.fc_out_bias, L.fc_out_lora);
  } else {
    const std::vector<at::Tensor> gate_up = linears(x, {{L.gate, L.gate_bias, L.gate_lora}, {L.up, L.up_bias, L.up_lora}});
    out = linear(at::silu(gate_up[0]).mul(gate_up[1]), L.down, L.down_bias, L.down_lora);
  }
  return h.add(out);
}

at::Tensor Decoder::Hidden(const ForwardInputs& in) const {
  KVCache* cache = in.cache;
  const bool slotted = cache != nullptr && !cache->row_lengths.empty();
  if (slotted && !in.packed) return SlotStep(in);
  if (in.packed) {
    if (cache && (!slotted || in.slots.size() != in.packed->groups.size())) {
      throw SpinError(ErrorCode::kInvalidArgument, "a packed forward stores keys and values only in a slot-mode KV cache, one slot per sequence");
    }
    Attend full_attend = PackedAttend(in.packed, std::nullopt);
    Attend window_attend = config_.sliding_window ? PackedAttend(in.packed, config_.sliding_window) : full_attend;
    StoreKV store;
    if (cache) {
      // A prefill: each sequence's keys and values go to the start of its slot.
      store = [cache, packed = in.packed, slots = in.slots](int64_t index, const at::Tensor& k, const at::Tensor& v) {
        for (size_t g = 0; g < slots.size(); ++g) {
          const auto [start, length] = packed->groups[g];
          cache->keys[index][slots[g]].narrow(1, 0, length).copy_(k[0].narrow(1, start, length));
          cache->values[index][slots[g]].narrow(1, 0, length).copy_(v[0].narrow(1, start, length));
        }
        return std::make_pair(k, v);
      };
      for (size_t g = 0; g < in.slots.size(); ++g) {
        const int64_t slot = in.slots[g];
        if (slot < 0 || slot >= cache->batch || in.packed->groups[g].second > cache->capacity) {
          throw SpinError(ErrorCode::kShapeMismatch, "slot " + std::to_string(slot) + " does not fit the KV cache (" + std::to_string(cache->batch) + " slots of " + std::to_string(cache->capacity) + ")");
        }
      }
    }
    CheckInputs(in.packed->ids, in.packed->positions);
    const at::Tensor out = Run(in.packed->ids, in.packed->positions, full_attend, window_attend, store, in.checkpoint_layers && !cache, in.training);
    for (size_t g = 0; g < in.slots.size(); ++g) cache->row_lengths[in.slots[g]] = in.packed->groups[g].second;
    return out;
  }
  const int64_t batch = in.ids.size(0);
  const int64_t tokens = in.ids.size(1);
  const int64_t past = cache ? cache->length : 0;
  if (in.attention_mask.size(0) != batch || in.attention_mask.size(1) != past + tokens) {
    throw SpinError(ErrorCode::kShapeMismatch, "attention mask must be [batch, past + tokens] = [" +
                                                   std::to_string(batch) + ", " + std::to_string(past + tokens) +
                                                   "], got " + ShapeText(in.attention_mask.sizes()));
  }
  if (cache && (cache->batch != batch || past + tokens > cache->capacity)) {
    throw SpinError(ErrorCode::kShapeMismatch, "KV cache holds " + std::to_string(cache->capacity) +
                                                   " slots for batch " + std::to_string(cache->batch) +
                                                   "; this step needs " + std::to_string(past + tokens) +
                                                   " for batch " + std::to_string(batch));
  }
  const at::Tensor positions = in.positions.defined() ? in.positions : PositionsFromMask(in.attention_mask, tokens);
  // Layers from sliding_window_from_layer on see only the window (Qwen2's max_window_layers).
  const Attend full_attend = PaddedAttend(AttentionMask(in.attention_mask, past, tokens, std::nullopt, dtype()));
  const Attend window_attend = config_.sliding_window ? PaddedAttend(AttentionMask(in.attention_mask, past, tokens, config_.sliding_window, dtype())) : full_attend;
  StoreKV store;
  if (cache) {
    // Every row appends its keys/values at the same column, and attends over all filled ones.
    store = [cache, tokens](int64_t index, const at::Tensor& k, const at::Tensor& v) {
      const int64_t end = cache->length + tokens;
      cache->keys[index].narrow(2, cache->length, tokens).copy_(k);
      cache->values[index].narrow(2, cache->length, tokens).copy_(v);
      return std::make_pair(cache->keys[index].narrow(2, 0, end), cache->values[index].narrow(2, 0, end));
    };
  }
  CheckInputs(in.ids, positions);
  const at::Tensor out = Run(in.ids, positions, full_attend, window_attend, store, in.checkpoint_layers && !cache, in.training);
  if (cache) cache->length = past + tokens;
  return out;
}

at::Tensor Decoder::SlotStep(const ForwardInputs& in) const {
  KVCache* cache = in.cache;
  const int64_t batch = in.ids.size(0);
  const int64_t visible = *std::max_element(cache->row_lengths.begin(), cache->row_lengths.end()) + 1;
  if (in.ids.dim() != 2 || in.ids.size(1) != 1 || batch != cache->batch || visible > cache->capacity) {
    throw SpinError(ErrorCode::kShapeMismatch, "a decode step over " + std::to_string(cache->batch) + " KV-cache slots of " + std::to_string(cache->capacity) +
                                                   " takes ids [" + std::to_string(cache->batch) + ", 1] and a free column in every slot; got ids " + ShapeText(in.ids.sizes()) +
                                                   " with " + std::to_string(visible - 1) + " columns filled");
  }
  // The host knows the positions; the ids are the sampler's choices, inside the vocabulary by
  // construction, so a decode step needs no device sync to check them.
  CheckPosition(visible - 1);
  const auto long_options = at::TensorOptions().dtype(at::kLong);
  const at::Tensor lengths = at::tensor(cache->row_lengths, long_options).to(device()).view({batch, 1});
  // Each row's new token sits at its own length: it sees its filled columns and itself.
  const at::Tensor key_slot = at::arange(visible, long_options.device(device())).view({1, visible});
  const at::Tensor seen = key_slot.le(lengths);
  const Attend full_attend = PaddedAttend(AdditiveMask(seen, dtype()).view({batch, 1, 1, visible}));
  const Attend window_attend = config_.sliding_window
                                   ? PaddedAttend(AdditiveMask(seen.logical_and(lengths.sub(key_slot).lt(*config_.sliding_window)), dtype()).view({batch, 1, 1, visible}))
                                   : full_attend;
  const at::Tensor rows = at::arange(batch, long_options.device(device()));
  const at::Tensor columns = lengths.view({batch});
  const StoreKV store = [cache, rows, columns, visible](int64_t index, const at::Tensor& k, const at::Tensor& v) {
    // [B, H, 1, d] into [B, H, capacity, d] at (row, column of the row).
    cache->keys[index].permute({0, 2, 1, 3}).index_put_({rows, columns}, k.squeeze(2));
    cache->values[index].permute({0, 2, 1, 3}).index_put_({rows, columns}, v.squeeze(2));
    return std::make_pair(cache->keys[index].narrow(2, 0, visible), cache->values[index].narrow(2, 0, visible));
  };
  const at::Tensor out = Run(in.ids, lengths, full_attend, window_attend, store, false, in.training);
  for (int64_t& length : cache->row_lengths) ++length;
  cache->length = visible;
  return out;
}

void Decoder::CheckPosition(int64_t max_position) const {
  if (config_.architecture == Architecture::kGpt2 && max_position >= config_.max_positions) {
    throw SpinError(ErrorCode::kInvalidArgument, "position " + std::to_string(max_position) + " is beyond the model's " +
                                                     std::to_string(config_.max_positions) + " learned positions");
  }
}

void Decoder::CheckInputs(const at::Tensor& ids, const at::Tensor& positions) const {
  if (ids.numel() == 0) return;
  // The three reductions come to the host together: one device sync, not three.
  const at::Tensor extremes = at::stack({ids.min(), ids.max(), positions.max()}).to(at::kCPU, at::kLong);
  const int64_t* e = extremes.data_ptr<int64_t>();
  CheckPosition(e[2]);
  if (e[0] < 0 || e[1] >= config_.vocab_size) {
    throw SpinError(ErrorCode::kInvalidArgument, "token id " + std::to_string(e[0] < 0 ? e[0] : e[1]) + " is outside the vocabulary [0, " +
                                                     std::to_string(config_.vocab_size) + ")");
  }
}

at::Tensor Decoder::Run(const at::Tensor& ids, const at::Tensor& positions, const Attend& full_attend, const Attend& window_attend,
                        const StoreKV& store, bool checkpoint_layers, bool training) const {
  at::Tensor hidden = at::embedding(embed_, ids);
  if (config_.architecture == Architecture::kGpt2) hidden = hidden.add(at::embedding(positions_embed_, positions));
  at::Tensor rope_cos, rope_sin;
  if (config_.architecture == Architecture::kLlama) {
    const RopeTables tables = RopeTablesFor(inverse_frequencies_, positions, dtype());
    rope_cos = tables.cos;
    rope_sin = tables.sin;
  }
  const bool checkpoint = checkpoint_layers && c10::GradMode::is_enabled();
  // Sharded layers are gathered for each use and freed after it: autograd may not keep them
  // for backward, so a forward with grad recomputes each layer there.
  const std::shared_ptr<LayerResidency> residency = residency_ && residency_->sharded() ? residency_ : nullptr;
  if (residency && c10::GradMode::is_enabled() && !checkpoint) {
    throw SpinError(ErrorCode::kInvalidArgument, "the layers are sharded (ZeRO stage 3): a forward with gradients needs gradient checkpointing");
  }
  const int64_t layers = config_.num_layers;
  for (int64_t i = 0; i < layers; ++i) {
    const Attend& attend = i >= config_.sliding_window_from_layer ? window_attend : full_attend;
    if (checkpoint) {
      // The block runs again in backward: it owns the decoder and its tensors.
      auto self = shared_from_this();
      BlockBracket bracket;
      if (residency) {
        // Forward goes up the layers, backward down: prefetch the one after in that direction.
        bracket.enter = [residency, i, layers](bool backward) { residency->Acquire(i, backward ? i - 1 : (i + 1 < layers ? i + 1 : -1)); };
        bracket.exit = [residency, i]() { residency->Release(i); };
      }
      hidden = CheckpointedCall(
          [self, i, attend, rope_cos, rope_sin, training](const at::Tensor& h) {
            return self->LayerForward(self->layers_[i], i, h, attend, rope_cos, rope_sin, nullptr, training);
          },
          hidden, training && adapter_ && adapter_->dropout > 0, std::move(bracket));
    } else {
      if (residency) residency->Acquire(i, i + 1 < layers ? i + 1 : -1);
      hidden = LayerForward(layers_[i], i, hidden, attend, rope_cos, rope_sin, store, training);
      if (residency) residency->Release(i);
    }
  }
  return Norm(hidden, final_norm_weight_, final_norm_bias_);
}

at::Tensor Decoder::Project(const at::Tensor& hidden) const { return Linear(hidden, lm_head_, at::Tensor()); }

KVCache* Decoder::NewCache(int64_t batch, int64_t capacity) const {
  if (batch < 1 || capacity < 1) throw SpinError(ErrorCode::kInvalidArgument, "KV cache batch and capacity must be positive");
  auto* cache = new KVCache();
  cache->batch = batch;
  cache->capacity = capacity;
  const auto options = at::TensorOptions().dtype(dtype()).device(device());
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    cache->keys.push_back(at::zeros({batch, config_.num_kv_heads, capacity, config_.head_dim}, options));
    cache->values.push_back(at::zeros({batch, config_.num_kv_heads, capacity, config_.head_dim}, options));
  }
  return cache;
}

std::vector<Decoder::Slot> Decoder::Slots() const {
  std::vector<Slot> slots;
  const bool gpt2 = config_.architecture == Architecture::kGpt2;
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    const std::string p = LayerPrefix(config_, i);
    if (gpt2) {
      slots.push_back({p + "attn.c_attn", i, &Layer::qkv, &Layer::qkv_lora, true});
      slots.push_back({p + "attn.c_proj", i, &Layer::proj, &Layer::proj_lora, true});
      slots.push_back({p + "mlp.c_fc", i, &Layer::fc, &Layer::fc_lora, true});
      slots.push_back({p + "mlp.c_proj", i, &Layer::fc_out, &Layer::fc_out_lora, true});
    } else {
      slots.push_back({p + "self_attn.q_proj", i, &Layer::q, &Layer::q_lora, false});
      slots.push_back({p + "self_attn.k_proj", i, &Layer::k, &Layer::k_lora, false});
      slots.push_back({p + "self_attn.v_proj", i, &Layer::v, &Layer::v_lora, false});
      slots.push_back({p + "self_attn.o_proj", i, &Layer::o, &Layer::o_lora, false});
      slots.push_back({p + "mlp.gate_proj", i, &Layer::gate, &Layer::gate_lora, false});
      slots.push_back({p + "mlp.up_proj", i, &Layer::up, &Layer::up_lora, false});
      slots.push_back({p + "mlp.down_proj", i, &Layer::down, &Layer::down_lora, false});
    }
  }
  return slots;
}

std::vector<LinearModule> Decoder::LinearModules() const {
  std::vector<LinearModule> modules;
  for (const Slot& slot : Slots()) {
    const at::Tensor& weight = layers_[slot.layer].*slot.weight;
    modules.push_back({slot.module, weight.size(slot.conv1d ? 0 : 1), weight.size(slot.conv1d ? 1 : 0)});
  }
  return modules;
}

void Decoder::SetAdapter(std::shared_ptr<const LoraAdapter> adapter) {
  const std::vector<Slot> slots = Slots();
  std::vector<LoraWeights> bound(slots.size());
  if (adapter) {
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < slots.size(); ++i) index[slots[i].module] = i;
    for (const auto& [name, tensor] : adapter->tensors) {
      const bool is_a = name.size() > 14 && name.compare(name.size() - 14, 14, ".lora_A.weight") == 0;
      const bool is_b = name.size() > 14 && name.compare(name.size() - 14, 14, ".lora_B.weight") == 0;
      const std::string module = is_a || is_b ? name.substr(0, name.size() - 14) : name;
      const auto found = index.find(module);
      if (!(is_a || is_b) || found == index.end()) {
        std::string known;
        for (const Slot& slot : slots) {
          if (slot.layer == 0) known += (known.empty() ? "" : ", ") + slot.module;
        }
        throw SpinError(ErrorCode::kInvalidArgument, "adapter tensor " + name + " names no LoRA weight of a linear module of the model" +
                                                         " (expected <module>.lora_A.weight / .lora_B.weight; modules: " + known + ", … for every layer)");
      }
      if (!at::isFloatingType(tensor.scalar_type()) || tensor.dim() != 2) throw SpinError(ErrorCode::kInvalidArgument, "adapter tensor " + name + " must be a 2-D floating tensor");
      if (tensor.device() != device()) throw SpinError(ErrorCode::kDevice, "adapter tensor " + name + " is on another device than the model");
      (is_a ? bound[found->second].a : bound[found->second].b) = tensor;
    }
    const std::vector<LinearModule> modules = LinearModules();
    for (size_t i = 0; i < slots.size(); ++i) {
      const LoraWeights& lora = bound[i];
      if (!lora.a.defined() && !lora.b.defined()) continue;
      const std::string& module = slots[i].module;
      if (!lora.a.defined() || !lora.b.defined()) {
        throw SpinError(ErrorCode::kInvalidArgument, "adapter has " + module + (lora.a.defined() ? ".lora_A.weight without .lora_B.weight" : ".lora_B.weight without .lora_A.weight"));
      }
      const int64_t rank = lora.a.size(0);
      if (lora.a.size(1) != modules[i].in || lora.b.size(0) != modules[i].out || lora.b.size(1) != rank) {
        throw SpinError(ErrorCode::kShapeMismatch, module + ": lora_A " + ShapeText(lora.a.sizes()) + " and lora_B " + ShapeText(lora.b.sizes()) +
                                                       " do not fit the module's [" + std::to_string(modules[i].out) + ", " + std::to_string(modules[i].in) +
                                                       "] weight (expected lora_A [r, " + std::to_string(modules[i].in) + "], lora_B [" +
                                                       std::to_string(modules[i].out) + ", r])");
      }
    }
    // The base is frozen: no gradients, no optimizer state, only the adapter trains.
    for (auto& [name, parameter] : parameters_) parameter.requires_grad_(false);
    for (const LoraWeights& lora : bound) {
      if (!lora.defined()) continue;
      lora.a.requires_grad_(true);
      lora.b.requires_grad_(true);
    }
  }
  for (size_t i = 0; i < slots.size(); ++i) layers_[slots[i].layer].*slots[i].lora = bound[i];
  adapter_ = std::move(adapter);
}

std::vector<std::pair<std::string, at::Tensor>> Decoder::MergedWeights() const {
  if (!adapter_) throw SpinError(ErrorCode::kInvalidArgument, "the model has no adapter to merge");
  at::NoGradGuard no_grad;
  std::vector<std::pair<std::string, at::Tensor>> merged;
  for (const Slot& slot : Slots()) {
    const Layer& layer = layers_[slot.layer];
    const LoraWeights& lora = layer.*slot.lora;
    if (lora.defined()) merged.push_back({slot.module + ".weight", MergedWeight(layer.*slot.weight, lora, adapter_->scale, slot.conv1d)});
  }
  return merged;
}

void Decoder::MergeAdapter() {
  at::NoGradGuard no_grad;
  for (const auto& [name, weight] : MergedWeights()) parameters_.at(name).copy_(weight);
  SetAdapter(nullptr);
}

int64_t Decoder::LayerOf(const std::string& name) const {
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    if (name.rfind(LayerPrefix(config_, i), 0) == 0) return i;
  }
  return -1;
}

void Decoder::SetAttentionKernel(AttentionKernel kernel) {
  if (kernel == AttentionKernel::kSdpa && !SdpaAvailable()) {
    throw SpinError(ErrorCode::kInvalidArgument, "attention 'sdpa' needs libtorch 2 or later (scaled_dot_product_attention); this build has " TORCH_VERSION);
  }
  attention_kernel_ = kernel;
}

void Decoder::RequireWhole(const char* what) const {
  if (residency_ && residency_->sharded()) {
    throw SpinError(ErrorCode::kInvalidArgument, std::string(what) + ": the layers' weights are sharded across ranks (ZeRO stage 3, while training)");
  }
}

std::vector<std::pair<std::string, at::Tensor>> Decoder::TrainableParameters() const {
  std::vector<std::pair<std::string, at::Tensor>> trainable;
  if (!adapter_) {
    for (const auto& [name, shape] : ExpectedParameters(config_)) trainable.push_back({name, parameters_.at(name)});
    return trainable;
  }
  for (const Slot& slot : Slots()) {
    const LoraWeights& lora = layers_[slot.layer].*slot.lora;
    if (!lora.defined()) continue;
    trainable.push_back({slot.module + ".lora_A.weight", lora.a});
    trainable.push_back({slot.module + ".lora_B.weight", lora.b});
  }
  return trainable;
}

}  // namespace spin
