// A labelled batch of padded rows (ids, attention mask, labels: [N, T]) repacked without
// padding (model/packing.h), with the scored tokens located in the packed row. Rows i and
// i + N/2 — a SPIN batch's real and generated sequence of one pair — run their common prefix
// (the prompt, and any leading tokens the two responses share) once.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>

#include "model/packing.h"

namespace spin {

struct PackedBatch {
  std::shared_ptr<const PackedSequences> sequences;
  // One entry per scored token (label ≠ −100 after a row's first token):
  at::Tensor source;  // [K] int64: the packed slot whose hidden state predicts it
  at::Tensor target;  // [K] int64: the label
  at::Tensor row;     // [K] int64: the input row it counts for
  int64_t rows = 0;
};

// Packs the tokens (attention mask ≠ 0) of every row in order; positions count each row's
// tokens from 0, as a padded forward derives them from the mask. With `share_pairs` and an
// even N, row i and row i + N/2 form one group (their common prefix, then each one's rest).
// Throws SpinError naming the row and column of a label on a padding slot.
PackedBatch PackBatch(const at::Tensor& ids, const at::Tensor& attention_mask, const at::Tensor& labels, bool share_pairs, c10::Device device);

}  // namespace spin
