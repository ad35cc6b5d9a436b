#pragma once
// Turns tokenized examples into fixed-shape micro-batches (batch, seq_len): the training step is
// recorded once for that shape and replayed. Right padding, or packing several examples into a
// row with per-token segment ids (attention stays inside an example) and restarting positions.
// Targets are shifted here: row position t predicts the token at t+1 with that token's weight.
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace vkt::train {

struct TokenizedExample {
  std::vector<uint32_t> ids;   // (length) token ids, BOS/EOS included
  std::vector<float> weights;  // (length) loss weight of predicting ids[i] (weights[0] is unused)
};

struct MicroBatch {
  uint32_t batch = 0, seq_len = 0;
  std::vector<uint32_t> ids;        // (batch*seq_len) input tokens (padding: pad id)
  std::vector<uint32_t> targets;    // (batch*seq_len) token to predict at each position
  std::vector<float> weights;       // (batch*seq_len) its loss weight (0 for padding and boundaries)
  std::vector<uint32_t> positions;  // (batch*seq_len) RoPE positions, restarting per example
  std::vector<uint32_t> segments;   // (batch*seq_len) example index within its row (attention mask)
  double weight_sum = 0;            // Σ weights
  int64_t tokens = 0;               // non-padding tokens
};

struct BatcherSettings {
  uint32_t batch = 1;
  uint32_t seq_len = 0;  // row length
  bool packing = false;
  bool shuffle = true;
  uint64_t seed = 42;
  uint32_t pad_id = 0;
  // Soft prompt (model/soft_prompt.hpp): the first virtual_tokens cells of every row (within seq_len)
  // are the prompt's, positions 0 .. N-1; the example follows at position N, its first token predicted
  // by the last virtual cell, as PEFT's labels do. No packing.
  uint32_t virtual_tokens = 0;
  // When an epoch ends inside a micro-batch: true starts the next epoch (training), false leaves
  // the remaining rows as padding with zero weight (evaluation: every example exactly once).
  bool wrap_epochs = true;
  // A data mixture (data_mixture.hpp): the examples of each epoch, by index (repeats allowed);
  // unset: every example once.
  std::function<std::vector<uint32_t>(int64_t epoch)> epoch_examples;
};

// Where the batcher is; saved in checkpoints so a resumed run sees the same data.
struct BatcherPosition {
  int64_t epoch = 0;     // completed epochs
  int64_t next_row = 0;  // next row of the current epoch's order
};

class Batcher {
 public:
  Batcher(std::vector<TokenizedExample> examples, BatcherSettings settings);
  MicroBatch next();
  // Data parallelism (distributed.hpp), as accelerate's BatchSamplerShard shards HF's dataloader:
  // of each `count` consecutive micro-batches of the global order (the same for every count),
  // this rank takes the `index`-th, so N ranks x batch b see the rows 1 rank x N*b sees.
  void shard(uint32_t index, uint32_t count);
  int64_t rows_per_epoch() const { return static_cast<int64_t>(rows_.size()); }
  int64_t micro_batches_per_epoch() const;  // this shard's
  double epoch_progress() const;            // fractional epochs consumed
  BatcherPosition position() const { return position_; }
  void restore(const BatcherPosition& position);
  const BatcherSettings& settings() const { return settings_; }

 private:
  void build_epoch();  // the order (and packing) of the current epoch, from seed and epoch number
  MicroBatch next_global();
  uint32_t shard_index_ = 0, shard_count_ = 1;
  std::vector<TokenizedExample> examples_;
  BatcherSettings settings_;
  // A row: the examples (by index) it holds, in order.
  std::vector<std::vector<uint32_t>> rows_;
  BatcherPosition position_;
};

// The row length to record the step with: the longest example (capped at max_length), or
// max_length when packing.
uint32_t choose_seq_len(const std::vector<TokenizedExample>& examples, uint32_t max_length, bool packing);

}  // namespace vkt::train
