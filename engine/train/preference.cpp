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
#include "engine/train/distributed.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/step_runner.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::train {

using nlohmann::json;

namespace {
constexpr NameEntry<Objective> objective_table[] = {{Objective::sft, "sft"},
                                                    {Objective::dpo, "dpo"},
                                                    {Objective::orpo, "orpo"},
                                                    {Objective::kto, "kto"},
                                                    {Objective::distill, "distill"}};
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
  settings.desirable_weight = c.desirable_weight;
  settings.undesirable_weight = c.undesirable_weight;
  return settings;
}

int preference_rows(const TrainConfig& c) { return c.objective == "dpo" || c.objective == "orpo" ? 2 : 1; }

bool is_preference(const TrainConfig& c) {
  return c.objective != enum_name(objective_names(), Objective::sft) &&
         c.objective != enum_name(objective_names(), Objective::distill);
}

void validate_preference(const TrainConfig& c) {
  const PreferenceSettings settings = preference_settings(c);
  if (settings.loss != PreferenceLoss::sigmoid && settings.objective != Objective::dpo)
    throw UserError("--loss-type " + c.loss_type + " is a DPO loss", "add --objective dpo, or drop --loss-type");
  if (!(c.beta > 0 && std::isfinite(c.beta)))
    throw UserError("--beta must be a positive number", "TRL's default is 0.1");
  if (!(c.desirable_weight >= 0 && c.undesirable_weight >= 0 &&
        std::isfinite(c.desirable_weight + c.undesirable_weight)))
    throw UserError("--desirable-weight and --undesirable-weight must be >= 0", "TRL's defaults are 1");
  if (settings.objective == Objective::sft || settings.objective == Objective::distill) return;
  if (settings.objective == Objective::kto && c.per_device_train_batch_size < 2)
    throw UserError(
        "--objective kto estimates its KL term from the other examples of a micro-batch: "
        "--per-device-train-batch-size must be at least 2 (as KTOTrainer requires)",
        "use --per-device-train-batch-size 4 or more");
  const std::string objective = "--objective " + c.objective;
  // TRL scores answers only (ORPO's NLL: the chosen row's prompt and answer at weight 1), so a prompt
  // weight has no meaning here; the default passes silently, any other value is refused.
  if (c.prompt_loss_weight != TrainConfig{}.prompt_loss_weight)
    throw UserError(objective + " does not weigh prompt tokens: --prompt-loss-weight " +
                        nlohmann::json(c.prompt_loss_weight).dump() + " does not apply",
                    settings.objective == Objective::orpo
                        ? "drop --prompt-loss-weight (ORPO's NLL covers the chosen prompt and answer at weight 1, "
                          "its odds ratio the answers only, as TRL's ORPOTrainer)"
                        : "drop --prompt-loss-weight (the log-probs cover the answers only, as TRL masks the prompt)");
  if (c.packing)
    throw UserError(objective + " keeps each answer in its own row: --packing does not apply", "drop --packing");
  if (!c.eval_data.empty())
    throw UserError(objective + " does not evaluate --eval-data yet",
                    "drop --eval-data (metrics.jsonl has the rewards)");
  if (is_mixture(parse_data_sources(c.data)))
    throw UserError(objective + " reads one preference file; data mixtures are for sft", "give one --data file");
  if (settings.objective != Objective::orpo && c.method == spec::Method::full)
    throw UserError(objective + " with --method full would need a frozen copy of every weight as the reference",
                    "use --method lora or qlora (the base with the adapter switched off is the reference), or "
                    "--objective orpo, which needs no reference");
  if (settings.objective != Objective::orpo && (!c.modules_to_save.empty() || !c.trainable_token_indices.empty()))
    throw UserError(objective +
                        " takes the base with the adapter switched off as the reference: "
                        "--modules-to-save and --trainable-token-indices would change it",
                    "train LoRA modules only with dpo and kto");
}

namespace {
// A conversational example: the prompt's messages (when "prompt" is there) and the answer's,
// rendered with the chat template; only the answer's assistant turns are trained (assistant turns
// of a multi-turn prompt are context).
void render_answer(ParsedExample& example, const json& object, const std::string& answer_key,
                   const text::ChatFormat& chat, const std::string& path, int64_t line) {
  std::vector<std::pair<std::string, std::string>> turns;
  if (object.contains("prompt")) turns = message_turns(object["prompt"], "prompt", path, line);
  std::vector<std::pair<std::string, std::string>> answer = message_turns(object[answer_key], answer_key, path, line);
  size_t answer_turns = 0;
  for (const auto& turn : answer) answer_turns += turn.first == "assistant" && !turn.second.empty();
  if (answer_turns == 0)
    bad_line(path, line, "\"" + answer_key + "\" has no non-empty assistant message",
             "the answer is [{\"role\": \"assistant\", \"content\": \"...\"}]");
  turns.insert(turns.end(), answer.begin(), answer.end());
  example.format = ExampleFormat::messages;
  try {
    example.segments = text::render_chat(chat, turns);
  } catch (const UserError& error) {
    bad_line(path, line, error.what(), error.hint());
  }
  size_t seen = 0;
  for (auto segment = example.segments.rbegin(); segment != example.segments.rend(); ++segment)
    if (segment->completion && ++seen > answer_turns) segment->completion = false;
}

// One KTO line: {"prompt", "completion", "label"}, strings or lists of messages.
ParsedExample read_kto_line(const json& object, const text::ChatFormat& chat, const std::string& path, int64_t line) {
  const char* format = "each line is {\"prompt\": ..., \"completion\": ..., \"label\": true|false}";
  for (const char* key : {"prompt", "completion", "label"})
    if (!object.contains(key)) bad_line(path, line, std::string("missing \"") + key + "\"", format);
  if (!object["label"].is_boolean())
    bad_line(path, line, std::string("\"label\" must be true or false, got ") + object["label"].dump(),
             "true marks a desirable completion, false an undesirable one");
  ParsedExample example;
  example.line = line;
  example.desirable = object["label"].get<bool>();
  if (!object["completion"].is_array()) {
    std::string completion = text_field(object, "completion", path, line);
    if (completion.empty()) bad_line(path, line, "\"completion\" is empty", "remove the line");
    example.format = ExampleFormat::prompt_completion;
    example.segments = {{text_field(object, "prompt", path, line), false}, {completion, true}};
    return example;
  }
  render_answer(example, object, "completion", chat, path, line);
  return example;
}
}  // namespace

std::vector<TokenizedExample> read_preference_data(const std::string& path, const text::ChatFormat& chat,
                                                   const TokenizerHooks& tokenizer, const TrainConfig& config,
                                                   TokenizeReport& report) {
  const Objective objective = preference_settings(config).objective;
  std::vector<ParsedExample> parsed = read_preference_jsonl(path, chat, objective);
  // strict: an over-long prompt is an error, so no example drops out and pairs and labels stay aligned.
  std::vector<TokenizedExample> examples = tokenize_examples(
      parsed, tokenizer, preference_prompt_marker, static_cast<uint32_t>(config.max_length), path, report, true);
  VKT_ASSERT(examples.size() == parsed.size(), "preference examples dropped");
  for (size_t i = 0; i < examples.size(); i++)
    if (!parsed[i].desirable)
      for (float& weight : examples[i].weights)
        if (weight == 1.0f) weight = undesirable_completion_marker;
  return examples;
}

std::vector<ParsedExample> read_preference_jsonl(const std::string& path, const text::ChatFormat& chat,
                                                 Objective objective) {
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
    if (objective == Objective::kto) {
      examples.push_back(read_kto_line(object, chat, path, line));
      continue;
    }
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
        render_answer(example, object, side, chat, path, line);
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
                                   const PreferenceSettings& settings, Communicator* ranks)
    : context_(context), session_(session), runner_(runner), settings_(settings), ranks_(ranks) {
  auto& transformer = *session.transformer;
  policy_ = std::make_unique<vk::Sequence>(context);
  // Train mode (TRL's policy pass): the dropout masks of the step whose backward follows.
  policy_->record([&transformer](vk::Recorder& r) { transformer.record_forward(r, true, false, true); });
  if (settings.objective != Objective::orpo) {
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

namespace {
// Completion tokens weigh 1 (KTO's undesirable ones 0.75), prompt tokens the 0.5 marker.
bool is_completion(float weight) { return weight > static_cast<float>(preference_prompt_marker); }

// The micro-batch with weight 1 on every real token: the scoring passes' input.
MicroBatch scoring_batch(const MicroBatch& batch) {
  MicroBatch scoring = batch;
  for (float& weight : scoring.weights) weight = weight > 0 ? 1.0f : 0.0f;
  return scoring;
}

// KTO's mismatched rows: row r's prompt with the completion of the previous real row (cyclic),
// truncated to the row length, weight 1 on the completion tokens (TRL's KL_completion_ids).
MicroBatch kl_batch(const MicroBatch& batch) {
  const uint32_t length = batch.seq_len;
  std::vector<std::vector<uint32_t>> prompts, completions;
  for (uint32_t row = 0; row < batch.batch; row++) {
    std::vector<uint32_t> prompt{batch.ids[size_t(row) * length]}, completion;
    for (uint32_t t = 0; t < length; t++) {
      const size_t i = size_t(row) * length + t;
      if (batch.weights[i] <= 0) continue;
      (is_completion(batch.weights[i]) ? completion : prompt).push_back(batch.targets[i]);
    }
    if (completion.empty()) continue;  // padding row
    prompts.push_back(std::move(prompt));
    completions.push_back(std::move(completion));
  }
  MicroBatch kl = batch;
  std::fill(kl.weights.begin(), kl.weights.end(), 0.0f);
  std::fill(kl.targets.begin(), kl.targets.end(), 0u);
  std::fill(kl.segments.begin(), kl.segments.end(), 0u);
  for (size_t row = 0; row < prompts.size(); row++) {
    const std::vector<uint32_t>& completion = completions[(row + prompts.size() - 1) % prompts.size()];
    std::vector<uint32_t> tokens = prompts[row];
    tokens.insert(tokens.end(), completion.begin(), completion.end());
    tokens.resize(std::min<size_t>(tokens.size(), length));
    for (size_t t = 0; t < length; t++) {
      const size_t i = row * length + t;
      kl.ids[i] = t < tokens.size() ? tokens[t] : batch.ids[i];
      kl.positions[i] = static_cast<uint32_t>(t);
      if (t + 1 < tokens.size()) {
        kl.targets[i] = tokens[t + 1];
        kl.weights[i] = t + 1 >= prompts[row].size() ? 1.0f : 0.0f;
      }
    }
  }
  return kl;
}
}  // namespace

bool PreferenceRunner::ranked() const { return ranks_ && ranks_->size() > 1; }

PreferenceBatch PreferenceRunner::prepare(const MicroBatch& batch) {
  if (settings_.objective == Objective::kto) return prepare_kto(batch);
  VKT_ASSERT(batch.batch % 2 == 0, "preference micro-batches hold pairs");
  // The scoring passes give -log p of every real token (weight 1); sums over the completion
  // tokens are TRL's logps, and ORPO's NLL is the chosen rows' mean over all real tokens.
  runner_.upload(scoring_batch(batch));
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
    if (!is_completion(batch.weights[i])) continue;  // prompt or padding
    tokens[row] += 1;
    logps[row] -= policy[i];
    if (reference_) ref_logps[row] -= reference[i];
  }

  PreferenceBatch out;
  const uint32_t pair_count = batch.batch / 2;
  const bool orpo = settings_.objective == Objective::orpo;
  std::vector<double> d_logps(batch.batch);  // d loss / d (row's summed completion log-prob)
  double reward_chosen = 0, reward_rejected = 0, accuracy = 0, logps_chosen = 0, logps_rejected = 0;
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
    reward_chosen += loss.reward_chosen / pair_count;
    reward_rejected += loss.reward_rejected / pair_count;
    accuracy += (loss.reward_chosen > loss.reward_rejected ? 1.0 : 0.0) / pair_count;
    // ORPO logs the length-averaged log-probs it scores with.
    logps_chosen += (orpo ? pair.chosen / pair.chosen_tokens : pair.chosen) / pair_count;
    logps_rejected += (orpo ? pair.rejected / pair.rejected_tokens : pair.rejected) / pair_count;
    out.pairs.push_back(pair);
    out.losses.push_back(loss);
  }
  out.metrics = {{"rewards/chosen", reward_chosen}, {"rewards/rejected", reward_rejected},
                 {"rewards/accuracies", accuracy},  {"rewards/margins", reward_chosen - reward_rejected},
                 {"logps/chosen", logps_chosen},    {"logps/rejected", logps_rejected}};
  // ORPO's NLL: the mean cross-entropy over every real token of the chosen rows (prompt too).
  if (orpo) {  // always logged: every rank's micro-batch gives the same list of metrics
    const double nll = chosen_real > 0 ? chosen_nll / chosen_real : 0.0;
    out.loss += nll;
    out.metrics.push_back({"nll_loss", nll});
  }
  out.weighted = batch;
  for (size_t i = 0; i < batch.weights.size(); i++) {
    const size_t row = i / batch.seq_len;
    // CE = -log p: d loss / d CE(token) = -d loss / d log p.
    double weight = is_completion(batch.weights[i]) ? -d_logps[row] : 0.0;
    if (orpo && row % 2 == 0 && batch.weights[i] > 0) weight += 1.0 / chosen_real;
    out.weighted.weights[i] = static_cast<float>(weight);
  }
  out.weighted.weight_sum = 1;  // the step's gradient is the mean over its micro-batches
  return out;
}

PreferenceBatch PreferenceRunner::prepare_kto(const MicroBatch& batch) {
  const size_t tokens = batch.weights.size();
  auto row_sums = [&](const std::vector<float>& losses, const MicroBatch& rows) {
    std::vector<double> sums(rows.batch, 0.0);
    for (size_t i = 0; i < tokens; i++)
      if (is_completion(rows.weights[i])) sums[i / rows.seq_len] -= losses[i];
    return sums;
  };
  // KL = max(0, mean over rows of (policy - reference) log-probs of the mismatched rows), no gradient.
  MicroBatch mismatched = kl_batch(batch);
  runner_.upload(mismatched);
  std::vector<double> kl_policy = row_sums(token_losses(*policy_, tokens), mismatched);
  std::vector<double> kl_reference = row_sums(token_losses(*reference_, tokens), mismatched);
  runner_.upload(scoring_batch(batch));
  std::vector<double> reference = row_sums(token_losses(*reference_, tokens), batch);
  std::vector<double> policy = row_sums(token_losses(*policy_, tokens), batch);
  std::vector<int> label(batch.batch, -1);  // 1 desirable, 0 undesirable, -1 padding row
  for (size_t i = 0; i < tokens; i++)
    if (is_completion(batch.weights[i])) label[i / batch.seq_len] = batch.weights[i] == 1.0f ? 1 : 0;
  const double beta = settings_.beta;
  double rows = 0, kl = 0;
  // [0] this rank's KL estimate, [1] 1 when it has one, [2 + 3 label + k] the label's
  // k = 0 summed rewards, 1 summed logps, 2 row count.
  double totals[8] = {};
  for (uint32_t row = 0; row < batch.batch; row++)
    if (label[row] >= 0) {
      rows += 1;
      kl += kl_policy[row] - kl_reference[row];
      double* sums = totals + 2 + 3 * label[row];
      sums[0] += beta * (policy[row] - reference[row]);
      sums[1] += policy[row];
      sums[2] += 1;
    }
  totals[0] = rows > 0 ? kl / rows : 0.0;
  totals[1] = rows > 0 ? 1.0 : 0.0;
  // TRL: accelerator.gather_for_metrics(kl).mean().clamp(min=0), and its reward metrics summed over
  // every rank's rows. Gathered in rank order (deterministic): every rank uses the same bits.
  if (ranked()) ranks_->sum(totals, 8, true);
  kl = std::max(0.0, totals[1] > 0 ? totals[0] / totals[1] : 0.0);

  PreferenceBatch out;
  std::vector<double> d_logps(batch.batch, 0.0);
  for (uint32_t row = 0; row < batch.batch; row++) {
    if (label[row] < 0) continue;
    const double ratio = policy[row] - reference[row];
    // KTOTrainer (loss_type kto): desirable 1 - sigmoid(beta (ratio - KL)), undesirable
    // 1 - sigmoid(beta (KL - ratio)), weighted, then the mean over the batch's rows.
    const double x = label[row] ? beta * (ratio - kl) : beta * (kl - ratio);
    const double weight = label[row] ? settings_.desirable_weight : settings_.undesirable_weight;
    const double s = sigmoid(x);
    out.loss += weight * (1 - s) / rows;
    d_logps[row] = weight * -s * (1 - s) * (label[row] ? beta : -beta) / rows;
  }
  const double *desirable = totals + 5, *undesirable = totals + 2;
  out.metrics.push_back({"kl", kl});
  if (desirable[2] > 0) {
    out.metrics.push_back({"rewards/chosen", desirable[0] / desirable[2]});
    out.metrics.push_back({"logps/chosen", desirable[1] / desirable[2]});
  }
  if (undesirable[2] > 0) {
    out.metrics.push_back({"rewards/rejected", undesirable[0] / undesirable[2]});
    out.metrics.push_back({"logps/rejected", undesirable[1] / undesirable[2]});
  }
  if (desirable[2] > 0 && undesirable[2] > 0)
    out.metrics.push_back({"rewards/margins", desirable[0] / desirable[2] - undesirable[0] / undesirable[2]});
  out.weighted = batch;
  for (size_t i = 0; i < tokens; i++)
    out.weighted.weights[i] = is_completion(batch.weights[i]) ? static_cast<float>(-d_logps[i / batch.seq_len]) : 0.0f;
  out.weighted.weight_sum = 1;
  return out;
}

void PreferenceRunner::add_metric(const std::string& name, double value, double count) {
  auto found = std::find_if(sums_.begin(), sums_.end(), [&](const MetricSum& m) { return m.name == name; });
  if (found == sums_.end()) found = sums_.insert(sums_.end(), MetricSum{name});
  found->sum += value * count;
  found->count += count;
}

uint32_t PreferenceRunner::step(int64_t step, double lr, const std::vector<MicroBatch>& micro_batches, bool profile) {
  std::vector<MicroBatch> weighted;
  std::vector<std::pair<std::string, double>> metrics;
  double loss = 0;
  for (const MicroBatch& batch : micro_batches) {
    PreferenceBatch prepared = prepare(batch);
    loss += prepared.loss / double(micro_batches.size());
    metrics.insert(metrics.end(), prepared.metrics.begin(), prepared.metrics.end());
    weighted.push_back(std::move(prepared.weighted));
  }
  if (ranked()) {  // the mean over ranks of the loss, and of DPO/ORPO's metrics (KTO's are global already)
    const bool kto = settings_.objective == Objective::kto;
    std::vector<double> values = {loss};
    if (!kto)
      for (const auto& metric : metrics) values.push_back(metric.second);
    ranks_->sum(values.data(), values.size(), true);
    loss = values[0] / ranks_->size();
    if (!kto)
      for (size_t i = 0; i < metrics.size(); i++) metrics[i].second = values[i + 1] / ranks_->size();
  }
  // As TRL, the logged value is the mean of the micro-batches' values.
  for (const auto& [name, value] : metrics) add_metric(name, value);
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
  std::vector<std::pair<std::string, double>> means;
  for (MetricSum& metric : sums_) {
    if (metric.count > 0) means.push_back({metric.name, metric.sum / metric.count});
    metric.sum = metric.count = 0;
  }
  return means;
}

}  // namespace vkt::train
