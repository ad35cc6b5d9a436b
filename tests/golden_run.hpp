#pragma once
// Runs a model folder + PEFT adapter on a golden batch (tests/reference/make_golden.py or
// hf_golden.py wrote both) and compares logits, loss, d loss/d embedding, LoRA gradients and
// greedy generation with the golden file: shared by the model_golden and model_hf suites.
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/model/adapter.hpp"
#include "engine/model/session.hpp"
#include "engine/spec/run_settings.hpp"
#include "engine/train/batcher.hpp"
#include "tests/golden_file.hpp"

namespace vkt::test {

// ||actual - expected|| / ||expected||
double relative_error(const std::vector<float>& actual, const std::vector<float>& expected);

// The golden batch in the trainer's input layout: row t predicts ids[t+1] with weight w[t+1].
struct GoldenBatch : train::MicroBatch {
  std::vector<int64_t> lengths;  // (batch): real tokens per row
};
// `prefix`: the tensors' names before ids/weights/positions/lengths ("batch." by default).
GoldenBatch golden_batch(const GoldenFile& golden, const std::string& prefix = "batch.");
// Max-abs error over the real (non-padding) rows of (batch, seq_len, width) tensors.
double worst_real_row_error(const std::vector<float>& actual, const std::vector<float>& expected, const GoldenBatch& b,
                            uint32_t width);

// What a family whose trained state is not in PEFT's adapter needs (P-tuning's encoder): `settings`
// adjusts the adapter's settings before the session opens, `weights` fills buffers after the adapter's
// weights load. Empty: neither.
struct SessionSetup {
  std::function<void(model::LoraSettings&)> settings;
  std::function<void(model::ModelSession&, const model::LoraSettings&)> weights;
};

struct GoldenRun {
  std::vector<float> logits;  // (rows, vocab)
  double loss = 0;
  std::vector<float> dembed;                            // (rows, hidden)
  std::map<std::string, std::vector<float>> gradients;  // by golden name suffix (PEFT names for LoRA)
};
// Opens `folder` with `settings` (+ the adapter of `adapter_dir` unless full finetuning or empty), runs the
// golden batch forward for logits, then forward + backward for loss and gradients.
GoldenRun run_golden(const GoldenFile& golden, const std::filesystem::path& folder,
                     const std::filesystem::path& adapter_dir, spec::RunSettings settings,
                     const SessionSetup& setup = {});

// What a variant is checked against (defaults: the fp32 bounds).
struct GoldenBounds {
  double logits = 1e-4;    // max-abs over the real (non-padding) rows
  double loss = 1e-5;      // relative
  double gradient = 1e-3;  // relative, worst LoRA (or full) gradient
  double dembed = 1e-3;    // relative
};
// Measured errors of one variant (for the report the tests print).
struct GoldenErrors {
  double logits = 0, loss = 0, gradient = 0, dembed = 0;
};
// Compares `variant` ("fp32", "nf4", ...) of `golden_path` with a run of `folder` + `adapter_dir`.
GoldenErrors check_golden_variant(const std::filesystem::path& golden_path, const std::string& variant,
                                  const std::filesystem::path& folder, const std::filesystem::path& adapter_dir,
                                  const spec::RunSettings& settings, GoldenBounds bounds,
                                  const SessionSetup& setup = {});

// The fp32 variant (plain and under gradient checkpointing) and the nf4 variant (double quant) of
// `golden_path` with the default bounds, each error reported by MESSAGE under `name`.
void check_fp32_and_nf4_variants(const std::string& name, const std::filesystem::path& golden_path,
                                 const std::filesystem::path& folder, const std::filesystem::path& adapter_dir,
                                 const SessionSetup& setup = {});

// Greedy generation with the KV cache (the prompt prefilled in blocks of 3 rows) of gen.prompt
// must give gen.ids exactly.
void check_golden_generation(const std::filesystem::path& golden_path, const std::filesystem::path& folder,
                             const std::filesystem::path& adapter_dir);

spec::RunSettings lora_run_settings(kernels::WeightFormat format);

// An fp32 LoRA session of `folder` + the PEFT adapter in `adapter_dir` (weights loaded), sized for
// `batch`: where the 20-step AdamW trajectory tests start.
struct AdapterSession {
  model::LoraSettings lora;
  std::unique_ptr<model::ModelSession> session;
};
AdapterSession open_adapter_session(const std::filesystem::path& folder, const std::filesystem::path& adapter_dir,
                                    const GoldenBatch& batch, const SessionSetup& setup = {});

// The golden's train.* trajectory (AdamW, weight decay 0.01, clipping at 1.0, constant train.lr) on
// `session` with `batch`: each step's loss and gradient norm within 1e-4 relative (CHECKed); the
// worst relative errors.
struct TrajectoryErrors {
  double loss = 0, grad_norm = 0;
};
TrajectoryErrors check_adamw_trajectory(const GoldenFile& golden, const GoldenBatch& batch,
                                        model::ModelSession& session);

// The encoder PEFT does not save (P-tuning's prompt encoder, prefix tuning's prefix_projection encoder),
// trained (train_encoder) from the golden's initial parameters, init.<buffer> (model::prompt_encoder_tensors).
SessionSetup with_golden_encoder(const GoldenFile& golden);

// A prompt-learning case's 20-step trajectory (check_adamw_trajectory on open_adapter_session), its
// errors MESSAGEd under `name`; with VKT_WRITE_SOFT_PROMPT set, the trained adapter and its logits
// written into `written` (write_adapter_and_logits) for the reference script's --check-vktune.
void check_trajectory_and_write(const std::string& name, const GoldenFile& golden, const std::filesystem::path& folder,
                                const std::filesystem::path& adapter_dir, const std::filesystem::path& written,
                                const SessionSetup& setup = {});

// For a reference script's PEFT load check: saves `lora`'s adapter of `session` into OUT/adapter and
// the logits of `folder` + that adapter on the golden batch into OUT/logits.safetensors.
void write_adapter_and_logits(const GoldenFile& golden, const model::ModelSession& session,
                              const model::LoraSettings& lora, const std::filesystem::path& folder,
                              const std::filesystem::path& out);

// `vktune export` of `folder` + `adapter` into a temporary OUTPUT_NAME folder, run alone (no adapter)
// on the golden batch: the max-abs error of its logits against the golden's fp32 logits (real rows).
double exported_logits_error(const GoldenFile& golden, const std::filesystem::path& folder,
                             const std::filesystem::path& adapter, const std::string& output_name);

// The reference script's verdict on `name` in `report` (peft_load_check.json: passed, logits within
// 1e-4), and the committed adapter in WRITTEN/adapter still reads, in vktune, to WRITTEN/logits.safetensors.
void check_peft_load(const nlohmann::json& report, const std::string& name, const GoldenFile& golden,
                     const std::filesystem::path& folder, const std::filesystem::path& written);

}  // namespace vkt::test
