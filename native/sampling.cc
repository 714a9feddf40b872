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

// The top-p keep mask of one row of probabilities (transformers' TopPLogitsWarper: in descending
// order a token stays iff the mass ranked before it is < top_p; the top token always stays).
// Radix selection instead of a sort: non-negative floats order as their bit patterns, so three
// passes bucket the candidates by 11, 11 and 10 bits, walk the buckets from the top adding
// their mass, and narrow to the bucket where the mass reaches top_p. What is left is the
// smallest kept value; every token at or above it stays (ties included). The cost is linear in
// the vocabulary whatever the distribution's shape; a sort costs V·log V, and the peaked-case
// shortcut of a top-1024 selection fell back to it for flat distributions.
void TopPKeepRow(const float* probs, int64_t vocab, double top_p, bool* keep) {
  constexpr int kShifts[] = {21, 10, 0};
  constexpr uint32_t kMasks[] = {0x7FF, 0x7FF, 0x3FF};
  auto bits_of = [](float value) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
  };
  std::vector<int64_t> candidates;
  double before = 0;  // mass of the values above the candidates
  uint32_t prefix = 0;
  for (int level = 0; level < 3; ++level) {
    std::array<double, 2048> mass{};
    auto visit = [&](int64_t i) { mass[(bits_of(probs[i]) >> kShifts[level]) & kMasks[level]] += probs[i]; };
    if (level == 0) {
      for (int64_t i = 0; i < vocab; ++i) visit(i);
    } else {
      for (int64_t i : candidates) visit(i);
    }
    int64_t crossing = -1;
    for (int64_t key = kMasks[level]; key >= 0; --key) {
      if (before + mass[key] >= top_p) {
        crossing = key;
        break;
      }
      before += mass[key];
    }
    if (crossing < 0) {  // the whole mass rounds below top_p: nothing is removed
      std::fill(keep, keep + vocab, true);
      return;
    }
    prefix |= static_cast<uint32_t>(crossing) << kShifts[level];
    const uint32_t high_mask = ~((1u << kShifts[level]) - 1);  // the bits fixed so far
    std::vector<int64_t> narrowed;
    auto narrow = [&](int64_t i) {
      if ((bits_of(probs[i]) & high_mask) == prefix) narrowed.push_back(i);
    };
    if (level == 0) {
      for (int64_t i = 0; i < vocab; ++i) narrow(i);
    } else {
      for (int64_t i : candidates) narrow(i);
    }
    candidates = std::move(narrowed);
  }
  const float smallest_kept = probs[candidates.front()];
  for (int64_t i = 0; i < vocab; ++i) keep[i] = probs[i] >= smallest_kept;
}

at::Tensor TopP(const at::Tensor& scores, double top_p) {
  const at::Tensor probs = scores.softmax(-1).to(at::kCPU).contiguous();
  const int64_t rows = probs.size(0), vocab = probs.size(1);
  at::Tensor keep = at::empty({rows, vocab}, at::TensorOptions().dtype(at::kBool));
  const float* p = probs.data_ptr<float>();
  bool* k = keep.data_ptr<bool>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) TopPKeepRow(p + r * vocab, vocab, top_p, k + r * vocab);
  });
  return scores.masked_fill(keep.to(scores.device()).logical_not(), kFiltered);
}

// Temperature, top-k, top-p and min-p as transformers' warpers (filtered entries become -inf).
at::Tensor Warp(at::Tensor scores, const SamplingConfig& c) {
  if (c.temperature != 1.0) scores = scores.div(c.temperature);
  const int64_t vocab = scores.size(-1);
  if (c.top_k > 0 && c.top_k < vocab) {
    const at::Tensor kth = std::get<0>(scores.topk(c.top_k, -1)).narrow(-1, c.top_k - 1, 1);
    scores = scores.masked_fill(scores.lt(kth), kFiltered);
  }
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
