#include "engine/train/preference.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "engine/base/error.hpp"
#include "engine/model/session.hpp"
#include "engine/train/config.hpp"
#include "engine/train/data_mixture.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/step_runner.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::train {

using nlohmann::json;

namespace {
constexpr NameEntry<Objective> objective_table[] = {
    {Objective::sft, "sft"}, {Objective::dpo, "dpo"}, {Objective::orpo, "orpo"}, {Objective::kto, "kto"}};
constexpr NameEntry<PreferenceLoss> loss_table[] = {
    {PreferenceLoss::sigmoid, "sigmoid"}, {PreferenceLoss::ipo, "ipo"}, {PreferenceLoss::hinge, "hinge"}};

[[noreturn]] void bad_line(const std::string& path, int64_t line, const std::string& what, const std::string& hint) {
  throw UserError(path + ":" + std::to_string(line) + ": " + what, hint);
}

const char* const preference_formats =
    "each line is {\"prompt\": ..., \"chosen\": ..., \"rejected\": ...} (strings, or lists of messages)";

// A text field that must be a non-empty string.
std::string text_field(const json& object, const char* key, const std::string& path, int64_t line) {
  const json& value = object[key];
  if (!value.is_string())
    bad_line(
        path, line,
        std::string("\"") + key + "\" must be a string (or every field a list of messages), got " + value.type_name(),
        preference_formats);
  return value.get<std::string>();
}

// log(1 - exp(x)) for x < 0, stable at both ends (TRL's log1mexp).
double log1mexp(double x) { return x > -0.693147 ? std::log(-std::expm1(x)) : std::log1p(-std::exp(x)); }
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double log_sigmoid(double x) { return x < 0 ? x - std::log1p(std::exp(x)) : -std::log1p(std::exp(-x)); }
}  // namespace

std::span<const NameEntry<Objective>> objective_names() { return objective_table; }
std::span<const NameEntry<PreferenceLoss>> preference_loss_names() { return loss_table; }

PreferenceSettings preference_settings(const TrainConfig& c) {
  PreferenceSettings settings;
  settings.objective = enum_from_flag(objective_names(), c.objective, "--objective");
  settings.loss = enum_from_flag(preference_loss_names(), c.loss_type, "--loss-type");
  settings.beta = c.beta;
  return settings;
}

bool is_preference(const TrainConfig& c) { return c.objective != enum_name(objective_names(), Objective::sft); }

void validate_preference(const TrainConfig& c) {
  const PreferenceSettings settings = preference_settings(c);
  if (settings.objective == Objective::kto)
    throw UserError("--objective kto is not implemented yet", "use --objective dpo or orpo with paired data");
  if (settings.loss != PreferenceLoss::sigmoid && settings.objective != Objective::dpo)
    throw UserError("--loss-type " + c.loss_type + " is a DPO loss", "add --objective dpo, or drop --loss-type");
  if (!(c.beta > 0 && std::isfinite(c.beta)))
    throw UserError("--beta must be a positive number", "TRL's default is 0.1");
  if (settings.objective == Objective::sft) return;
  const std::string objective = "--objective " + c.objective;
  if (c.packing)
    throw UserError(objective + " keeps each answer in its own row: --packing does not apply", "drop --packing");
  if (!c.eval_data.empty())
    throw UserError(objective + " does not evaluate --eval-data yet",
                    "drop --eval-data (metrics.jsonl has the rewards)");
  if (is_mixture(parse_data_sources(c.data)))
    throw UserError(objective + " reads one preference file; data mixtures are for sft", "give one --data file");
  if (settings.objective == Objective::dpo && c.method == spec::Method::full)
    throw UserError("--objective dpo with --method full would need a frozen copy of every weight as the reference",
                    "use --method lora or qlora (the base with the adapter switched off is the reference), or "
                    "--objective orpo, which needs no reference");
  if (settings.objective == Objective::dpo && (!c.modules_to_save.empty() || !c.trainable_token_indices.empty()))
    throw UserError(
        "--objective dpo takes the base with the adapter switched off as the reference: "
        "--modules-to-save and --trainable-token-indices would change it",
        "train LoRA modules only with dpo");
}

std::vector<ParsedExample> read_preference_jsonl(const std::string& path, const text::ChatFormat& chat) {
  std::ifstream in(path);
  if (!in) throw UserError("cannot read data file " + path, "check the --data path");
  std::vector<ParsedExample> examples;
  std::string text;
  int64_t line = 0;
  while (std::getline(in, text)) {
    line++;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    json object;
    try {
      object = json::parse(text);
    } catch (const json::exception& error) {
      bad_line(path, line, std::string("not valid JSON (") + error.what() + ")", preference_formats);
    }
    if (!object.is_object()) bad_line(path, line, "not a JSON object", preference_formats);
    if (object.contains("label") || object.contains("completion"))
      bad_line(path, line, "this is KTO's unpaired format ({\"prompt\",\"completion\",\"label\"})",
               "--objective dpo and orpo read {\"prompt\",\"chosen\",\"rejected\"} pairs");
    for (const char* key : {"chosen", "rejected"})
      if (!object.contains(key)) bad_line(path, line, std::string("missing \"") + key + "\"", preference_formats);
    const bool conversational = object["chosen"].is_array();
    for (const char* side : {"chosen", "rejected"}) {
      ParsedExample example;
      example.line = line;
      if (!conversational) {
        if (!object.contains("prompt"))
          bad_line(path, line, "missing \"prompt\"", "plain-text pairs need the prompt apart from the answers");
        std::string prompt = text_field(object, "prompt", path, line);
        std::string answer = text_field(object, side, path, line);
        if (answer.empty()) bad_line(path, line, std::string("\"") + side + "\" is empty", "remove the line");
        example.format = ExampleFormat::prompt_completion;
        example.segments = {{prompt, false}, {answer, true}};
      } else {
        std::vector<std::pair<std::string, std::string>> turns;
        if (object.contains("prompt")) turns = message_turns(object["prompt"], "prompt", path, line);
        std::vector<std::pair<std::string, std::string>> answer = message_turns(object[side], side, path, line);
        size_t answer_turns = 0;  // the assistant turns of the answer: the only completions
        for (const auto& turn : answer) answer_turns += turn.first == "assistant" && !turn.second.empty();
        if (answer_turns == 0)
          bad_line(path, line, std::string("\"") + side + "\" has no non-empty assistant message",
                   "the answer is [{\"role\": \"assistant\", \"content\": \"...\"}]");
        turns.insert(turns.end(), answer.begin(), answer.end());
        example.format = ExampleFormat::messages;
        try {
          example.segments = text::render_chat(chat, turns);
        } catch (const UserError& error) {
          bad_line(path, line, error.what(), error.hint());
        }
        // Assistant turns of a multi-turn prompt are context: only the answer's turns are trained.
        size_t seen = 0;
        for (auto segment = example.segments.rbegin(); segment != example.segments.rend(); ++segment)
          if (segment->completion && ++seen > answer_turns) segment->completion = false;
      }
      examples.push_back(std::move(example));
    }
  }
  if (examples.empty()) throw UserError(path + ": the file has no preference pairs", preference_formats);
  return examples;
}

std::vector<uint32_t> pair_epoch_order(size_t examples, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<uint32_t> pairs(examples / 2);
  std::iota(pairs.begin(), pairs.end(), 0u);
  if (shuffle) {  // keyed by (seed, epoch) as the batcher's own order: a resumed run sees the same pairs
    std::mt19937_64 generator(seed * 1000003ull + static_cast<uint64_t>(epoch));
    std::shuffle(pairs.begin(), pairs.end(), generator);
  }
  std::vector<uint32_t> order;
  order.reserve(pairs.size() * 2);
  for (uint32_t pair : pairs) {
    order.push_back(2 * pair);
    order.push_back(2 * pair + 1);
  }
  return order;
}

void batch_in_pairs(BatcherSettings& settings, size_t examples, bool shuffle) {
  settings.batch *= 2;
  settings.shuffle = false;  // the pair order shuffles
  settings.epoch_examples = [examples, seed = settings.seed, shuffle](int64_t epoch) {
    return pair_epoch_order(examples, seed, epoch, shuffle);
  };
}

std::string metrics_summary(const std::vector<std::pair<std::string, double>>& metrics) {
  double accuracy = NAN, margin = NAN;
  for (const auto& [name, value] : metrics) {
    if (name == "rewards/accuracies") accuracy = value;
    if (name == "rewards/margins") margin = value;
  }
  if (std::isnan(accuracy)) return "";
  char text[64];
  std::snprintf(text, sizeof text, " acc %.2f margin %.3f", accuracy, margin);
  return text;
}

PairLoss pair_loss(const PreferenceSettings& settings, const PairLogps& p) {
  PairLoss out;
  const double beta = settings.beta;
  if (settings.objective == Objective::orpo) {
    // ORPOTrainer: length-averaged log-probs, log odds = (pc - pr) - (log1mexp(pc) - log1mexp(pr)),
    // loss term -beta * logsigmoid(log odds); rewards are beta * the averaged log-probs.
    const double pc = p.chosen / p.chosen_tokens, pr = p.rejected / p.rejected_tokens;
    const double log_odds = (pc - pr) - (log1mexp(pc) - log1mexp(pr));
    out.loss = -beta * log_sigmoid(log_odds);
    const double d_log_odds = -beta * sigmoid(-log_odds);
    // d log_odds / d pc = 1 + e^pc / (1 - e^pc) = 1 / (1 - e^pc); likewise -1 / (1 - e^pr).
    out.d_chosen = d_log_odds / -std::expm1(pc) / p.chosen_tokens;
    out.d_rejected = -d_log_odds / -std::expm1(pr) / p.rejected_tokens;
    out.reward_chosen = beta * pc;
    out.reward_rejected = beta * pr;
    return out;
  }
  const double chosen_ratio = p.chosen - p.ref_chosen, rejected_ratio = p.rejected - p.ref_rejected;
  const double delta = chosen_ratio - rejected_ratio;
  double d_delta = 0;
  switch (settings.loss) {
    case PreferenceLoss::sigmoid:
      out.loss = -log_sigmoid(beta * delta);
      d_delta = -beta * sigmoid(-beta * delta);
      break;
    case PreferenceLoss::hinge:
      out.loss = std::max(0.0, 1 - beta * delta);
      d_delta = 1 - beta * delta > 0 ? -beta : 0.0;
      break;
    case PreferenceLoss::ipo: {  // TRL normalizes each side's log ratio by its completion length
      const double ipo_delta = chosen_ratio / p.chosen_tokens - rejected_ratio / p.rejected_tokens;
      const double gap = ipo_delta - 1 / (2 * beta);
      out.loss = gap * gap;
      out.d_chosen = 2 * gap / p.chosen_tokens;
      out.d_rejected = -2 * gap / p.rejected_tokens;
      break;
    }
  }
  if (settings.loss != PreferenceLoss::ipo) {
    out.d_chosen = d_delta;
    out.d_rejected = -d_delta;
  }
  out.reward_chosen = beta * chosen_ratio;
  out.reward_rejected = beta * rejected_ratio;
  return out;
}

PreferenceRunner::PreferenceRunner(vk::Context& context, model::ModelSession& session, StepRunner& runner,
                                   const PreferenceSettings& settings)
    : context_(context), session_(session), runner_(runner), settings_(settings) {
  auto& transformer = *session.transformer;
  policy_ = std::make_unique<vk::Sequence>(context);
  policy_->record([&transformer](vk::Recorder& r) { transformer.record_forward(r, true, false); });
  if (settings.objective == Objective::dpo) {
    transformer.set_adapter_enabled(false);
    reference_ = std::make_unique<vk::Sequence>(context);
    reference_->record([&transformer](vk::Recorder& r) { transformer.record_forward(r, true, false); });
    transformer.set_adapter_enabled(true);
  }
}

PreferenceRunner::~PreferenceRunner() = default;

std::vector<float> PreferenceRunner::token_losses(vk::Sequence& forward, size_t tokens) {
  context_.submit({&forward});
  std::vector<float> losses(tokens);
  context_.download(session_.buffers->buffer("loss.rows"), losses.data(), 0, losses.size() * 4);
  return losses;
}

PreferenceBatch PreferenceRunner::prepare(const MicroBatch& batch) {
  VKT_ASSERT(batch.batch % 2 == 0, "preference micro-batches hold pairs");
  // The scoring passes give -log p of every real token (weight 1); sums over the completion
  // tokens are TRL's logps, and ORPO's NLL is the chosen rows' mean over all real tokens.
  MicroBatch scoring = batch;
  for (float& weight : scoring.weights) weight = weight > 0 ? 1.0f : 0.0f;
  runner_.upload(scoring);
  std::vector<float> reference;
  if (reference_) reference = token_losses(*reference_, batch.weights.size());
  std::vector<float> policy = token_losses(*policy_, batch.weights.size());
  std::vector<double> tokens(batch.batch, 0.0), logps(batch.batch, 0.0), ref_logps(batch.batch, 0.0);
  double chosen_real = 0, chosen_nll = 0;
  for (size_t i = 0; i < batch.weights.size(); i++) {
    const size_t row = i / batch.seq_len;
    if (row % 2 == 0 && batch.weights[i] > 0) {
      chosen_real += 1;
      chosen_nll += policy[i];
    }
    if (batch.weights[i] != 1.0f) continue;  // prompt or padding
    tokens[row] += 1;
    logps[row] -= policy[i];
    if (reference_) ref_logps[row] -= reference[i];
  }

  PreferenceBatch out;
  const uint32_t pair_count = batch.batch / 2;
  std::vector<double> d_logps(batch.batch);  // d loss / d (row's summed completion log-prob)
  for (uint32_t p = 0; p < pair_count; p++) {
    PairLogps pair;
    pair.chosen = logps[2 * p];
    pair.rejected = logps[2 * p + 1];
    pair.ref_chosen = ref_logps[2 * p];
    pair.ref_rejected = ref_logps[2 * p + 1];
    pair.chosen_tokens = std::max(1.0, tokens[2 * p]);
    pair.rejected_tokens = std::max(1.0, tokens[2 * p + 1]);
    PairLoss loss = pair_loss(settings_, pair);
    out.loss += loss.loss / pair_count;
    d_logps[2 * p] = loss.d_chosen / pair_count;
    d_logps[2 * p + 1] = loss.d_rejected / pair_count;
    out.pairs.push_back(pair);
    out.losses.push_back(loss);
  }
  // ORPO's NLL: the mean cross-entropy over every real token of the chosen rows (prompt too).
  const bool orpo = settings_.objective == Objective::orpo;
  if (orpo && chosen_real > 0) out.loss += chosen_nll / chosen_real;
  out.weighted = batch;
  for (size_t i = 0; i < batch.weights.size(); i++) {
    const size_t row = i / batch.seq_len;
    const bool completion = batch.weights[i] == 1.0f;
    // CE = -log p: d loss / d CE(token) = -d loss / d log p.
    double weight = completion ? -d_logps[row] : 0.0;
    if (orpo && row % 2 == 0 && batch.weights[i] > 0) weight += 1.0 / chosen_real;
    out.weighted.weights[i] = static_cast<float>(weight);
  }
  out.weighted.weight_sum = 1;  // the step's gradient is the mean over its micro-batches
  return out;
}

uint32_t PreferenceRunner::step(int64_t step, double lr, const std::vector<MicroBatch>& micro_batches, bool profile) {
  std::vector<MicroBatch> weighted;
  double loss = 0;
  for (const MicroBatch& batch : micro_batches) {
    PreferenceBatch prepared = prepare(batch);
    loss += prepared.loss / double(micro_batches.size());
    for (size_t p = 0; p < prepared.pairs.size(); p++) {
      const PairLogps& logps = prepared.pairs[p];
      const PairLoss& pair = prepared.losses[p];
      const bool orpo = settings_.objective == Objective::orpo;
      std::vector<std::pair<std::string, double>> values = {
          {"rewards/chosen", pair.reward_chosen},
          {"rewards/rejected", pair.reward_rejected},
          {"rewards/accuracies", pair.reward_chosen > pair.reward_rejected ? 1.0 : 0.0},
          {"rewards/margins", pair.reward_chosen - pair.reward_rejected},
          {"logps/chosen", orpo ? logps.chosen / logps.chosen_tokens : logps.chosen},
          {"logps/rejected", orpo ? logps.rejected / logps.rejected_tokens : logps.rejected}};
      if (sums_.empty())
        for (const auto& [name, value] : values) sums_.push_back({name, 0.0});
      for (size_t i = 0; i < values.size(); i++) sums_[i].second += values[i].second;
      window_pairs_++;
    }
    weighted.push_back(std::move(prepared.weighted));
  }
  // The scoring passes added into loss.step: clear it; the window gets the preference loss
  // instead of the Σ w·CE the training pass sums (with these weights it is no loss).
  auto& buffers = *session_.buffers;
  context_.run([&](vk::Recorder& r) { r.fill(buffers.buffer("loss.step").range(0, 4)); });
  float window_before = 0;
  context_.download(buffers.buffer("loss.window"), &window_before, 0, 4);
  uint32_t flags = runner_.step(step, lr, weighted, profile);
  float window = window_before + static_cast<float>(loss);
  context_.upload(buffers.buffer("loss.window"), &window, 0, 4);
  return flags;
}

std::vector<std::pair<std::string, double>> PreferenceRunner::take_metrics() {
  std::vector<std::pair<std::string, double>> means = sums_;
  for (auto& [name, value] : means) value = window_pairs_ ? value / double(window_pairs_) : 0.0;
  for (auto& [name, value] : sums_) value = 0;
  window_pairs_ = 0;
  return means;
}

}  // namespace vkt::train
