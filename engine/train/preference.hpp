#pragma once
// Preference finetuning as TRL 1.16 defines it: DPO (DPOTrainer, loss_type sigmoid | ipo | hinge)
// and ORPO (ORPOTrainer, beta is the paper's lambda), on TRL's preference data
// {"prompt", "chosen", "rejected"} (plain strings, or conversations rendered with the chat template);
// KTO (KTOTrainer, loss_type kto) on unpaired {"prompt", "completion", "label"}: one row per example,
// and the KL estimate from each row's prompt with the previous row's completion (TRL's rotation by
// one within the batch), scored by forwards only.
//
// Each pair is two rows of one micro-batch (chosen at row 2i, rejected at 2i+1). Per micro-batch:
//  1. DPO only: a forward with the adapter switched off (Transformer::set_adapter_enabled: the
//     frozen base, no second copy) gives the reference log-probs;
//  2. a forward with the adapter gives the policy log-probs. Both come from the fused
//     cross-entropy's per-token losses (loss.rows = -log p of each completion token, weight 1);
//  3. the loss and d loss / d (each sequence's summed log-prob) are computed here on the host;
//  4. the ordinary training micro-batch then runs with per-token weights = -that coefficient
//     (the cross-entropy's backward with per-token weights gives exactly the DPO gradient: it is a
//     per-sequence coefficient times the gradient of the sequence's summed log-probs).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/base/names.hpp"
#include "engine/train/batcher.hpp"
#include "engine/train/dataset.hpp"

namespace vkt::vk {
class Context;
class Sequence;
}  // namespace vkt::vk
namespace vkt::model {
struct ModelSession;
}

namespace vkt::train {

class StepRunner;
class Communicator;
struct TrainConfig;

enum class Objective { sft, dpo, orpo, kto, distill };  // distill: engine/train/distill.hpp
std::span<const NameEntry<Objective>> objective_names();
enum class PreferenceLoss { sigmoid, ipo, hinge };  // DPOConfig.loss_type
std::span<const NameEntry<PreferenceLoss>> preference_loss_names();

struct PreferenceSettings {
  Objective objective = Objective::dpo;
  PreferenceLoss loss = PreferenceLoss::sigmoid;
  double beta = 0.1;                                    // DPOConfig.beta / ORPOConfig.beta (lambda) / KTOConfig.beta
  double desirable_weight = 1, undesirable_weight = 1;  // KTO
};

// --objective, --beta, --loss-type of a configuration; UserError on a combination vktune does not
// train (validate() calls it).
void validate_preference(const TrainConfig& config);
PreferenceSettings preference_settings(const TrainConfig& config);
bool is_preference(const TrainConfig& config);   // dpo, orpo or kto
int preference_rows(const TrainConfig& config);  // rows per example: 2 for dpo/orpo pairs, else 1

// The weight preference examples are tokenized with for prompt tokens (tokenize_examples'
// prompt_loss_weight): it marks them apart from completion tokens (1) and padding (0). DPO
// scores completions only (as TRL masks the prompt); ORPO's NLL term covers prompt and completion.
constexpr double preference_prompt_marker = 0.5;
// KTO: the completion tokens of an undesirable (label false) example weigh this instead of 1.
constexpr float undesirable_completion_marker = 0.75f;

// Reads TRL's preference JSONL: two examples per line, chosen then rejected. Conversational
// lines ("prompt" a list of messages, "chosen"/"rejected" lists with the assistant's answer;
// or no "prompt" and full conversations) are rendered with the chat template; only the
// chosen/rejected assistant turns are the completion. Errors name file:line.
// KTO's {"prompt","completion","label"} (label a JSON bool) with --objective kto: one example per line.
std::vector<ParsedExample> read_preference_jsonl(const std::string& path, const text::ChatFormat& chat,
                                                 Objective objective = Objective::dpo);
// read_preference_jsonl + tokenize_examples with the markers above (the trainer's data path).
std::vector<TokenizedExample> read_preference_data(const std::string& path, const text::ChatFormat& chat,
                                                   const TokenizerHooks& tokenizer, const TrainConfig& config,
                                                   TokenizeReport& report);

// The examples of one epoch for the batcher (set shuffle off there): pairs in a shuffled order
// keyed by (seed, epoch), each as its two rows (2p, 2p+1) so they land in one micro-batch.
std::vector<uint32_t> pair_epoch_order(size_t examples, uint64_t seed, int64_t epoch, bool shuffle);

// The batcher of a preference run: `batch` pairs (2 rows each) per micro-batch, pairs kept together.
void batch_in_pairs(BatcherSettings& settings, size_t examples, bool shuffle);

// " acc 0.95 margin 1.23" for the progress line when `metrics` holds TRL's reward metrics, else "".
std::string metrics_summary(const std::vector<std::pair<std::string, double>>& metrics);

// One pair's log-probs: sums over completion tokens (TRL's logps), and completion token counts.
struct PairLogps {
  double chosen = 0, rejected = 0;          // policy
  double ref_chosen = 0, ref_rejected = 0;  // reference (DPO)
  double chosen_tokens = 1, rejected_tokens = 1;
};
struct PairLoss {
  double loss = 0;
  double d_chosen = 0, d_rejected = 0;  // d loss / d (summed completion log-prob) of each side
  double reward_chosen = 0, reward_rejected = 0;
};
// DPO: the loss of DPOTrainer._compute_loss; ORPO: -beta * logsigmoid(log odds) of
// ORPOTrainer.odds_ratio_loss on length-averaged log-probs (the NLL term is added per token).
PairLoss pair_loss(const PreferenceSettings& settings, const PairLogps& logps);

// What one micro-batch's preference pass produced.
struct PreferenceBatch {
  std::vector<std::pair<std::string, double>> metrics;  // TRL's metrics of this micro-batch
  MicroBatch weighted;  // the micro-batch with per-token weights = d loss / d CE(token); weight_sum 1
  double loss = 0;      // the micro-batch's loss (mean over its pairs, + the NLL for ORPO)
  std::vector<PairLogps> pairs;
  std::vector<PairLoss> losses;
};

class PreferenceRunner {
 public:
  // ranks: the data-parallel ranks (nullptr or one: alone). Under mpirun, as TRL under accelerate,
  // KTO's KL estimate is the mean of the ranks' estimates and its reward metrics are sums over every
  // rank's examples; the logged loss (HF Trainer gathers it) and DPO/ORPO's metrics are means over ranks.
  PreferenceRunner(vk::Context& context, model::ModelSession& session, StepRunner& runner,
                   const PreferenceSettings& settings, Communicator* ranks = nullptr);
  ~PreferenceRunner();
  // Steps 1-3 above for one micro-batch (rows alternate chosen / rejected).
  PreferenceBatch prepare(const MicroBatch& batch);
  // One optimizer step: prepare() of each micro-batch, then StepRunner::step with the weighted
  // micro-batches; the loss window gets the preference loss. Returns the non-finite flags.
  uint32_t step(int64_t step, double lr, const std::vector<MicroBatch>& micro_batches, bool profile);
  // TRL's metrics (rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins,
  // logps/chosen, logps/rejected; ORPO also nll_loss, log_odds_ratio), means over the pairs
  // since the last call.
  std::vector<std::pair<std::string, double>> take_metrics();

 private:
  // Runs `forward` on the uploaded micro-batch: loss.rows, (tokens) fp32, -log p per token.
  std::vector<float> token_losses(vk::Sequence& forward, size_t tokens);
  PreferenceBatch prepare_kto(const MicroBatch& batch);
  void add_metric(const std::string& name, double value, double count = 1);
  vk::Context& context_;
  model::ModelSession& session_;
  StepRunner& runner_;
  PreferenceSettings settings_;
  Communicator* ranks_ = nullptr;  // several: values are combined over ranks (ranked())
  bool ranked() const;
  std::unique_ptr<vk::Sequence> reference_, policy_;
  struct MetricSum {
    std::string name;
    double sum = 0, count = 0;
  };
  std::vector<MetricSum> sums_;  // over the logging window, in first-seen order
};

}  // namespace vkt::train
