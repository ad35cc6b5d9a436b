#include "engine/train/data_mixture.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <random>
#include <sstream>

#include "engine/base/error.hpp"

namespace vkt::train {

namespace {

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) items.push_back(item);
  if (!text.empty() && text.back() == ',') items.push_back("");
  return items;
}

}  // namespace

std::vector<DataSource> parse_data_sources(const std::string& flag) {
  if (flag.empty() || std::filesystem::exists(flag)) return {{flag, 1, false}};
  std::vector<DataSource> sources;
  for (const std::string& item : split_commas(flag)) {
    if (item.empty())
      throw UserError("--data '" + flag + "' has an empty item", "write FILE or FILE:weight,FILE:weight");
    DataSource source{item, 1, false};
    const size_t colon = item.rfind(':');
    if (colon != std::string::npos && !std::filesystem::exists(item)) {
      const std::string weight = item.substr(colon + 1);
      char* end = nullptr;
      const double value = std::strtod(weight.c_str(), &end);
      if (weight.empty() || end != weight.c_str() + weight.size() || !std::isfinite(value) || value <= 0)
        throw UserError("--data: the weight of '" + item + "' is not a positive number",
                        "write FILE:weight, e.g. task.jsonl:3,general.jsonl:1");
      source = {item.substr(0, colon), value, true};
    }
    sources.push_back(source);
  }
  return sources;
}

bool is_mixture(const std::vector<DataSource>& sources) {
  return sources.size() > 1 || (sources.size() == 1 && sources[0].weighted);
}

std::vector<EvalSet> parse_eval_sets(const std::string& flag) {
  if (flag.empty()) return {};
  if (std::filesystem::exists(flag)) return {{"", flag}};
  std::vector<EvalSet> sets;
  for (const std::string& item : split_commas(flag)) {
    EvalSet set;
    const size_t equals = item.find('=');
    if (equals != std::string::npos && !std::filesystem::exists(item)) {
      set.name = item.substr(0, equals);
      set.path = item.substr(equals + 1);
      const bool good_name = !set.name.empty() && std::all_of(set.name.begin(), set.name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
      });
      if (!good_name)
        throw UserError("--eval-data: '" + set.name + "' is not a usable set name",
                        "letters, digits, _ and -: it becomes the metric eval_NAME_loss");
    } else {
      set.path = item;
    }
    if (set.path.empty()) throw UserError("--eval-data '" + flag + "' has an empty item", "write NAME=FILE,NAME=FILE");
    for (const EvalSet& other : sets)
      if (other.metric() == set.metric())
        throw UserError(
            "--eval-data names " + set.metric() + " twice",
            set.name.empty() ? "give the sets names: task=FILE,general=FILE" : "give each set its own name");
    sets.push_back(set);
  }
  return sets;
}

DataMixture::DataMixture(std::vector<int64_t> sizes, std::vector<double> weights, uint64_t seed)
    : sizes_(std::move(sizes)), seed_(seed) {
  VKT_ASSERT(sizes_.size() == weights.size() && !sizes_.empty(), "one weight per source");
  const int64_t total = std::accumulate(sizes_.begin(), sizes_.end(), int64_t{0});
  const double weight_sum = std::accumulate(weights.begin(), weights.end(), 0.0);
  // Largest remainders: the floors first, then one more for the largest fractional parts.
  std::vector<double> exact(sizes_.size());
  int64_t assigned = 0;
  for (size_t i = 0; i < sizes_.size(); i++) {
    exact[i] = double(total) * weights[i] / weight_sum;
    per_epoch_.push_back(static_cast<int64_t>(std::floor(exact[i])));
    assigned += per_epoch_.back();
  }
  std::vector<size_t> order(sizes_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return exact[a] - std::floor(exact[a]) > exact[b] - std::floor(exact[b]);
  });
  for (size_t k = 0; assigned < total; k++, assigned++) per_epoch_[order[k % order.size()]]++;
  int64_t offset = 0;
  for (int64_t size : sizes_) {
    offsets_.push_back(offset);
    offset += size;
  }
}

std::vector<uint32_t> DataMixture::epoch(int64_t epoch) const {
  std::vector<uint32_t> indices;
  for (size_t i = 0; i < sizes_.size(); i++) {
    const int64_t n = sizes_[i], m = per_epoch_[i];
    if (n == 0 || m == 0) continue;
    std::vector<uint32_t> pass;
    int64_t pass_number = -1;
    for (int64_t k = epoch * m; k < (epoch + 1) * m; k++) {
      if (k / n != pass_number) {  // a new permutation of the source, keyed by (seed, source, pass)
        pass_number = k / n;
        pass.resize(static_cast<size_t>(n));
        std::iota(pass.begin(), pass.end(), 0u);
        std::mt19937_64 generator(seed_ * 1000003ull + (uint64_t(i) + 1) * 0x9e3779b97f4a7c15ull +
                                  static_cast<uint64_t>(pass_number));
        std::shuffle(pass.begin(), pass.end(), generator);
      }
      indices.push_back(static_cast<uint32_t>(offsets_[i]) + pass[static_cast<size_t>(k % n)]);
    }
  }
  return indices;
}

}  // namespace vkt::train
