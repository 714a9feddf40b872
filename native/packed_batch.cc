#include "packed_batch.h"

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "errors.h"

namespace spin {

namespace {

constexpr int64_t kIgnore = -100;

// One row's tokens (ids and labels, padding removed), on the CPU.
struct RowTokens {
  std::vector<int64_t> ids, labels;
};

std::vector<RowTokens> ReadRows(const at::Tensor& ids, const at::Tensor& attention_mask, const at::Tensor& labels) {
  const at::Tensor id_data = ids.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor mask_data = attention_mask.to(at::kCPU).ne(0).contiguous();
  const at::Tensor label_data = labels.to(at::kCPU, at::kLong).contiguous();
  const auto id = id_data.accessor<int64_t, 2>();
  const auto mask = mask_data.accessor<bool, 2>();
  const auto label = label_data.accessor<int64_t, 2>();
  std::vector<RowTokens> rows(ids.size(0));
  for (int64_t r = 0; r < ids.size(0); ++r) {
    for (int64_t t = 0; t < ids.size(1); ++t) {
      if (mask[r][t]) {
        rows[r].ids.push_back(id[r][t]);
        rows[r].labels.push_back(label[r][t]);
      } else if (label[r][t] != kIgnore) {
        throw SpinError(ErrorCode::kInvalidArgument, "labels[" + std::to_string(r) + ", " + std::to_string(t) + "] = " +
                                                         std::to_string(label[r][t]) + " is on a padding slot (attentionMask 0); use -100 there");
      }
    }
  }
  return rows;
}

class Packer {
 public:
  // Appends a group: the first `shared` tokens of `members`' rows once (branch 0), then the
  // rest of each member (branch 1, 2, …).
  void AddGroup(const std::vector<int64_t>& members, const std::vector<RowTokens>& rows, int64_t shared) {
    const int64_t start = static_cast<int64_t>(ids_.size());
    const RowTokens& first = rows[members[0]];
    for (int64_t j = 0; j < shared; ++j) Push(first.ids[j], j, 0);
    for (size_t m = 0; m < members.size(); ++m) {
      const RowTokens& tokens = rows[members[m]];
      const int64_t rest = static_cast<int64_t>(ids_.size());  // where this member's own tokens begin
      const int64_t branch = members.size() == 1 ? 0 : static_cast<int64_t>(m) + 1;
      for (size_t j = shared; j < tokens.ids.size(); ++j) Push(tokens.ids[j], static_cast<int64_t>(j), branch);
      // Token j ≥ 1 is predicted by token j − 1: in the shared prefix or in the member's rest.
      for (size_t j = 1; j < tokens.labels.size(); ++j) {
        if (tokens.labels[j] == kIgnore) continue;
        const int64_t before = static_cast<int64_t>(j) - 1;
        source_.push_back(before < shared ? start + before : rest + before - shared);
        target_.push_back(tokens.labels[j]);
        row_.push_back(members[m]);
      }
    }
    const int64_t length = static_cast<int64_t>(ids_.size()) - start;
    if (length > 0) groups_.push_back({start, length});
  }

  PackedBatch Finish(int64_t rows, c10::Device device) {
    const auto long_options = at::TensorOptions().dtype(at::kLong);
    auto tensor = [&](std::vector<int64_t>& values) {
      return at::tensor(at::ArrayRef<int64_t>(values), long_options).to(device);
    };
    auto sequences = std::make_shared<PackedSequences>();
    const int64_t slots = static_cast<int64_t>(ids_.size());
    sequences->ids = tensor(ids_).view({1, slots});
    sequences->positions = tensor(positions_).view({1, slots});
    sequences->branch = tensor(branch_);
    sequences->groups = std::move(groups_);
    return {std::move(sequences), tensor(source_), tensor(target_), tensor(row_), rows};
  }

 private:
  void Push(int64_t id, int64_t position, int64_t branch) {
    ids_.push_back(id);
    positions_.push_back(position);
    branch_.push_back(branch);
  }

  std::vector<int64_t> ids_, positions_, branch_, source_, target_, row_;
  std::vector<std::pair<int64_t, int64_t>> groups_;
};

int64_t CommonPrefix(const RowTokens& a, const RowTokens& b) {
  size_t n = 0;
  while (n < a.ids.size() && n < b.ids.size() && a.ids[n] == b.ids[n]) ++n;
  return static_cast<int64_t>(n);
}

}  // namespace

PackedBatch PackBatch(const at::Tensor& ids, const at::Tensor& attention_mask, const at::Tensor& labels, bool share_pairs, c10::Device device) {
  if (ids.dim() != 2 || attention_mask.sizes() != ids.sizes() || labels.sizes() != ids.sizes()) {
    throw SpinError(ErrorCode::kShapeMismatch, "ids, attentionMask and labels must have one [rows, tokens] shape");
  }
  const std::vector<RowTokens> rows = ReadRows(ids, attention_mask, labels);
  const int64_t count = static_cast<int64_t>(rows.size());
  Packer packer;
  if (share_pairs && count % 2 == 0) {
    const int64_t half = count / 2;
    for (int64_t i = 0; i < half; ++i) packer.AddGroup({i, i + half}, rows, CommonPrefix(rows[i], rows[i + half]));
  } else {
    for (int64_t i = 0; i < count; ++i) packer.AddGroup({i}, rows, 0);
  }
  return packer.Finish(count, device);
}

}  // namespace spin
