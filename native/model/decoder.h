// One causal decoder for the Llama family (llama, mistral, qwen2) and GPT-2. Parameters are
// kept under their Hugging Face names, so loading and saving are a name map.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "kv_cache.h"
#include "attention.h"
#include "lora.h"
#include "packing.h"
#include "residency.h"

namespace spin {

struct ForwardInputs {
  at::Tensor ids;             // [B, T] int64
  at::Tensor attention_mask;  // [B, past + T], 1 = token, 0 = padding
  at::Tensor positions;       // [B, T] int64, or undefined: derived from the mask
  // Instead of ids/mask/positions: sequences packed in one row without padding. With a cache
  // in slot mode, group g's keys and values are stored in cache row slots[g] (a prefill).
  std::shared_ptr<const PackedSequences> packed;
  std::vector<int64_t> slots;
  KVCache* cache = nullptr;   // when set, keys/values are appended at cache->length
  bool checkpoint_layers = false;  // recompute each layer in backward (saves activations)
  bool training = false;           // adapter dropout on (a training step's forward)
};

// A linear projection an adapter can target, by its HF module name.
struct LinearModule {
  std::string name;  // e.g. "model.layers.0.self_attn.q_proj", "transformer.h.0.attn.c_attn"
  int64_t in = 0, out = 0;
};

class Decoder : public std::enable_shared_from_this<Decoder> {
 public:
  // Takes the named parameters (HF names); throws SpinError listing every missing,
  // unexpected or mis-shaped tensor.
  Decoder(ModelConfig config, std::map<std::string, at::Tensor> parameters);

  const ModelConfig& config() const { return config_; }
  const std::map<std::string, at::Tensor>& parameters() const { return parameters_; }
  c10::Device device() const { return embed_.device(); }
  c10::ScalarType dtype() const { return embed_.scalar_type(); }

  // Final hidden states [B, T, hidden] (after the last norm); [1, M, hidden] for packed inputs.
  at::Tensor Hidden(const ForwardInputs& inputs) const;
  // Vocabulary projection of hidden states [..., hidden] -> [..., vocab] (lm_head).
  at::Tensor Project(const at::Tensor& hidden) const;

  KVCache* NewCache(int64_t batch, int64_t capacity) const;

  // The projections an adapter can target, in forward order.
  std::vector<LinearModule> LinearModules() const;
  // Attaches `adapter` (validated against LinearModules: every tensor named, shaped, typed and
  // placed right, or SpinError naming it) and freezes the base; null detaches the adapter.
  void SetAdapter(std::shared_ptr<const LoraAdapter> adapter);
  const std::shared_ptr<const LoraAdapter>& adapter() const { return adapter_; }
  // The adapted modules' weights with the adapter folded in (W + s·B·A), as new tensors by
  // parameter name; the model is unchanged.
  std::vector<std::pair<std::string, at::Tensor>> MergedWeights() const;
  // Folds the adapter into the base weights in place and detaches it.
  void MergeAdapter();
  // What training updates, in forward order: the adapter's tensors when one is attached,
  // otherwise every parameter.
  std::vector<std::pair<std::string, at::Tensor>> TrainableParameters() const;
  // The decoder layer a parameter (or adapter tensor) belongs to, or -1 (embeddings, final
  // norm, head).
  int64_t LayerOf(const std::string& name) const;

  // How attention is computed (attention.h); kSdpa where this libtorch has it, by default.
  // Throws for kSdpa where this libtorch lacks it.
  void SetAttentionKernel(AttentionKernel kernel);
  AttentionKernel attention_kernel() const { return attention_kernel_; }

  // ZeRO stage 3: the layers' weights are gathered around each use; null: always whole.
  void SetResidency(std::shared_ptr<LayerResidency> residency) { residency_ = std::move(residency); }
  // Throws naming `what` while the layers' weights are sharded (they are not all there).
  void RequireWhole(const char* what) const;

  // Positions of real tokens counted from the first one (left padding aware): cumsum - 1,
  // padding slots clamped to 0. mask: [B, S]; returns the last T columns.
  static at::Tensor PositionsFromMask(const at::Tensor& attention_mask, int64_t queries);

 private:
  struct Layer {
    at::Tensor norm1_weight, norm1_bias, norm2_weight, norm2_bias;
    at::Tensor q, k, v, o, q_bias, k_bias, v_bias, o_bias;      // llama family
    at::Tensor qkv, qkv_bias, proj, proj_bias;                   // gpt2 attention (Conv1D)
    at::Tensor gate, up, down, gate_bias, up_bias, down_bias;    // SwiGLU
    at::Tensor fc, fc_bias, fc_out, fc_out_bias;                 // gpt2 MLP (Conv1D)
    LoraWeights q_lora, k_lora, v_lora, o_lora, gate_lora, up_lora, down_lora, qkv_lora, proj_lora, fc_lora, fc_out_lora;
  };

  // A projection of a layer: its module name, weight and adapter slot.
  struct Slot {
    std::string module;
    int64_t layer;
    at::Tensor Layer::*weight;
    LoraWeights Layer::*lora;
    bool conv1d;  // GPT-2's Conv1D: weight [in, out]
  };

  // Attention of one layer's q [B, H, T, d] over k/v [B, Hkv, S, d], masked as the inputs say.
  using Attend = std::function<at::Tensor(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v)>;
  // Stores layer `index`'s new keys/values in a cache and returns what to attend over.
  using StoreKV = std::function<std::pair<at::Tensor, at::Tensor>(int64_t index, const at::Tensor& k, const at::Tensor& v)>;

  void Bind();
  std::vector<Slot> Slots() const;
  // The attention of a forward over padded rows (mask [B, 1, T, S]) or packed sequences.
  Attend PaddedAttend(at::Tensor mask) const;
  Attend PackedAttend(std::shared_ptr<const PackedSequences> packed, std::optional<int64_t> sliding_window) const;
  at::Tensor LayerForward(const Layer& layer, int64_t index, const at::Tensor& hidden, const Attend& attend,
                          const at::Tensor& rope_cos, const at::Tensor& rope_sin, const StoreKV& store, bool training) const;
  // A decode step of a slot-mode cache: one token per row, each at its row's length.
  at::Tensor SlotStep(const ForwardInputs& inputs) const;
  // Token ids inside the vocabulary and (GPT-2) positions inside the learned table; SpinError otherwise.
  void CheckInputs(const at::Tensor& ids, const at::Tensor& positions) const;
  void CheckPosition(int64_t max_position) const;
  // Embedding, the layers and the final norm (every input kind ends here; its caller checks
  // ids and positions); `checkpoint_layers` recomputes each layer in backward when grad is on.
  at::Tensor Run(const at::Tensor& ids, const at::Tensor& positions, const Attend& full_attend, const Attend& window_attend,
                 const StoreKV& store, bool checkpoint_layers, bool training) const;
  at::Tensor Norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) const;

  ModelConfig config_;
  std::map<std::string, at::Tensor> parameters_;
  std::vector<Layer> layers_;
  at::Tensor embed_, positions_embed_, final_norm_weight_, final_norm_bias_, lm_head_;
  at::Tensor inverse_frequencies_;
  std::shared_ptr<const LoraAdapter> adapter_;
  std::shared_ptr<LayerResidency> residency_;
  std::atomic<AttentionKernel> attention_kernel_{SdpaAvailable() ? AttentionKernel::kSdpa : AttentionKernel::kEager};
};

// The expected parameter names and shapes of a config (HF layout).
std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedParameters(const ModelConfig& config);

}  // namespace spin
