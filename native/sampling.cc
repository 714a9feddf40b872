#include "sampling.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <ATen/Parallel.h>

#include <array>
#include <cstring>
#include <limits>
#include <mutex>
#include <vector>

#include "errors.h"

namespace spin {

void CheckSamplingConfig(const SamplingConfig& c) {
  if (!c.greedy && !(c.temperature > 0)) throw SpinError(ErrorCode::kInvalidArgument, "temperature must be > 0 when sampling");
  if (c.top_k < 0) throw SpinError(ErrorCode::kInvalidArgument, "topK must be >= 0");
  if (!(c.top_p > 0 && c.top_p <= 1)) throw SpinError(ErrorCode::kInvalidArgument, "topP must be in (0, 1]");
  if (!(c.min_p >= 0 && c.min_p <= 1)) throw SpinError(ErrorCode::kInvalidArgument, "minP must be in [0, 1]");
  if (!(c.repetition_penalty > 0)) throw SpinError(ErrorCode::kInvalidArgument, "repetitionPenalty must be > 0");
}

namespace {

constexpr float kFiltered = -std::numeric_limits<float>::infinity();

// transformers' RepetitionPenaltyLogitsProcessor: seen tokens' scores are divided by the
// penalty when positive and multiplied when negative.
at::Tensor ApplyRepetitionPenalty(const at::Tensor& scores, const at::Tensor& seen, double penalty) {
  if (penalty == 1.0 || !seen.defined()) return scores;
  const at::Tensor penalized = at::where(scores.lt(0), scores.mul(penalty), scores.div(penalty));
  return at::where(seen, penalized, scores);
}

// An order-preserving key of a float: a larger float has a larger key (negative values and
// -inf included).
uint32_t OrderedKey(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

// The smallest key v of `keys` whose higher keys weigh less than `target` in all (`weights`
// null: each weighs 1), so that exactly the keys ≥ v have less than `target` ranked above
// them; 0 when the whole weight stays below `target`. Radix selection instead of a sort:
// three passes bucket the remaining candidates by 11, 11 and 10 bits, walk the buckets from
// the top adding their weight, and narrow to the bucket where it reaches `target`. The cost is
// linear in the number of keys whatever the distribution's shape (a sort costs n·log n).
uint32_t RadixThreshold(const std::vector<uint32_t>& keys, const float* weights, double target) {
  constexpr int kShifts[] = {21, 10, 0};
  constexpr uint32_t kMasks[] = {0x7FF, 0x7FF, 0x3FF};
  const int64_t n = static_cast<int64_t>(keys.size());
  std::vector<int64_t> candidates;
  double above = 0;  // weight of the keys above the candidates
  uint32_t prefix = 0;
  for (int level = 0; level < 3; ++level) {
    std::array<double, 2048> weight{};
    const uint32_t shift = kShifts[level], mask = kMasks[level];
    auto visit = [&](int64_t i) { weight[(keys[i] >> shift) & mask] += weights ? weights[i] : 1.0; };
    if (level == 0) {
      for (int64_t i = 0; i < n; ++i) visit(i);
    } else {
      for (int64_t i : candidates) visit(i);
    }
    int64_t crossing = -1;
    for (int64_t bucket = mask; bucket >= 0; --bucket) {
      if (above + weight[bucket] >= target) {
        crossing = bucket;
        break;
      }
      above += weight[bucket];
    }
    if (crossing < 0) return 0;
    prefix |= static_cast<uint32_t>(crossing) << shift;
    const uint32_t fixed = ~((1u << shift) - 1);  // the bits decided so far
    std::vector<int64_t> narrowed;
    auto narrow = [&](int64_t i) {
      if ((keys[i] & fixed) == prefix) narrowed.push_back(i);
    };
    if (level == 0) {
      for (int64_t i = 0; i < n; ++i) narrow(i);
    } else {
      for (int64_t i : candidates) narrow(i);
    }
    candidates = std::move(narrowed);
  }
  return prefix;
}

// Filters each row of float32 `scores` [B, V] to the entries whose key (of `ranked`, [B, V]
// float32, the same order as the scores) is at or above the row's threshold.
// `weighted`: the ranked values are also the weights (top-p over probabilities).
at::Tensor KeepTop(const at::Tensor& scores, const at::Tensor& ranked_values, bool weighted, double target) {
  const at::Tensor ranked = ranked_values.to(at::kCPU).contiguous();
  const int64_t rows = ranked.size(0), vocab = ranked.size(1);
  at::Tensor keep = at::empty({rows, vocab}, at::TensorOptions().dtype(at::kBool));
  const float* values = ranked.data_ptr<float>();
  bool* kept = keep.data_ptr<bool>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> keys(vocab);
    for (int64_t r = begin; r < end; ++r) {
      const float* row = values + r * vocab;
      for (int64_t i = 0; i < vocab; ++i) keys[i] = OrderedKey(row[i]);
      const uint32_t threshold = RadixThreshold(keys, weighted ? row : nullptr, target);
      for (int64_t i = 0; i < vocab; ++i) kept[r * vocab + i] = keys[i] >= threshold;
    }
  });
  return scores.masked_fill(keep.to(scores.device()).logical_not(), kFiltered);
}

// transformers' TopKLogitsWarper: scores below the k-th largest are removed (ties with it stay),
// i.e. a score stays iff fewer than k scores are larger.
at::Tensor TopK(const at::Tensor& scores, int64_t k) { return KeepTop(scores, scores, false, static_cast<double>(k)); }

// transformers' TopPLogitsWarper: in descending order a token stays iff the probability mass
// ranked above it is < top_p (the top token always stays).
at::Tensor TopP(const at::Tensor& scores, double top_p) { return KeepTop(scores, scores.softmax(-1), true, top_p); }

// Temperature, top-k, top-p and min-p as transformers' warpers (filtered entries become -inf).
at::Tensor Warp(at::Tensor scores, const SamplingConfig& c) {
  if (c.temperature != 1.0) scores = scores.div(c.temperature);
  const int64_t vocab = scores.size(-1);
  if (c.top_k > 0 && c.top_k < vocab) scores = TopK(scores, c.top_k);
  if (c.top_p < 1.0) scores = TopP(scores, c.top_p);
  if (c.min_p > 0.0) {
    const at::Tensor probs = scores.softmax(-1);
    const at::Tensor threshold = probs.amax(-1, true).mul(c.min_p);
    scores = scores.masked_fill(probs.lt(threshold), kFiltered);
  }
  return scores;
}

}  // namespace

at::Tensor SamplingDistribution(const at::Tensor& logits, const SamplingConfig& config, const at::Tensor& seen) {
  const at::Tensor scores = ApplyRepetitionPenalty(logits.to(at::kFloat), seen, config.repetition_penalty);
  return Warp(scores, config).softmax(-1);
}

at::Tensor ChooseNextTokens(const at::Tensor& logits, const SamplingConfig& config, const at::Tensor& seen,
                            std::vector<at::Generator>& generators) {
  const at::Tensor scores = ApplyRepetitionPenalty(logits.to(at::kFloat), seen, config.repetition_penalty);
  if (config.greedy) return scores.argmax(-1);
  // Inverse CDF: one uniform per row from the row's own CPU generator, located in the row's
  // cumulative distribution (float64, so no mass is lost to rounding over large vocabularies).
  const at::Tensor cdf = Warp(scores, config).softmax(-1).to(at::kCPU, at::kDouble).cumsum(-1);
  const int64_t rows = cdf.size(0);
  const int64_t vocab = cdf.size(1);
  at::Tensor targets = at::empty({rows, 1}, at::TensorOptions().dtype(at::kDouble));
  auto target = targets.accessor<double, 2>();
  const auto total = cdf.select(1, vocab - 1).contiguous();
  const double* totals = total.data_ptr<double>();
  for (int64_t r = 0; r < rows; ++r) {
    auto* generator = at::check_generator<at::CPUGeneratorImpl>(generators[r]);
    uint64_t bits;
    {
      std::lock_guard<std::mutex> lock(generators[r].mutex());
      bits = generator->random64();
    }
    target[r][0] = static_cast<double>(bits >> 11) * 0x1.0p-53 * totals[r];  // uniform in [0, total)
  }
  // The first token whose cumulative mass exceeds the target: zero-probability tokens never win.
  const at::Tensor chosen = at::searchsorted(cdf, targets, /*out_int32=*/false, /*right=*/true).squeeze(1).clamp_max(vocab - 1);
  return chosen.to(logits.device());
}

}  // namespace spin
