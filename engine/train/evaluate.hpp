#pragma once
// Evaluation loss of a model folder (optionally with a PEFT adapter) on a JSONL file, with the
// trainer's data formats and loss weights: loss = Σ w·CE / Σ w over every example once (right
// padding, no packing), perplexity = exp(loss). What `vktune quantize --eval-data` reports before
// and after, and what tests use to score merged models.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "engine/model/session.hpp"
#include "engine/train/batcher.hpp"
#include "engine/train/dataset.hpp"

namespace vkt::train {

// Uploads a micro-batch's tokens to the session's inputs (ids, targets, weights, positions,
// segments).
void upload_micro_batch(vk::Context& context, model::BufferSet& buffers, const MicroBatch& batch);

// Σ w·CE / Σ w over `batches`, each run through `forward` (a recorded
// transformer.record_forward(r, true, false)); loss.step is cleared before and after. Shared by
// StepRunner::evaluate (the trainer's eval) and evaluate_examples.
double weighted_loss(vk::Context& context, model::ModelSession& session, vk::Sequence& forward,
                     const std::vector<MicroBatch>& batches);

struct EvalData {
  std::vector<TokenizedExample> examples;
  uint32_t seq_len = 0;  // the longest example (capped at max_length)
  uint32_t pad_id = 0;
  TokenizeReport report;
};

// Tokenizes `data` with the tokenizer (and chat template) of `model_dir`, as the trainer does.
EvalData tokenize_eval_file(const std::filesystem::path& model_dir, const std::filesystem::path& data,
                            uint32_t max_length = 1024, double prompt_loss_weight = 0.1);

struct EvalResult {
  double loss = 0;        // Σ w·CE / Σ w
  double perplexity = 0;  // exp(loss)
  double weight_sum = 0;
  int64_t examples = 0;
  int64_t tokens = 0;
};

// Runs the forward with loss over every example of `data` in micro-batches of the session's
// batch size. The session must be training-shaped (its plan has loss buffers) and planned for at
// least data.seq_len tokens per row.
EvalResult evaluate_examples(vk::Context& context, model::ModelSession& session, const EvalData& data);

struct EvalOptions {
  uint32_t batch = 4;
  uint32_t max_length = 1024;
  double prompt_loss_weight = 0.1;                                 // the trainer's default
  std::optional<std::filesystem::path> adapter;                    // evaluate base + this PEFT adapter
  kernels::WeightFormat base_format = kernels::WeightFormat::f32;  // quantize the linear weights on load
  bool double_quant = true;                                        // nf4 only
  kernels::DType dtype = kernels::DType::f32;                      // embeddings, lm_head, dense base weights
};

// Opens the model for evaluation (a training-shaped plan without gradients, or with the adapter's
// LoRA buffers; bitsandbytes NF4 and vktune-quantized folders load as stored) and evaluates it.
EvalResult evaluate_model(vk::Context& context, const std::filesystem::path& model_dir,
                          const std::filesystem::path& data, const EvalOptions& options = {});

}  // namespace vkt::train
