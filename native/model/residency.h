// Where a decoder's layer weights live between uses. Under ZeRO stage 3 each rank keeps a
// shard of every layer: Acquire makes layer i's weights whole before it runs (the forward, or
// its recomputation in backward) and Release frees them after. `next` is the layer expected
// after this one (its gather may start now), or -1.
#pragma once

#include <cstdint>

namespace spin {

class LayerResidency {
 public:
  virtual ~LayerResidency() = default;
  // False while every weight is whole (Acquire and Release then do nothing).
  virtual bool sharded() const = 0;
  virtual void Acquire(int64_t layer, int64_t next) = 0;
  virtual void Release(int64_t layer) = 0;
};

}  // namespace spin
