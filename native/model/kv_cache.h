// A preallocated key/value cache for incremental decoding: one [B, kv_heads, capacity,
// head_dim] buffer per layer for keys and for values, written in place at `length`.
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
  int64_t length = 0;  // slots filled so far
  std::atomic<bool> busy{false};
};

}  // namespace spin
