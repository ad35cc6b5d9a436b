#include "engine/train/batcher.hpp"

#include <algorithm>
#include <numeric>

#include "engine/base/error.hpp"

namespace vkt::train {

uint32_t choose_seq_len(const std::vector<TokenizedExample>& examples, uint32_t max_length, bool packing) {
  if (packing) return max_length;
  size_t longest = 0;
  for (const auto& example : examples) longest = std::max(longest, example.ids.size());
  return static_cast<uint32_t>(std::min<size_t>(longest, max_length));
}

Batcher::Batcher(std::vector<TokenizedExample> examples, BatcherSettings settings)
    : examples_(std::move(examples)), settings_(settings) {
  if (examples_.empty()) throw UserError("the dataset has no examples", "check the --data file");
  VKT_ASSERT(settings_.seq_len >= 2 && settings_.batch >= 1, "batcher shape");
  VKT_ASSERT(settings_.virtual_tokens == 0 || !settings_.packing, "a soft prompt with packing");
  for (auto& example : examples_) {
    VKT_ASSERT(example.ids.size() == example.weights.size(), "example ids/weights size");
    VKT_ASSERT(example.ids.size() + settings_.virtual_tokens <= settings_.seq_len,
               "examples are truncated before batching");
  }
  build_epoch();
}

void Batcher::build_epoch() {
  std::vector<uint32_t> order(examples_.size());
  std::iota(order.begin(), order.end(), 0u);
  if (settings_.epoch_examples) order = settings_.epoch_examples(position_.epoch);
  if (settings_.shuffle) {
    // A fresh generator per epoch keyed by (seed, epoch): a resumed run rebuilds the same order.
    std::mt19937_64 generator(settings_.seed * 1000003ull + static_cast<uint64_t>(position_.epoch));
    std::shuffle(order.begin(), order.end(), generator);
  }
  rows_.clear();
  if (!settings_.packing) {
    for (uint32_t index : order) rows_.push_back({index});
    return;
  }
  // Greedy packing in the shuffled order: start a new row when the next example does not fit.
  std::vector<uint32_t> row;
  size_t used = 0;
  for (uint32_t index : order) {
    size_t length = examples_[index].ids.size();
    if (used + length > settings_.seq_len && !row.empty()) {
      rows_.push_back(std::move(row));
      row.clear();
      used = 0;
    }
    row.push_back(index);
    used += length;
  }
  if (!row.empty()) rows_.push_back(std::move(row));
}

int64_t Batcher::micro_batches_per_epoch() const {
  const int64_t global = (rows_per_epoch() + settings_.batch - 1) / settings_.batch;
  return (global + shard_count_ - 1) / shard_count_;
}

void Batcher::shard(uint32_t index, uint32_t count) {
  VKT_ASSERT(count >= 1 && index < count, "shard index");
  shard_index_ = index;
  shard_count_ = count;
}

double Batcher::epoch_progress() const {
  return static_cast<double>(position_.epoch) +
         static_cast<double>(position_.next_row) / static_cast<double>(std::max<int64_t>(1, rows_per_epoch()));
}

void Batcher::restore(const BatcherPosition& position) {
  position_.epoch = position.epoch;
  build_epoch();
  position_.next_row = position.next_row;
}

MicroBatch Batcher::next() {
  MicroBatch mine;
  for (uint32_t shard = 0; shard < shard_count_; shard++) {
    MicroBatch batch = next_global();  // the other ranks' micro-batches are built and dropped
    if (shard == shard_index_) mine = std::move(batch);
  }
  return mine;
}

MicroBatch Batcher::next_global() {
  const uint32_t batch = settings_.batch, seq = settings_.seq_len;
  MicroBatch out;
  out.batch = batch;
  out.seq_len = seq;
  const size_t cells = static_cast<size_t>(batch) * seq;
  out.ids.assign(cells, settings_.pad_id);
  out.targets.assign(cells, settings_.pad_id);
  out.weights.assign(cells, 0.0f);
  out.positions.assign(cells, 0);
  out.segments.assign(cells, 0xffffffffu);  // padding: a segment of its own
  for (uint32_t b = 0; b < batch; b++) {
    if (position_.next_row >= rows_per_epoch() && !settings_.wrap_epochs) {
      for (size_t t = 0; t < seq; t++) out.positions[static_cast<size_t>(b) * seq + t] = static_cast<uint32_t>(t);
      continue;
    }
    if (position_.next_row >= rows_per_epoch()) {
      // The epoch ends inside a micro-batch: the rest of it starts the next epoch, as a
      // dataloader over repeated epochs would.
      position_.epoch++;
      build_epoch();
      position_.next_row = 0;
    }
    const auto& row = rows_[static_cast<size_t>(position_.next_row++)];
    const uint32_t virtual_tokens = settings_.virtual_tokens;
    size_t offset = static_cast<size_t>(b) * seq, cursor = virtual_tokens;
    for (uint32_t t = 0; t < virtual_tokens; t++) {  // the soft prompt's cells (the model writes their rows)
      out.positions[offset + t] = t;
      out.segments[offset + t] = 0;
    }
    if (virtual_tokens > 0) {  // the last virtual token predicts the example's first
      const TokenizedExample& first = examples_[row[0]];
      out.targets[offset + virtual_tokens - 1] = first.ids[0];
      out.weights[offset + virtual_tokens - 1] = first.weights[0];
      out.weight_sum += first.weights[0];
    }
    for (uint32_t segment = 0; segment < row.size(); segment++) {
      const TokenizedExample& example = examples_[row[segment]];
      size_t length = example.ids.size();
      for (size_t t = 0; t < length; t++) {
        size_t cell = offset + cursor + t;
        out.ids[cell] = example.ids[t];
        out.positions[cell] = static_cast<uint32_t>(t + (segment == 0 ? virtual_tokens : 0));
        out.segments[cell] = segment;
        if (t + 1 < length) {  // the last token of an example predicts nothing
          out.targets[cell] = example.ids[t + 1];
          out.weights[cell] = example.weights[t + 1];
          out.weight_sum += example.weights[t + 1];
        }
      }
      cursor += length;
      out.tokens += static_cast<int64_t>(length);
    }
    // Padding positions continue the last example's positions (they are masked anyway).
    for (size_t t = cursor; t < seq; t++) out.positions[offset + t] = static_cast<uint32_t>(t);
  }
  return out;
}

}  // namespace vkt::train
