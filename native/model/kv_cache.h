// A preallocated key/value cache for incremental decoding: one [B, kv_heads, capacity,
// head_dim] buffer per layer for keys and for values. Aligned (left-padded batches): every row
// is written at `length`. Slots (continuous batching, `row_lengths` set): each row is a slot
// with its own length; a packed prefill fills some slots, a decode step appends one token to
// every slot, and a slot is reused by setting its length to 0.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <vector>

namespace spin {

struct KVCache {
  std::vector<at::Tensor> keys;
  std::vector<at::Tensor> values;
  int64_t batch = 0;
  int64_t capacity = 0;
  int64_t length = 0;  // aligned: columns filled so far
  std::vector<int64_t> row_lengths;  // slots: each row's filled columns (empty: aligned)
  std::atomic<bool> busy{false};
};

}  // namespace spin
