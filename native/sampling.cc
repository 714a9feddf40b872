#include "sampling.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <limits>
#include <mutex>

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

// transformers' TopPLogitsWarper: sorted ascending, the low tail whose cumulative mass is
// <= 1 - top_p is removed (the top token always stays). Equivalently, in descending order a
// token stays iff the mass ranked before it is < top_p — so when the top candidates already
// hold top_p of the mass, only they need sorting.
at::Tensor TopP(const at::Tensor& scores, double top_p) {
  const int64_t vocab = scores.size(-1);
  const int64_t candidates = std::min<int64_t>(vocab, 1024);
  const at::Tensor probs = scores.softmax(-1);
  auto [top, order] = probs.topk(candidates, -1, true, true);
  const at::Tensor before = top.cumsum(-1).sub(top);  // mass ranked before each candidate
  if (candidates < vocab && top.sum(-1).lt(top_p).any().item<bool>()) {
    auto [sorted, ascending] = scores.sort(-1, false);
    at::Tensor remove = sorted.softmax(-1).cumsum(-1).le(1 - top_p);
    remove.narrow(-1, vocab - 1, 1).fill_(false);
    return scores.masked_fill(remove.scatter(-1, ascending, remove), kFiltered);
  }
  at::Tensor keep = at::zeros_like(scores, scores.options().dtype(at::kBool));
  keep.scatter_(-1, order, before.lt(top_p));
  return scores.masked_fill(keep.logical_not(), kFiltered);
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
