#include "engine/train/generation_eval.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/base/error.hpp"
#include "engine/model/generate.hpp"
#include "engine/model/gguf_tokenizer.hpp"
#include "engine/text/tokenizer.hpp"
#include "engine/train/dataset.hpp"

namespace vkt::train {

using nlohmann::json;

namespace {
std::string trim(const std::string& text) {
  size_t begin = text.find_first_not_of(" \t\n\r"), end = text.find_last_not_of(" \t\n\r");
  return begin == std::string::npos ? std::string() : text.substr(begin, end - begin + 1);
}
}  // namespace

void score_output(const std::string& output, const std::string& reference, const std::vector<std::string>& keys,
                  bool& form_ok, bool& content_ok, size_t* fields_right, std::vector<bool>* key_right) {
  form_ok = content_ok = false;
  if (fields_right) *fields_right = 0;
  if (key_right) key_right->assign(keys.size(), false);
  if (keys.empty()) {
    form_ok = true;
    // A one-line reference is the output's first line (models continue after it: the copy probe's
    // next verse); a longer one the whole output.
    const std::string expected = trim(reference);
    const bool one_line = expected.find('\n') == std::string::npos;
    const std::string produced = trim(output);
    content_ok = (one_line ? trim(produced.substr(0, produced.find('\n'))) : produced) == expected;
    return;
  }
  json produced, expected;
  try {
    // The answer is the first line (models may continue after it).
    std::string first_line = trim(output.substr(0, output.find('\n')));
    produced = json::parse(first_line);
    expected = json::parse(trim(reference));
  } catch (const json::exception&) {
    return;
  }
  if (!produced.is_object()) return;
  for (size_t i = 0; i < keys.size(); i++) {
    const bool right =
        produced.contains(keys[i]) && expected.contains(keys[i]) && produced[keys[i]] == expected[keys[i]];
    if (fields_right) *fields_right += right;
    if (key_right) (*key_right)[i] = right;
  }
  for (const std::string& key : keys)
    if (!produced.contains(key)) return;
  form_ok = true;
  content_ok = true;
  for (const std::string& key : keys)
    if (!expected.contains(key) || produced[key] != expected[key]) content_ok = false;
}

GenerationEvalResult evaluate_generation(vk::Context& context, const GenerationEvalOptions& options,
                                         ProgressBar* progress) {
  auto examples = read_jsonl(options.data.string(), text::ChatFormat{});
  if (options.limit > 0 && examples.size() > options.limit) examples.resize(options.limit);
  text::Tokenizer tokenizer = model::load_model_tokenizer(options.model);
  model::ModelConfig config = model::load_model_config(options.model);
  model::GeneratorOptions generator_options;
  generator_options.model = options.model;
  generator_options.adapter = options.adapter;
  generator_options.base_format = options.base_format;
  generator_options.dtype = options.dtype;
  generator_options.max_tokens = 512;
  generator_options.prefill_rows = 128;
  model::Generator generator(context, generator_options);
  model::SamplingOptions sampling;
  sampling.max_new_tokens = options.max_new_tokens;
  for (int64_t id : config.eos_token_ids) sampling.stop_ids.push_back(static_cast<uint32_t>(id));
  if (auto eos = tokenizer.eos_id()) sampling.stop_ids.push_back(*eos);
  GenerationEvalResult result;
  size_t form = 0, content = 0, fields = 0, done = 0;
  for (const ParsedExample& example : examples) {
    if (example.format != ExampleFormat::prompt_completion)
      throw UserError(
          options.data.string() + ":" + std::to_string(example.line) + ": evaluation needs prompt/completion lines",
          "write {\"prompt\": ..., \"completion\": ...}");
    GeneratedExample out;
    out.prompt = example.segments[0].text;
    out.reference = example.segments[1].text;
    std::vector<uint32_t> prompt = tokenizer.encode(out.prompt, true);
    std::vector<uint32_t> ids = generator.generate(prompt, sampling);
    out.output = tokenizer.decode(ids, true);
    score_output(out.output, out.reference, options.json_keys, out.form_ok, out.content_ok, &out.fields_right,
                 &out.key_right);
    fields += out.fields_right;
    form += out.form_ok;
    content += out.content_ok;
    result.examples.push_back(std::move(out));
    if (progress) progress->update(static_cast<int64_t>(++done));
  }
  double count = static_cast<double>(std::max<size_t>(1, result.examples.size()));
  result.form_rate = options.json_keys.empty() ? -1 : double(form) / count;
  result.content_rate = double(content) / count;
  result.field_rate = options.json_keys.empty() ? -1 : double(fields) / (count * double(options.json_keys.size()));
  result.key_rates.assign(options.json_keys.size(), 0.0);
  std::set<std::string> outputs;
  for (const GeneratedExample& example : result.examples) {
    outputs.insert(trim(example.output.substr(0, example.output.find('\n'))));
    for (size_t i = 0; i < example.key_right.size(); i++) result.key_rates[i] += example.key_right[i] / count;
  }
  result.distinct_outputs = outputs.size();
  return result;
}

}  // namespace vkt::train
