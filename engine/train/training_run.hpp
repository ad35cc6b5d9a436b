#pragma once
// The state of one `vktune train` run, shared by trainer.cpp (the step loop, checkpoints, logging)
// and training_run_setup.cpp (data, device, model and optimizer set-up). Internal to engine/train.
#include <signal.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/base/progress.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/optimizer.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/config.hpp"
#include "engine/model/gguf_model.hpp"
#include "engine/model/gguf_tokenizer.hpp"
#include "engine/model/gguf_weights.hpp"
#include "engine/model/ia3.hpp"
#include "engine/model/lora_init.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/session.hpp"
#include "engine/model/transformer.hpp"
#include "engine/model/weights.hpp"
#include "engine/text/tokenizer.hpp"
#include "engine/train/advice.hpp"
#include "engine/train/batcher.hpp"
#include "engine/train/checkpoint.hpp"
#include "engine/train/data_mixture.hpp"
#include "engine/train/dataset.hpp"
#include "engine/train/distill.hpp"
#include "engine/train/distributed.hpp"
#include "engine/train/early_stopping.hpp"
#include "engine/train/fim.hpp"
#include "engine/train/loss_scaler.hpp"
#include "engine/train/mixed_precision.hpp"
#include "engine/train/preference.hpp"
#include "engine/train/run_identity.hpp"
#include "engine/train/schedule.hpp"
#include "engine/train/step_runner.hpp"
#include "engine/train/trainer.hpp"

namespace vkt::train {

class TrainingRun {
 public:
  TrainingRun(const TrainConfig& config, RunMonitor* monitor) : config_(config), monitor_(monitor) {}
  TrainSummary run();

 private:
  void prepare_data();
  void prepare_device();
  uint64_t device_budget() const;  // --device-memory, else the device's VK_EXT_memory_budget (0: unknown)
  void preflight();
  int64_t resume();
  uint32_t train_step(int64_t step, bool profile);  // the step's non-finite flags
  void log_step(int64_t step, double elapsed);
  double evaluate(const std::vector<TokenizedExample>& examples);
  // Evaluates, logs the result and tells the best-model tracker (kept: a checkpoint is saved at
  // this step); true when early stopping asks the run to stop.
  bool evaluate_and_log(int64_t step, double elapsed, bool kept);
  void load_best_weights(int64_t final_step);
  TrainableState trainable() const;  // what checkpoints save and restore
  void save_checkpoint(int64_t step);
  void write_run_json(RunState state);
  void append_metrics(const std::string& line);
  std::filesystem::path output_dir() const { return std::filesystem::path(config_.output_dir); }

  TrainConfig config_;
  RunMonitor* monitor_;
  // Data parallel (mpirun): rank 0 alone writes the output folder. A sweep trial trains alone.
  Communicator& ranks_ = config_.single_process ? single_process() : world();
  RunMonitor own_monitor_;
  model::ModelConfig model_config_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::vector<TokenizedExample> train_examples_;
  std::vector<std::pair<EvalSet, std::vector<TokenizedExample>>> eval_sets_;  // --eval-data, in order
  std::unique_ptr<DataMixture> mixture_;                                      // --data FILE:weight,...
  std::unique_ptr<Batcher> batcher_;
  uint32_t seq_len_ = 0;
  int64_t max_steps_ = 0, accumulation_ = 1;
  plan::MemoryPlan plan_;
  std::unique_ptr<Schedule> schedule_;
  LossScaler scaler_{false};  // --fp16's dynamic loss scale (set up in prepare_device)
  RunInfo info_;

  std::unique_ptr<vk::Context> context_;
  std::unique_ptr<model::ModelSession> session_;
  model::BufferSet* buffers_ = nullptr;
  model::Transformer* transformer_ = nullptr;
  model::LoraSettings lora_;
  model::InitialLora initial_lora_;  // --init-lora-weights: its name, PiSSA/OLoRA's A0/B0 for the final save
  std::unique_ptr<StepRunner> runner_;
  std::unique_ptr<PreferenceRunner> preference_;  // --objective dpo/orpo
  std::unique_ptr<Teacher> teacher_;              // --objective distill: the frozen teacher (distill.hpp)
  std::unique_ptr<BestModelTracker> best_;

  // Progress.
  int64_t tokens_ = 0;
  LoggingWindow window_;
  double elapsed_before_ = 0;
  std::chrono::steady_clock::time_point started_;
  double first_loss_ = NAN, last_loss_ = NAN, last_eval_ = -1;
};

}  // namespace vkt::train
