#pragma once
// Several datasets in one run: `--data A.jsonl:3,B.jsonl:1` mixes training files by ratio per
// epoch, `--eval-data task=T.jsonl,general=G.jsonl` evaluates several sets (each logged as
// eval_<name>_loss; a plain FILE keeps eval_loss), e.g. to watch forgetting on a general set.
//
// A mixture's epoch has as many examples as all sources together (N = Σ n_i); source i gives
// m_i = N·w_i/Σw of them (largest remainders, so Σ m_i = N). Each source is read as an endless
// stream of passes, every pass a fresh permutation keyed by (seed, source, pass); epoch e takes
// positions [e·m_i, (e+1)·m_i) of it. So a down-weighted source shows different examples each
// epoch and all of them over ⌈n_i/m_i⌉ epochs, an up-weighted one repeats, and the epoch's
// examples depend only on (seed, e): a checkpoint's batcher position resumes it exactly.
#include <cstdint>
#include <string>
#include <vector>

namespace vkt::train {

struct DataSource {
  std::string path;
  double weight = 1;
  bool weighted = false;  // written as FILE:weight
};
// "FILE" or "FILE:weight,FILE:weight,..." (a path that exists as written is one file, whatever
// commas or colons it holds); UserError on an empty item or a weight that is not positive.
std::vector<DataSource> parse_data_sources(const std::string& flag);
// More than one source, or a weight given: the run mixes (a single unweighted file does not).
bool is_mixture(const std::vector<DataSource>& sources);

struct EvalSet {
  std::string name;  // empty for a plain FILE
  std::string path;
  std::string metric() const { return name.empty() ? "eval_loss" : "eval_" + name + "_loss"; }
};
// "FILE" or "NAME=FILE,NAME=FILE,..."; UserError on duplicate names, a bad name or two plain files.
std::vector<EvalSet> parse_eval_sets(const std::string& flag);

class DataMixture {
 public:
  // sizes: examples per source, in the order they are concatenated into one pool.
  DataMixture(std::vector<int64_t> sizes, std::vector<double> weights, uint64_t seed);
  // Pool indices of epoch `epoch`'s examples, source by source (the batcher shuffles them).
  std::vector<uint32_t> epoch(int64_t epoch) const;
  const std::vector<int64_t>& per_epoch() const { return per_epoch_; }  // (sources) m_i

 private:
  std::vector<int64_t> sizes_, offsets_, per_epoch_;
  uint64_t seed_;
};

}  // namespace vkt::train
