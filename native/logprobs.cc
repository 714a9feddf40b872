#include "logprobs.h"

#include <ATen/ATen.h>

#include "errors.h"

namespace spin {

namespace {

// Σ log p(target) and friends per row, from the hidden state that predicts each target.
// predictors: [K, hidden]; target, row: [K].
ResponseLogprobs ScoreTargets(const Decoder& model, const at::Tensor& predictors, const at::Tensor& target, const at::Tensor& row, int64_t rows) {
  const auto float_options = at::TensorOptions().dtype(at::kFloat).device(predictors.device());
  if (target.numel() > 0) {
    const int64_t low = target.min().item<int64_t>();
    const int64_t high = target.max().item<int64_t>();
    if (low < 0 || high >= model.config().vocab_size) {
      throw SpinError(ErrorCode::kInvalidArgument, "label " + std::to_string(low < 0 ? low : high) +
                                                       " is outside the vocabulary (use -100 to ignore a position)");
    }
  }
  const at::Tensor logits = model.Project(predictors).to(at::kFloat);  // [K, V]
  const at::Tensor token_logps = at::log_softmax(logits, -1).gather(1, target.unsqueeze(1)).squeeze(1);
  return {
      at::zeros({rows}, float_options).index_add(0, row, token_logps),
      at::zeros({rows}, float_options.dtype(at::kLong)).index_add(0, row, at::ones_like(row)),
      at::zeros({rows}, float_options).index_add(0, row, logits.mean(-1)),
  };
}

}  // namespace

ResponseLogprobs ComputeResponseLogprobs(const Decoder& model, const at::Tensor& hidden, const at::Tensor& labels) {
  const int64_t rows = labels.size(0);
  const int64_t length = labels.size(1);
  if (hidden.size(0) != rows || hidden.size(1) != length) {
    throw SpinError(ErrorCode::kShapeMismatch, "labels must have the shape of the input ids");
  }
  if (length < 2) {
    const auto float_options = at::TensorOptions().dtype(at::kFloat).device(hidden.device());
    return {at::zeros({rows}, float_options), at::zeros({rows}, float_options.dtype(at::kLong)), at::zeros({rows}, float_options)};
  }
  const at::Tensor targets = labels.narrow(1, 1, length - 1);  // what position t predicts
  const at::Tensor where = targets.ne(-100).nonzero();           // [K, 2] (row, position)
  const at::Tensor row = where.select(1, 0);
  const at::Tensor position = where.select(1, 1);
  return ScoreTargets(model, hidden.index({row, position}), targets.index({row, position}), row, rows);
}

ResponseLogprobs ComputePackedLogprobs(const Decoder& model, const at::Tensor& hidden, const PackedBatch& batch) {
  return ScoreTargets(model, hidden.select(0, 0).index_select(0, batch.source), batch.target, batch.row, batch.rows);
}

namespace {

// Packing drops padding and runs a pair's common prefix once. A batch with neither (a full
// mask, no pair sharing its first token) runs padded: the same tokens in fewer, larger
// attention calls, without building the packed layout.
bool PackingShortens(const at::Tensor& ids, const at::Tensor& attention_mask, bool share_pairs) {
  if (!attention_mask.ne(0).all().item<bool>()) return true;
  const int64_t rows = ids.size(0);
  if (!share_pairs || rows % 2 != 0 || ids.size(1) == 0) return false;
  const at::Tensor first = ids.select(1, 0);
  return first.narrow(0, 0, rows / 2).eq(first.narrow(0, rows / 2, rows / 2)).any().item<bool>();
}

}  // namespace

ResponseLogprobs BatchLogprobs(const Decoder& model, const ForwardInputs& inputs, const at::Tensor& labels, bool packed, bool share_pairs) {
  if (inputs.ids.dim() != 2 || labels.sizes() != inputs.ids.sizes() || inputs.attention_mask.sizes() != inputs.ids.sizes()) {
    throw SpinError(ErrorCode::kShapeMismatch, "ids, attention mask and labels must have one [rows, tokens] shape");
  }
  // Positions come from the mask (padded: its running sum; packed: its nonzero entries): only
  // 0 and 1 mean the same to both.
  if (inputs.attention_mask.ne(0).logical_and(inputs.attention_mask.ne(1)).any().item<bool>()) {
    throw SpinError(ErrorCode::kInvalidArgument, "attention mask must hold only 0 and 1");
  }
  if (!packed || !PackingShortens(inputs.ids, inputs.attention_mask, share_pairs)) return ComputeResponseLogprobs(model, model.Hidden(inputs), labels);
  const PackedBatch batch = PackBatch(inputs.ids, inputs.attention_mask, labels, share_pairs, model.device());
  ForwardInputs packed_inputs = inputs;
  packed_inputs.packed = batch.sequences;
  return ComputePackedLogprobs(model, model.Hidden(packed_inputs), batch);
}

}  // namespace spin
