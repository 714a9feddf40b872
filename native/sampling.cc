#include "sampling.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>
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

// transformers' RepetitionPenaltyLogitsProcessor: seen tokens' scores are divided by the
// penalty when positive and multiplied when negative.
at::Tensor ApplyRepetitionPenalty(const at::Tensor& scores, const at::Tensor& seen, double penalty) {
  if (penalty == 1.0 || !seen.defined()) return scores;
  const at::Tensor penalized = at::where(scores.lt(0), scores.mul(penalty), scores.div(penalty));
  return at::where(seen, penalized, scores);
}

// An order-preserving key of a non-negative float (a probability): a larger float has a
// larger key.
uint32_t Key(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

float FromKey(uint32_t key) {
  float value;
  std::memcpy(&value, &key, sizeof value);
  return value;
}

// `value` where `keep`, else 0, without a branch (float bits masked).
float KeptOrZero(float value, bool keep) { return FromKey(Key(value) & (0u - static_cast<uint32_t>(keep))); }
float KeptOrZero(float probability, float floor) { return KeptOrZero(probability, Key(probability) >= Key(floor)); }

// Buffers for one row's draw, reused across the rows of one thread.
struct RadixScratch {
  std::vector<int32_t> candidates, narrowed;
  std::array<std::array<double, 2048>, 4> lanes;  // bucket weights
  std::vector<double> blocks;                      // kept mass per block of the vocabulary
};

// The smallest probability v of the row `probs` [n] (restricted to entries ≥ `floor`) whose
// higher entries weigh less than `target` in all (`weighted` false: each weighs 1), so that
// exactly the entries ≥ v have less than `target` ranked above them; `floor` when the whole
// weight stays below `target`. Radix selection instead of a sort: three passes bucket the
// remaining candidates by 11, 11 and 9 bits of the float (its sign is always 0), walk the
// buckets from the top adding their weight, and narrow to the bucket where it reaches
// `target`. The cost is linear in n whatever the distribution's shape; the loops are
// branch-free, as the tests against the floor and the prefix would often mispredict.
float RadixThreshold(const float* probs, int64_t n, float floor, bool weighted, double target, RadixScratch& scratch) {
  constexpr int kShifts[] = {20, 9, 0};
  constexpr uint32_t kMasks[] = {0x7FF, 0x7FF, 0x1FF};
  scratch.candidates.resize(n);
  scratch.narrowed.resize(n);
  int64_t count = 0;  // candidates after the first level
  double above = 0;   // weight of the entries above the candidates
  uint32_t prefix = 0, decided = 0;
  for (int level = 0; level < 3; ++level) {
    const uint32_t shift = kShifts[level], mask = kMasks[level];
    const int32_t* candidates = scratch.candidates.data();
    std::array<double, 2048>& weight = scratch.lanes[0];
    if (level == 0) {
      // A flat distribution puts almost every entry in one or two buckets: four lanes of
      // buckets break the chain of additions to one memory cell.
      for (auto& lane : scratch.lanes) lane.fill(0);
      for (int64_t i = 0; i < n; ++i)
        scratch.lanes[i & 3][(Key(probs[i]) >> shift) & mask] += KeptOrZero(weighted ? probs[i] : 1.0f, probs[i] >= floor);
      for (int64_t b = 0; b <= mask; ++b) weight[b] += (scratch.lanes[1][b] + scratch.lanes[2][b]) + scratch.lanes[3][b];
    } else {
      weight.fill(0);
      for (int64_t j = 0; j < count; ++j) weight[(Key(probs[candidates[j]]) >> shift) & mask] += weighted ? probs[candidates[j]] : 1.0;
    }
    int64_t crossing = -1;
    for (int64_t bucket = mask; bucket >= 0; --bucket) {
      if (above + weight[bucket] >= target) {
        crossing = bucket;
        break;
      }
      above += weight[bucket];
    }
    if (crossing < 0) {
      // Below the first level only rounding gets here (the candidates' bucket reached the
      // target a level up): keep every candidate, from the lowest bucket holding one.
      if (level == 0) return floor;
      crossing = mask;
      for (int64_t j = 0; j < count; ++j) crossing = std::min<int64_t>(crossing, (Key(probs[candidates[j]]) >> shift) & mask);
    }
    prefix |= static_cast<uint32_t>(crossing) << shift;
    decided |= mask << shift;
    int32_t* narrowed = scratch.narrowed.data();
    int64_t kept = 0;
    if (level == 0) {
      for (int64_t i = 0; i < n; ++i) {
        narrowed[kept] = static_cast<int32_t>(i);
        kept += (probs[i] >= floor) & ((Key(probs[i]) & decided) == prefix);
      }
    } else {
      for (int64_t j = 0; j < count; ++j) {
        narrowed[kept] = candidates[j];
        kept += (Key(probs[candidates[j]]) & decided) == prefix;
      }
    }
    std::swap(scratch.candidates, scratch.narrowed);
    count = kept;
  }
  return std::max(FromKey(prefix), floor);
}

// The mass of the entries ≥ `floor`, in float64. Four running sums (one would be a chain of
// dependent additions, four times slower), and no branch, which a floor inside the
// distribution would mispredict at every other token.
double MassAtOrAbove(const float* probs, int64_t n, float floor) {
  double sums[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int lane = 0; lane < 4; ++lane) sums[lane] += KeptOrZero(probs[i + lane], floor);
  for (; i < n; ++i) sums[0] += KeptOrZero(probs[i], floor);
  return (sums[0] + sums[1]) + (sums[2] + sums[3]);
}

// One row's token (−1 when its probabilities are not finite): transformers' top-k, top-p and min-p, in that order, as a rising floor on
// the row's probabilities (each warper keeps the most probable tokens of what the previous one
// kept, and renormalizing does not change their order), then the inverse CDF of the kept
// tokens at `uniform` ∈ [0, 1) in vocabulary order: whole blocks are skipped by their mass,
// and the block where the cumulative mass passes the target is walked token by token.
int64_t DrawFromRow(const float* probs, int64_t n, const SamplingConfig& c, double uniform, RadixScratch& scratch) {
  float floor = 0;
  // TopKLogitsWarper: a token stays iff fewer than k tokens are more probable (ties stay).
  if (c.top_k > 0 && c.top_k < n) floor = RadixThreshold(probs, n, floor, false, static_cast<double>(c.top_k), scratch);
  // TopPLogitsWarper, over the distribution renormalized to the kept tokens: a token stays iff
  // the mass ranked above it is < top_p (the top token always stays).
  if (c.top_p < 1.0) floor = RadixThreshold(probs, n, floor, true, c.top_p * MassAtOrAbove(probs, n, floor), scratch);
  // MinPLogitsWarper: a token stays iff its probability is ≥ min_p × the top one's.
  if (c.min_p > 0.0) floor = std::max(floor, static_cast<float>(c.min_p * *std::max_element(probs, probs + n)));
  constexpr int64_t kBlock = 256;
  std::vector<double>& blocks = scratch.blocks;
  blocks.clear();
  double total = 0;
  for (int64_t start = 0; start < n; start += kBlock) {
    blocks.push_back(MassAtOrAbove(probs + start, std::min(kBlock, n - start), floor));
    total += blocks.back();
  }
  if (!(total > 0) || !std::isfinite(total)) return -1;  // NaN or infinite logits
  // The cumulative mass reaches `total` after the last block, by the same additions, so some
  // block with mass > 0 takes it past the target.
  const double target = uniform * total;
  double cumulative = 0;
  for (size_t b = 0; b < blocks.size(); ++b) {
    if (cumulative + blocks[b] <= target) {
      cumulative += blocks[b];
      continue;
    }
    const int64_t start = static_cast<int64_t>(b) * kBlock, end = std::min(start + kBlock, n);
    int64_t last = start;
    for (int64_t i = start; i < end; ++i) {
      if (probs[i] < floor || probs[i] == 0) continue;  // a filtered or zero-probability token never wins
      cumulative += probs[i];
      last = i;
      if (cumulative > target) return i;
    }
    return last;  // the token-by-token sum rounded below the block's four-lane sum
  }
  return -1;  // unreachable: the last block with mass takes the cumulative mass past the target
}

// One uniform in [0, 1) from the row's own CPU generator (53 bits).
double Uniform(at::Generator& generator) {
  auto* cpu = at::check_generator<at::CPUGeneratorImpl>(generator);
  std::lock_guard<std::mutex> lock(generator.mutex());
  return static_cast<double>(cpu->random64() >> 11) * 0x1.0p-53;
}

}  // namespace

at::Tensor ChooseNextTokens(const at::Tensor& logits, const SamplingConfig& config, const at::Tensor& seen,
                            std::vector<at::Generator>& generators) {
  at::Tensor scores = ApplyRepetitionPenalty(logits.to(at::kFloat), seen, config.repetition_penalty);
  if (config.greedy) return scores.argmax(-1);
  if (config.temperature != 1.0) scores = scores.div(config.temperature);
  // One vectorized softmax for the batch; the filters and the draw are then one fused pass
  // per row over its probabilities, with no [B, V] masks, second softmax or cumulative sum.
  const at::Tensor probs = scores.softmax(-1).to(at::kCPU).contiguous();
  const int64_t rows = probs.size(0);
  const int64_t vocab = probs.size(1);
  std::vector<double> uniforms(rows);
  for (int64_t r = 0; r < rows; ++r) uniforms[r] = Uniform(generators[r]);
  at::Tensor chosen = at::empty({rows}, at::TensorOptions().dtype(at::kLong));
  int64_t* out = chosen.data_ptr<int64_t>();
  const float* values = probs.data_ptr<float>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    RadixScratch scratch;
    for (int64_t r = begin; r < end; ++r) out[r] = DrawFromRow(values + r * vocab, vocab, config, uniforms[r], scratch);
  });
  for (int64_t r = 0; r < rows; ++r) {
    if (out[r] < 0) throw SpinError(ErrorCode::kInvalidArgument, "row " + std::to_string(r) + " of the next-token logits is not finite (NaN or infinity): nothing to sample from");
  }
  return chosen.to(logits.device());
}

}  // namespace spin
