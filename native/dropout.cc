#include "dropout.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <type_traits>
#include <torch/csrc/autograd/function.h>

#include "autograd_node.h"

namespace spin {

namespace {

// murmur3's 32-bit finalizer: full avalanche, and a handful of integer ops that vectorize.
inline uint32_t Mix(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

struct MaskKey {
  uint32_t k0, k1;       // the call's seed
  uint32_t threshold;    // an element is kept when its hash is at least this: P = 1 - threshold / 2³²
  double scale;          // 1 / (1 - p)
};

// out[i] = x[i] · scale where hash(seed, i) keeps i, else 0, over [begin, end), computed in
// float (double for double) and rounded once to Out. Blocks of 1024 share the index's high
// word, so the inner loop is 32-bit arithmetic only.
template <class In, class Out>
inline void MaskRange(const In* x, Out* out, int64_t begin, int64_t end, const MaskKey& key) {
  using Compute = std::conditional_t<std::is_same_v<Out, double>, double, float>;
  const Compute scale = static_cast<Compute>(key.scale);
  for (int64_t block = begin; block < end;) {
    const int64_t stop = std::min(end, (block | 1023) + 1);
    const uint32_t high = key.k1 ^ (static_cast<uint32_t>(static_cast<uint64_t>(block) >> 32) * 0x27d4eb2fu);
    const uint32_t first = static_cast<uint32_t>(block);
    const In* xs = x + block;
    Out* os = out + block;
    for (int64_t j = 0; j < stop - block; ++j) {
      const uint32_t h = Mix(Mix((first + static_cast<uint32_t>(j)) ^ key.k0) + high);
      os[j] = static_cast<Out>(static_cast<Compute>(xs[j]) * (h >= key.threshold ? scale : Compute(0)));
    }
    block = stop;
  }
}

#if defined(__x86_64__) || defined(_M_X64)
template <class In, class Out>
__attribute__((target("avx2"))) void MaskRangeAvx2(const In* x, Out* out, int64_t begin, int64_t end, const MaskKey& key) {
  MaskRange(x, out, begin, end, key);
}
#endif

template <class In, class Out>
void MaskAll(const at::Tensor& x, at::Tensor& out, const MaskKey& key) {
  const In* in = x.data_ptr<In>();
  Out* o = out.data_ptr<Out>();
  at::parallel_for(0, x.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
#if defined(__x86_64__) || defined(_M_X64)
    static const bool avx2 = __builtin_cpu_supports("avx2");
    if (avx2) return MaskRangeAvx2(in, o, begin, end, key);
#endif
    MaskRange(in, o, begin, end, key);
  });
}

// Whether the CPU kernel covers x → dtype: same dtype, or a 16-bit x to float32.
bool HasKernel(const at::Tensor& x, c10::ScalarType dtype) {
  if (!x.device().is_cpu()) return false;
  const c10::ScalarType in = x.scalar_type();
  const bool sixteen = in == at::kBFloat16 || in == at::kHalf;
  return (in == dtype && (sixteen || in == at::kFloat || in == at::kDouble)) || (sixteen && dtype == at::kFloat);
}

// x (contiguous, CPU) masked and scaled, in `dtype`.
at::Tensor Masked(const at::Tensor& x, c10::ScalarType dtype, const MaskKey& key) {
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(dtype));
  const bool to_float = dtype == at::kFloat;
  switch (x.scalar_type()) {
    case at::kDouble: MaskAll<double, double>(x, out, key); break;
    case at::kBFloat16: to_float ? MaskAll<c10::BFloat16, float>(x, out, key) : MaskAll<c10::BFloat16, c10::BFloat16>(x, out, key); break;
    case at::kHalf: to_float ? MaskAll<c10::Half, float>(x, out, key) : MaskAll<c10::Half, c10::Half>(x, out, key); break;
    default: MaskAll<float, float>(x, out, key); break;
  }
  return out;
}

// Backward: the incoming gradient through the same mask, in x's dtype.
class DropoutBackward : public torch::autograd::Node {
 public:
  DropoutBackward(MaskKey key, c10::ScalarType input_dtype) : key_(key), input_dtype_(input_dtype) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    if (!grads[0].defined()) return {at::Tensor()};
    const at::Tensor grad = grads[0].contiguous();
    // The kernel's result has no graph: a backward that builds one (double backward, which
    // spin-native never runs) would lose the second-order terms silently.
    TORCH_CHECK(!(c10::GradMode::is_enabled() && grad.requires_grad()), "dropout: double backward is not supported");
    return {Masked(grad, grad.scalar_type(), key_).to(input_dtype_)};
  }

 private:
  MaskKey key_;
  c10::ScalarType input_dtype_;
};

uint64_t DrawSeed() {
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  return at::check_generator<at::CPUGeneratorImpl>(generator)->random64();
}

}  // namespace

at::Tensor Dropout(const at::Tensor& x, double p, c10::ScalarType dtype) {
  if (!HasKernel(x, dtype)) return at::dropout(x.to(dtype), p, true);
  const uint64_t seed = DrawSeed();
  const MaskKey key{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(std::min(p * 4294967296.0, 4294967295.0)), 1.0 / (1.0 - p)};
  // Written through raw pointers: no graph is recorded, the node below is the backward.
  at::Tensor out = Masked(x.contiguous(), dtype, key);
  if (c10::GradMode::is_enabled() && x.requires_grad()) AttachBackward(MakeNode<DropoutBackward>(key, x.scalar_type()), x, out);
  return out;
}

}  // namespace spin
