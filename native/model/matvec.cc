#include "matvec.h"

#include "fused_cpu.h"
#include "spin_pool.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <functional>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SPIN_MATVEC_X86 1
#endif

namespace spin {

namespace {

bool Applies(const at::Tensor& weight, const at::Tensor& x, const at::Tensor& bias) {
#ifdef SPIN_MATVEC_X86
  static const bool cpu_has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const auto fits = [](const at::Tensor& t) {
    return !t.defined() || (t.device().is_cpu() && t.scalar_type() == at::kFloat && t.layout() == at::kStrided);
  };
  return cpu_has_avx2 && fits(weight) && fits(x) && fits(bias) && weight.dim() == 2 && weight.is_contiguous() && FastPathMode({weight, x, bias});
#else
  return false;
#endif
}

#ifdef SPIN_MATVEC_X86

__attribute__((target("avx2,fma"))) float HorizontalSum(__m256 v) {
  const __m128 pairs = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 quads = _mm_add_ps(pairs, _mm_movehl_ps(pairs, pairs));
  return _mm_cvtss_f32(_mm_add_ss(quads, _mm_shuffle_ps(quads, quads, 1)));
}

// out[r] = Σ_c w[r, c] · x[c] for rows [begin, end): four rows per pass share the loads of x.
__attribute__((target("avx2,fma"))) void RowDots(const float* w, const float* x, float* out, int64_t cols, int64_t begin, int64_t end) {
  const int64_t vector_cols = cols - cols % 8;
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) {
    const float* rows[4] = {w + r * cols, w + (r + 1) * cols, w + (r + 2) * cols, w + (r + 3) * cols};
    __m256 sums[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t c = 0; c < vector_cols; c += 8) {
      const __m256 xs = _mm256_loadu_ps(x + c);
      for (int k = 0; k < 4; ++k) sums[k] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[k] + c), xs, sums[k]);
    }
    for (int k = 0; k < 4; ++k) {
      float sum = HorizontalSum(sums[k]);
      for (int64_t c = vector_cols; c < cols; ++c) sum += rows[k][c] * x[c];
      out[r + k] = sum;
    }
  }
  for (; r < end; ++r) {
    const float* row = w + r * cols;
    __m256 sums = _mm256_setzero_ps();
    for (int64_t c = 0; c < vector_cols; c += 8) sums = _mm256_fmadd_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(x + c), sums);
    float sum = HorizontalSum(sums);
    for (int64_t c = vector_cols; c < cols; ++c) sum += row[c] * x[c];
    out[r] = sum;
  }
}

// out[c] = Σ_r x[r] · w[r, c] for columns [begin, end): each row's segment streams once.
__attribute__((target("avx2,fma"))) void ColumnSums(const float* w, const float* x, float* out, int64_t rows, int64_t cols, int64_t begin, int64_t end) {
  const int64_t vector_end = begin + (end - begin) - (end - begin) % 8;
  for (int64_t c = begin; c < end; ++c) out[c] = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    const __m256 xr = _mm256_set1_ps(x[r]);
    for (int64_t c = begin; c < vector_end; c += 8) _mm256_storeu_ps(out + c, _mm256_fmadd_ps(_mm256_loadu_ps(row + c), xr, _mm256_loadu_ps(out + c)));
    for (int64_t c = vector_end; c < end; ++c) out[c] += row[c] * x[r];
  }
}

#endif

at::Tensor AddBias(at::Tensor out, const at::Tensor& bias) { return bias.defined() ? out.add_(bias) : out; }

// body over [0, n) on libtorch's thread count, in grains of 64 rows (64 KiB and up of weight):
// enough to split a projection over the threads, too few to wake a thread for a tiny matrix.
// On the spinning pool (spin_pool.h), or libtorch's when another thread holds that.
void ParallelRows(int64_t n, const std::function<void(int64_t, int64_t)>& body) {
  constexpr int64_t kGrain = 64;
  if (!SpinPoolFor(n, kGrain, at::get_num_threads(), body)) at::parallel_for(0, n, kGrain, body);
}

}  // namespace

std::optional<std::vector<at::Tensor>> MatVecs(const std::vector<at::Tensor>& weights, const at::Tensor& x, const std::vector<at::Tensor>& biases) {
  for (size_t i = 0; i < weights.size(); ++i) {
    if (!Applies(weights[i], x, biases[i]) || weights[i].size(1) != x.numel()) return std::nullopt;
  }
#ifdef SPIN_MATVEC_X86
  const at::Tensor v = x.contiguous();
  const float* xp = v.data_ptr<float>();
  const int64_t cols = v.numel();
  std::vector<at::Tensor> outs;
  std::vector<int64_t> starts{0};  // each weight's first row in the stacked rows
  for (const at::Tensor& w : weights) {
    outs.push_back(at::empty({w.size(0)}, w.options()));
    starts.push_back(starts.back() + w.size(0));
  }
  ParallelRows(starts.back(), [&](int64_t begin, int64_t end) {
    for (size_t i = 0; i < weights.size(); ++i) {
      const int64_t first = std::max(begin, starts[i]), last = std::min(end, starts[i + 1]);
      if (first < last) RowDots(weights[i].data_ptr<float>(), xp, outs[i].data_ptr<float>(), cols, first - starts[i], last - starts[i]);
    }
  });
  for (size_t i = 0; i < weights.size(); ++i) AddBias(outs[i], biases[i]);
  return outs;
#else
  return std::nullopt;
#endif
}

std::optional<at::Tensor> MatVec(const at::Tensor& weight, const at::Tensor& x, const at::Tensor& bias) {
  std::optional<std::vector<at::Tensor>> out = MatVecs({weight}, x, {bias});
  if (!out) return std::nullopt;
  return (*out)[0];
}

std::optional<at::Tensor> VecMat(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!Applies(weight, x, bias) || weight.size(0) != x.numel()) return std::nullopt;
#ifdef SPIN_MATVEC_X86
  const at::Tensor& w = weight;
  const at::Tensor v = x.contiguous();
  const int64_t rows = w.size(0), cols = w.size(1);
  at::Tensor out = at::empty({cols}, w.options());
  const float *wp = w.data_ptr<float>(), *xp = v.data_ptr<float>();
  float* op = out.data_ptr<float>();
  ParallelRows(cols, [&](int64_t begin, int64_t end) { ColumnSums(wp, xp, op, rows, cols, begin, end); });
  return AddBias(out, bias);
#else
  return std::nullopt;
#endif
}

}  // namespace spin
