// Summed response log-probabilities (docs/method.md, "Log-probabilities"): the vocabulary
// projection and a float32 log-softmax only at positions whose next token is a label.
#pragma once

#include <ATen/core/Tensor.h>

#include "model/decoder.h"
#include "packed_batch.h"

namespace spin {

struct ResponseLogprobs {
  at::Tensor sum;         // [N] float32: Σ log p(label) over response tokens
  at::Tensor tokens;      // [N] int64: number of response tokens
  at::Tensor logit_mean;  // [N] float32: Σ over response tokens of the mean logit (for metrics)
};

// labels: [N, T] with -100 on prompt and padding; position t predicts labels[t + 1].
ResponseLogprobs ComputeResponseLogprobs(const Decoder& model, const at::Tensor& hidden, const at::Tensor& labels);

// The same from a packed forward: hidden [1, M, hidden] of batch.sequences.
ResponseLogprobs ComputePackedLogprobs(const Decoder& model, const at::Tensor& hidden, const PackedBatch& batch);

// The forward and the log-probs of a labelled batch; `packed` runs it without padding, each
// pair's prefix once (packed_batch.h), `inputs` otherwise. Equal within float32 rounding.
ResponseLogprobs BatchLogprobs(const Decoder& model, const ForwardInputs& inputs, const at::Tensor& labels, bool packed, bool share_pairs);

}  // namespace spin
