// Inverted dropout whose mask is a function of (seed, element index), so it is never stored:
// backward recomputes it. libtorch's CPU dropout draws a Bernoulli tensor element by element
// (about 6 ms for a 2048 × 512 activation here, twice the projection it feeds in a LoRA
// layer) and keeps that float mask for backward; this one is one vectorized pass.
#pragma once

#include <ATen/core/Tensor.h>

namespace spin {

// Zeroes each element of x with probability p (0 < p < 1) and scales the rest by 1/(1-p),
// giving the result in `dtype` (a float32 adapter over a 16-bit activation: the cast rides
// along). One 64-bit seed is drawn from the default generator of x's device per call, so a
// seeded run, and a checkpointed block's recomputation (which replays the generator), draw
// the same mask. Differentiable in x. Off the CPU, or for dtypes without a kernel, it is
// libtorch's dropout.
at::Tensor Dropout(const at::Tensor& x, double p, c10::ScalarType dtype);

}  // namespace spin
