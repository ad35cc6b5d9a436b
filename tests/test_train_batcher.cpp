// The batcher: shifted targets and weights, padding, packing with segments and restarting
// positions, deterministic shuffling, resume from a saved position.
#include <doctest/doctest.h>

#include "engine/train/batcher.hpp"

using namespace vkt::train;

namespace {
TokenizedExample example(std::vector<uint32_t> ids, float prompt_weight, size_t prompt_length) {
  TokenizedExample e;
  e.ids = std::move(ids);
  for (size_t i = 0; i < e.ids.size(); i++) e.weights.push_back(i < prompt_length ? prompt_weight : 1.0f);
  return e;
}
}  // namespace

TEST_SUITE("train") {

TEST_CASE("batcher: right padding, shifted targets and weights") {
  std::vector<TokenizedExample> examples = {example({1, 10, 11, 12, 2}, 0.1f, 3), example({1, 20, 2}, 0.1f, 2)};
  BatcherSettings settings;
  settings.batch = 2;
  settings.seq_len = choose_seq_len(examples, 100, false);
  settings.shuffle = false;
  settings.pad_id = 0;
  CHECK(settings.seq_len == 5);
  Batcher batcher(examples, settings);
  MicroBatch mb = batcher.next();
  // Row 0: position t predicts ids[t+1] with that token's weight; the last token predicts nothing.
  CHECK(mb.targets[0] == 10);
  CHECK(mb.weights[0] == doctest::Approx(0.1f));  // predicting 10, a prompt token
  CHECK(mb.weights[1] == doctest::Approx(0.1f));  // predicting 11, still prompt
  CHECK(mb.weights[2] == doctest::Approx(1.0f));  // predicting 12, completion
  CHECK(mb.weights[3] == doctest::Approx(1.0f));  // predicting EOS
  CHECK(mb.weights[4] == 0.0f);
  // Row 1: 3 tokens then 2 padding cells with zero weight and their own segment.
  CHECK(mb.ids[5 + 3] == 0);
  CHECK(mb.weights[5 + 2] == 0.0f);
  CHECK(mb.weights[5 + 3] == 0.0f);
  CHECK(mb.segments[5 + 3] == 0xffffffffu);
  CHECK(mb.weight_sum == doctest::Approx(0.1 + 0.1 + 1 + 1 + 0.1 + 1));
  CHECK(mb.tokens == 8);
}

TEST_CASE("batcher: packing keeps examples apart") {
  std::vector<TokenizedExample> examples = {example({1, 5, 6, 2}, 1, 0), example({1, 7, 2}, 1, 0),
                                            example({1, 8, 9, 2}, 1, 0)};
  BatcherSettings settings;
  settings.batch = 1;
  settings.seq_len = 8;
  settings.packing = true;
  settings.shuffle = false;
  Batcher batcher(examples, settings);
  CHECK(batcher.rows_per_epoch() == 2);  // [4 + 3] then [4]
  MicroBatch mb = batcher.next();
  std::vector<uint32_t> segments(mb.segments.begin(), mb.segments.begin() + 7);
  CHECK(segments == std::vector<uint32_t>{0, 0, 0, 0, 1, 1, 1});
  std::vector<uint32_t> positions(mb.positions.begin(), mb.positions.begin() + 7);
  CHECK(positions == std::vector<uint32_t>{0, 1, 2, 3, 0, 1, 2});
  // The last token of the first example must not be trained to predict the next example's BOS.
  CHECK(mb.weights[3] == 0.0f);
  CHECK(mb.targets[4] == 7);
}

TEST_CASE("batcher: shuffling is deterministic and resumable across epochs") {
  std::vector<TokenizedExample> examples;
  for (uint32_t i = 0; i < 10; i++) examples.push_back(example({1, 100 + i, 2}, 1, 0));
  BatcherSettings settings;
  settings.batch = 3;
  settings.seq_len = 3;
  settings.seed = 7;
  Batcher a(examples, settings), b(examples, settings);
  std::vector<uint32_t> first_a, first_b;
  for (int i = 0; i < 9; i++) {  // 27 rows: crosses two epoch boundaries
    first_a.push_back(a.next().ids[1]);
    first_b.push_back(b.next().ids[1]);
  }
  CHECK(first_a == first_b);
  CHECK(a.position().epoch == 2);
  // Resume a fresh batcher from a's position: it continues identically.
  Batcher resumed(examples, settings);
  resumed.restore(a.position());
  for (int i = 0; i < 5; i++) CHECK(resumed.next().ids == a.next().ids);
  // Different epochs see different orders.
  Batcher c(examples, settings);
  std::vector<uint32_t> epoch0, epoch1;
  for (int i = 0; i < 10; i++) {
    MicroBatch mb = c.next();
    for (uint32_t r = 0; r < 3 && epoch0.size() + epoch1.size() < 20; r++)
      (epoch0.size() < 10 ? epoch0 : epoch1).push_back(mb.ids[r * 3 + 1]);
  }
  CHECK(epoch0 != epoch1);
}

}  // TEST_SUITE
