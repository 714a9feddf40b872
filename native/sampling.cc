#include "sampling.h"

#include <ATen/ATen.h>

#include <limits>

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

// Temperature, top-k, top-p and min-p as transformers' warpers (filtered entries become -inf).
at::Tensor Warp(at::Tensor scores, const SamplingConfig& c) {
  if (c.temperature != 1.0) scores = scores.div(c.temperature);
  const int64_t vocab = scores.size(-1);
  if (c.top_k > 0 && c.top_k < vocab) {
    const at::Tensor kth = std::get<0>(scores.topk(c.top_k, -1)).narrow(-1, c.top_k - 1, 1);
    scores = scores.masked_fill(scores.lt(kth), kFiltered);
  }
  if (c.top_p < 1.0) {
    // Sorted ascending, drop the low tail whose mass is <= 1 - top_p; the top token stays.
    auto [sorted, order] = scores.sort(-1, false);
    const at::Tensor cumulative = sorted.softmax(-1).cumsum(-1);
    at::Tensor remove = cumulative.le(1 - c.top_p);
    remove.narrow(-1, vocab - 1, 1).fill_(false);
    scores = scores.masked_fill(remove.scatter(-1, order, remove), kFiltered);
  }
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
  const at::Tensor probs = Warp(scores, config).softmax(-1);
  // The exponential race (argmax p / E, E ~ Exp(1)) draws exactly from p; each row's
  // noise comes from its own CPU generator.
  const int64_t rows = probs.size(0);
  const int64_t vocab = probs.size(1);
  at::Tensor noise = at::empty({rows, vocab}, at::TensorOptions().dtype(at::kFloat));
  for (int64_t r = 0; r < rows; ++r) noise[r].exponential_(1.0, generators[r]);
  return probs.div(noise.to(probs.device())).argmax(-1);
}

}  // namespace spin
