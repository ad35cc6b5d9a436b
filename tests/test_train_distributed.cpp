// Data-parallel training (engine/train/distributed.hpp): the batcher's sharding, the device each
// rank picks, and, when this build has MPI and CMake found its launcher, `mpirun -np 2 vktune train`
// against one process over the same rows.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "engine/base/files.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/train/batcher.hpp"
#include "engine/train/distributed.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

std::vector<train::TokenizedExample> numbered_examples(uint32_t count) {
  std::vector<train::TokenizedExample> examples;
  for (uint32_t i = 0; i < count; i++) examples.push_back({{i + 1, 100 + i}, {0.0f, 1.0f}});
  return examples;
}

// The first token of each row of a micro-batch: which example it holds.
std::vector<uint32_t> row_heads(const train::MicroBatch& batch) {
  std::vector<uint32_t> heads;
  for (uint32_t row = 0; row < batch.batch; row++) heads.push_back(batch.ids[size_t(row) * batch.seq_len]);
  return heads;
}

// VKT_TEST_VKTUNE / VKT_TEST_MPIEXEC run these tests against another build's vktune and its MPI
// launcher (bench/data_parallel.md: MPICH's, with this Open MPI test binary).
std::string vktune() {
  const char* other = std::getenv("VKT_TEST_VKTUNE");
  return other ? std::string(other) : (test::binary_dir() / "vktune").string();
}

// The tiny model and a 24-line dataset the runs below train on.
struct Inputs {
  fs::path root, model, data;
};
Inputs mpi_inputs() {
  Inputs inputs;
  inputs.root = test::binary_dir() / "test-output" / "mpi";
  fs::create_directories(inputs.root);
  inputs.model = test::tiny_model(inputs.root / "model");
  inputs.data = test::tiny_dataset(inputs.root / "data.jsonl", 24);
  return inputs;
}

// The launcher CMake found (Open MPI's mpirun or MPICH's mpiexec) with its flags, ready for "-np N
// PROGRAM" (children open lavapipe: no LeakSanitizer, whose unloaded-module leak at exit would fail them).
std::string mpiexec() {
  const char* other = std::getenv("VKT_TEST_MPIEXEC");
  return std::string("ASAN_OPTIONS=detect_leaks=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ") +
         (other ? std::string(other) : std::string(VKT_MPIEXEC) + " " + VKT_MPIEXEC_FLAGS) + " ";
}

// `mpirun -np 2 vktune train` on the tiny model and data, then `flags`.
std::string mpirun_train(const Inputs& inputs, const std::string& flags) {
  return mpiexec() + "-np 2 " + vktune() + " train --model " + inputs.model.string() + " --data " +
         inputs.data.string() + " --headless " + flags;
}

// Why an MPI test cannot run here ("" when it can).
std::string mpi_missing() {
  if (!train::mpi_built()) return "built without MPI (install libopenmpi-dev and reconfigure)";
  if (!std::getenv("VKT_TEST_MPIEXEC") && (std::string(VKT_MPIEXEC).empty() || !fs::exists(VKT_MPIEXEC)))
    return "CMake found no MPI launcher (install openmpi-bin and reconfigure)";
  return "";
}

// The inputs, or nullopt (with a SKIPPED message) when the MPI tests cannot run here.
std::optional<Inputs> mpi_run_inputs() {
  const std::string missing = mpi_missing();
  if (!missing.empty()) {
    MESSAGE("SKIPPED: " << missing);
    return std::nullopt;
  }
  return mpi_inputs();
}

// The step lines' losses of OUTPUT/metrics.jsonl, in order.
std::vector<double> step_losses(const fs::path& output) {
  std::vector<double> losses;
  std::ifstream in(output / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    nlohmann::json entry = nlohmann::json::parse(line);
    if (entry.contains("loss") && entry.contains("grad_norm")) losses.push_back(entry["loss"].get<double>());
  }
  return losses;
}

// Every adapter tensor, concatenated in file order.
std::vector<float> adapter_values(const fs::path& output) {
  model::SafetensorsFile file(output / "adapter_model.safetensors");
  std::vector<float> values;
  for (const model::TensorView& tensor : file.tensors()) {
    std::vector<float> part = model::to_fp32(tensor);
    values.insert(values.end(), part.begin(), part.end());
  }
  return values;
}

// Runs `command` (a `vktune train ... --output-dir ` line) into a fresh temp folder `name`, then
// `flags`; the folder. The children open lavapipe: no LeakSanitizer (its unloaded-module leak at exit).
// Its output (the ledger) is kept beside it, in NAME.log (run_log).
fs::path train_into(const std::string& command, const std::string& name, const std::string& flags) {
  const fs::path output = test::temp_dir(name);
  const std::pair<int, std::string> result =
      test::run_command("ASAN_OPTIONS=detect_leaks=0 " + command + output.string() + " " + flags + " 2>&1");
  INFO(result.second);
  REQUIRE(result.first == 0);
  write_file_atomically(output.string() + ".log", result.second);
  return output;
}
std::string run_log(const fs::path& output) { return read_text_file(output.string() + ".log"); }
// Resumes the finished run in `finished` (`command` + `flags`) from its checkpoint before
// checkpoint-`last`, in a copy without its final `weights` file: they end bit-identical.
void check_resume_bit_identical(const std::string& command, const fs::path& finished, const std::string& flags,
                                const std::string& weights, int last) {
  const fs::path resumed = test::temp_dir(finished.filename().string() + "-resumed");
  fs::copy(finished, resumed, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  fs::remove(resumed / weights);
  fs::remove_all(resumed / ("checkpoint-" + std::to_string(last)));
  const std::pair<int, std::string> result =
      test::run_command("ASAN_OPTIONS=detect_leaks=0 " + command + resumed.string() + " " + flags +
                        " --resume-from-checkpoint latest 2>&1");
  INFO(result.second);
  REQUIRE(result.first == 0);
  CHECK(result.second.find("resumed from") != std::string::npos);
  CHECK(read_text_file(resumed / weights) == read_text_file(finished / weights));
}
// OUTPUT's `steps` step losses, each within 1e-4 relative of EXPECTED's.
void check_losses_close(const fs::path& output, const fs::path& expected_output, size_t steps) {
  const std::vector<double> expected = step_losses(expected_output), losses = step_losses(output);
  REQUIRE(expected.size() == steps);
  REQUIRE(losses.size() == steps);
  for (size_t i = 0; i < losses.size(); i++) {
    CAPTURE(i);
    CHECK(std::abs(losses[i] - expected[i]) <= 1e-4 * std::abs(expected[i]));
  }
}
// The row of `category` in a run's "memory, planned vs measured" table ("  NAME  PLANNED  MEASURED  RATIOx").
std::string ledger_row(const std::string& log, const std::string& category) {
  const size_t at = log.find("\n  " + category + " ");
  REQUIRE(at != std::string::npos);
  return log.substr(at + 1, log.find('\n', at + 1) - at - 1);
}
// The byte values of a ledger row, in order (planned, measured).
std::vector<double> ledger_bytes(const std::string& row) {
  std::vector<double> values;
  for (size_t i = 0; i < row.size();) {
    if (!std::isdigit(static_cast<unsigned char>(row[i]))) {
      i++;
      continue;
    }
    size_t used = 0;
    const double value = std::stod(row.substr(i), &used);
    const std::string unit = row.substr(i + used, 4);
    values.push_back(value * (unit.find(" KiB") == 0 ? 1024.0 : unit.find(" MiB") == 0 ? 1048576.0 : 1.0));
    i += used;
  }
  return values;
}
// The `category` rows (optimizer_state, master_weights) of an unsharded and a 2-rank sharded run's
// logs: the sharded run measured what it planned, half the unsharded bytes (each within 10%).
void check_half_the_states(const std::string& plain_log, const std::string& sharded_log, const std::string& category) {
  const std::string plain_row = ledger_row(plain_log, category), sharded_row = ledger_row(sharded_log, category);
  MESSAGE("unsharded: " << plain_row << "\nsharded:   " << sharded_row);
  const std::vector<double> plain_bytes = ledger_bytes(plain_row), sharded_bytes = ledger_bytes(sharded_row);
  REQUIRE(plain_bytes.size() >= 2);
  REQUIRE(sharded_bytes.size() >= 2);
  CHECK(std::abs(sharded_bytes[1] - sharded_bytes[0]) <= 0.1 * sharded_bytes[0]);  // measured vs planned
  CHECK(std::abs(sharded_bytes[0] - plain_bytes[0] / 2) <= 0.1 * plain_bytes[0] / 2);
}
}  // namespace

TEST_SUITE("train_mpi") {

TEST_CASE("Batcher::shard: N ranks x batch b take the rows of 1 rank x N*b, across epoch ends") {
  train::BatcherSettings settings;
  settings.seq_len = 2;
  settings.seed = 5;
  settings.batch = 4;
  train::Batcher one(numbered_examples(10), settings);
  settings.batch = 2;
  train::Batcher rank0(numbered_examples(10), settings), rank1(numbered_examples(10), settings);
  rank0.shard(0, 2);
  rank1.shard(1, 2);
  CHECK(one.micro_batches_per_epoch() == 3);    // ceil(10 / 4)
  CHECK(rank0.micro_batches_per_epoch() == 3);  // ceil(ceil(10 / 2) / 2), as accelerate's even_batches
  for (int step = 0; step < 7; step++) {        // 28 rows: the 10-row epoch ends inside micro-batches
    std::vector<uint32_t> expected = row_heads(one.next());
    std::vector<uint32_t> sharded = row_heads(rank0.next());
    std::vector<uint32_t> theirs = row_heads(rank1.next());
    sharded.insert(sharded.end(), theirs.begin(), theirs.end());
    CAPTURE(step);
    CHECK(sharded == expected);
    CHECK(rank0.position().epoch == one.position().epoch);
    CHECK(rank0.position().next_row == one.position().next_row);
  }
}

TEST_CASE("device_for_rank: --device wins, else the local rank modulo the device count") {
  CHECK(train::device_for_rank(-1, 1, 0, 2) == -1);  // one process: the best device
  CHECK(train::device_for_rank(1, 1, 0, 2) == 1);
  CHECK(train::device_for_rank(-1, 4, 3, 2) == 1);  // 4 ranks, local rank 3, 2 devices
  CHECK(train::device_for_rank(-1, 4, 3, 8) == 3);
  CHECK(train::device_for_rank(0, 4, 3, 8) == 0);
}

TEST_CASE("vktune train under a launcher without MPI support says so") {
  if (train::mpi_built()) {
    MESSAGE("SKIPPED: this build has MPI (the message is for builds without it)");
    return;
  }
  const Inputs inputs = mpi_inputs();
  const fs::path &model = inputs.model, &data = inputs.data;
  auto [status, output] =
      test::run_command("ASAN_OPTIONS=detect_leaks=0 OMPI_COMM_WORLD_SIZE=2 " + vktune() + " train --model " +
                        model.string() + " --data " + data.string() + " --headless --max-steps 1 --output-dir " +
                        test::temp_dir("mpi-missing-out").string() + " 2>&1");
  CHECK(status != 0);
  CHECK(output.find("built without MPI, but mpirun started it as one of 2 processes") != std::string::npos);
}

// The exactness of data parallelism. Ranks differ from one process only in where gradients are
// summed: a weight gradient over n rows is one fp32 sum in the matmul of one process, two partial
// sums of n/2 rows added on the host with 2 ranks. Reordering an fp32 sum of n terms changes it by
// at most gamma_n * sum|terms| with gamma_n = n*u/(1 - n*u), u = 2^-24: here n = 4 rows x 20
// tokens = 80, so gamma_n ~ 4.8e-6 relative to sum|terms|. Adam divides each gradient by its own
// running RMS, so a relative gradient error e moves an update by at most ~2e x lr: over 4 steps of
// lr 1e-2 the adapter moves by 4e-2 per element at most, and the reordering by ~4 x 2 x 4.8e-6 x
// 1e-2 ~ 4e-7 per element (cancelling sums make e larger than gamma_n: the test allows 1e-5, 25x).
// The loss (fp32 sums of ~80 w·CE terms of ~5) moves by ~80 x 5 x 6e-8 ~ 2.4e-5 from the order
// alone, plus what the weights' drift adds: the test allows 1e-4 relative.
// With --deterministic and 1 micro-batch per rank the host sums rank 0 + rank 1, the same fp32
// additions one process makes over 2 accumulated micro-batches (grad = mb0, then grad += mb1):
// the losses and the adapter file are bit-identical.
TEST_CASE("mpirun -np 2 x batch 2 trains as 1 process x batch 4 (bound), and --deterministic as 2 x 2 accumulated") {
  const std::optional<Inputs> inputs = mpi_run_inputs();
  if (!inputs) return;
  const fs::path &model = inputs->model, &data = inputs->data;
  const std::string mpirun = mpiexec() + "-np 2 ";
  const std::string train = vktune() + " train --model " + model.string() + " --data " + data.string() +
                            " --headless --max-steps 4 --logging-steps 1 --save-steps 0 --lora-r 4 --target-modules "
                            "all-linear --learning-rate 1e-2 --lr-scheduler-type constant --seed 7 --output-dir ";
  auto run = [&](const std::string& launcher, const std::string& name, const std::string& flags) {
    return train_into(launcher + train, "mpi-" + name, flags);
  };
  const fs::path one_big = run("", "one-b4", "--per-device-train-batch-size 4");
  const fs::path two = run(mpirun, "two-b2", "--per-device-train-batch-size 2");
  const fs::path one_accumulated =
      run("", "one-b2-acc2", "--per-device-train-batch-size 2 --gradient-accumulation-steps 2");
  const fs::path two_deterministic = run(mpirun, "two-b2-det", "--per-device-train-batch-size 2 --deterministic");

  // Rank 0 alone wrote: one metrics line per step, not two.
  check_losses_close(two, one_big, 4);
  const std::vector<float> adapter = adapter_values(two), adapter_expected = adapter_values(one_big);
  REQUIRE(adapter.size() == adapter_expected.size());
  double worst = 0;
  for (size_t i = 0; i < adapter.size(); i++)
    worst = std::max(worst, std::abs(double(adapter[i]) - double(adapter_expected[i])));
  MESSAGE("2 ranks x 2 vs 1 x 4: adapter max |diff| " << worst);
  CHECK(worst <= 1e-5);

  CHECK(step_losses(two_deterministic) == step_losses(one_accumulated));
  CHECK(read_text_file(two_deterministic / "adapter_model.safetensors") ==
        read_text_file(one_accumulated / "adapter_model.safetensors"));
}

TEST_CASE("mpirun -np 2: resuming from rank 0's checkpoint ends bit-identical to the uninterrupted run") {
  const std::optional<Inputs> inputs = mpi_run_inputs();
  if (!inputs) return;
  const std::string train = mpirun_train(
      *inputs,
      "--max-steps 6 --save-steps 3 --logging-steps 1 --per-device-train-batch-size 2 --seed 7 --deterministic ");
  const fs::path whole = test::temp_dir("mpi-whole"), resumed = test::temp_dir("mpi-resumed");
  const std::pair<int, std::string> first = test::run_command(train + "--output-dir " + whole.string() + " 2>&1");
  INFO(first.second);
  REQUIRE(first.first == 0);
  // The interrupted run: the same folder up to checkpoint-3, without the final adapter.
  fs::copy(whole, resumed, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  fs::remove(resumed / "adapter_model.safetensors");
  const std::pair<int, std::string> second =
      test::run_command(train + "--output-dir " + resumed.string() + " --resume-from-checkpoint latest 2>&1");
  INFO(second.second);
  REQUIRE(second.first == 0);
  CHECK(second.second.find("resumed from") != std::string::npos);
  CHECK(read_text_file(resumed / "adapter_model.safetensors") == read_text_file(whole / "adapter_model.safetensors"));
  CHECK(step_losses(resumed) == step_losses(whole));
}

// ZeRO-1: each element's AdamW update is the unsharded one (same gradient, same norm, same
// kernel arithmetic), only which rank computes it differs, and the weights are copied, not summed:
// the sharded run is bit-identical to the unsharded one, and so are its checkpoints (gathered to
// the unsharded per-tensor layout). Resuming the sharded run is bit-identical too. The sharded run
// also sums its gradients in 1 KiB buckets (one per layer, each while the backward of the layers
// before it runs; the unsharded run: one bucket after the backward): the same bits again. Logging
// every 2nd step: a logged step is profiled, and a profiled step sums after the whole backward.
TEST_CASE("mpirun -np 2 --shard-optimizer: bit-identical to unsharded, per-rank states as planned, resumable") {
  const std::optional<Inputs> inputs = mpi_run_inputs();
  if (!inputs) return;
  const std::string train =
      mpirun_train(*inputs,
                   "--max-steps 4 --save-steps 2 --logging-steps 2 --per-device-train-batch-size 2 --lora-r 4 "
                   "--target-modules all-linear --learning-rate 1e-2 --weight-decay 0.1 --seed 7 --deterministic ");
  const fs::path plain = test::temp_dir("mpi-unsharded"), sharded = test::temp_dir("mpi-sharded"),
                 resumed = test::temp_dir("mpi-sharded-resumed");
  const std::pair<int, std::string> first = test::run_command(train + "--output-dir " + plain.string() + " 2>&1");
  INFO(first.second);
  REQUIRE(first.first == 0);
  const std::pair<int, std::string> second = test::run_command(
      train + "--shard-optimizer --ddp-bucket-cap-mb 0.001 --output-dir " + sharded.string() + " 2>&1");
  INFO(second.second);
  REQUIRE(second.first == 0);
  CHECK(step_losses(sharded) == step_losses(plain));
  {  // the exposed all-reduce time is part of the busy one, the weight all-gather in both (before,
     // only in the exposed one); busy counts each bucket from its hand-over, so the helper thread's
     // wake-ups are in both (timed from its wake-up, busy fell 1.6 ms a step short with these tiny
     // buckets while another test loaded the 2 cores)
    std::ifstream metrics(sharded / "metrics.jsonl");
    int logged = 0;
    for (std::string line; std::getline(metrics, line);) {
      const nlohmann::json entry = nlohmann::json::parse(line);
      if (!entry.contains("all_reduce_busy_s")) continue;
      logged++;
      INFO(line);
      CHECK(entry["all_reduce_s"].get<double>() <= entry["all_reduce_busy_s"].get<double>() + 1e-9);
    }
    CHECK(logged > 0);
  }
  CHECK(read_text_file(sharded / "adapter_model.safetensors") == read_text_file(plain / "adapter_model.safetensors"));
  CHECK(read_text_file(sharded / "checkpoint-2" / "optimizer.safetensors") ==
        read_text_file(plain / "checkpoint-2" / "optimizer.safetensors"));
  // Rank 0's ledger: its optimizer states are half the unsharded ones, as planned (within 10%).
  check_half_the_states(first.second, second.second, "optimizer_state");
  // The gradient buckets' host staging (every gradient + loss.step) is planned as allocated (the
  // unsharded run: the sharded one also moves its slices through the context's transfer staging).
  const std::string staging_row = ledger_row(first.second, "staging");
  MESSAGE("staging: " << staging_row);
  const std::vector<double> staging_bytes = ledger_bytes(staging_row);
  REQUIRE(staging_bytes.size() >= 2);
  CHECK(staging_bytes[0] > 0);
  CHECK(std::abs(staging_bytes[1] - staging_bytes[0]) <= 0.01 * staging_bytes[0]);

  fs::copy(sharded, resumed, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  fs::remove(resumed / "adapter_model.safetensors");
  fs::remove_all(resumed / "checkpoint-4");
  const std::pair<int, std::string> third = test::run_command(
      train + "--shard-optimizer --output-dir " + resumed.string() + " --resume-from-checkpoint latest 2>&1");
  INFO(third.second);
  REQUIRE(third.first == 0);
  CHECK(third.second.find("resumed from") != std::string::npos);
  CHECK(read_text_file(resumed / "adapter_model.safetensors") == read_text_file(sharded / "adapter_model.safetensors"));
}

// adamw_8bit under ZeRO-1: the slices end on whole 256-element blocks, each part of a tensor
// >= 4096 elements (plan::optimizer_shard_bounds), so every part is quantized in the blocks of the
// whole tensor by the same 8-bit path: bit-identical to unsharded, checkpoints included (gathered
// to the unsharded U8 layout), and resumable. Full finetuning of a hidden-64 model with 384-wide
// MLPs: the 2-rank boundary falls inside layer 0's down_proj (24576 elements) on a block, 16384
// elements in; the 8-bit states of the embedding and the MLPs, fp32 ones for the smaller tensors.
TEST_CASE("mpirun -np 2 --shard-optimizer --optim adamw_8bit: bit-identical to unsharded, as planned, resumable") {
  if (!mpi_run_inputs()) return;
  test::TinyModelOptions options;
  options.hidden = 64;
  options.intermediate = 384;
  const fs::path root = test::binary_dir() / "test-output" / "mpi";
  const fs::path model = test::tiny_model(root / "model-h64", options);
  const std::string train =
      mpiexec() + "-np 2 " + vktune() + " train --model " + model.string() + " --data " +
      (root / "data.jsonl").string() +
      " --headless --max-steps 4 --save-steps 2 --logging-steps 2 --per-device-train-batch-size 2 "
      "--method full --optim adamw_8bit --learning-rate 1e-3 --seed 7 --deterministic --output-dir ";
  const fs::path plain = train_into(train, "mpi-8bit", ""),
                 sharded = train_into(train, "mpi-8bit-sharded", "--shard-optimizer");
  CHECK(step_losses(sharded) == step_losses(plain));
  CHECK(read_text_file(sharded / "model.safetensors") == read_text_file(plain / "model.safetensors"));
  CHECK(read_text_file(sharded / "checkpoint-2" / "optimizer.safetensors") ==
        read_text_file(plain / "checkpoint-2" / "optimizer.safetensors"));
  check_half_the_states(run_log(plain), run_log(sharded), "optimizer_state");  // rank 0's ledger
  check_resume_bit_identical(train, sharded, "--shard-optimizer", "model.safetensors", 4);
}

TEST_CASE("mpirun: a rank that fails stops every rank with its message") {
  const std::optional<Inputs> inputs = mpi_run_inputs();
  if (!inputs) return;
  const fs::path &model = inputs->model, &data = inputs->data;
  const std::string output = test::temp_dir("mpi-failing").string();
  // MPMD: rank 1 gets a data file that does not exist; rank 0 waits for it in the first collective.
  const std::string common = " train --model " + model.string() + " --headless --max-steps 2 --output-dir " + output;
  const std::pair<int, std::string> result =
      test::run_command(mpiexec() + "-np 1 " + vktune() + common + " --data " + data.string() + " : -np 1 " + vktune() +
                        common + " --data " + (inputs->root / "missing.jsonl").string() + " 2>&1");
  const std::string& log = result.second;
  INFO(log);
  CHECK(result.first != 0);
  CHECK(log.find("error: rank 1 of 2:") != std::string::npos);
  CHECK(log.find("missing.jsonl") != std::string::npos);
  CHECK(log.find("every rank stops") != std::string::npos);
}

// Full finetuning in 16 bits: the weights are bf16/fp16, their gradients and masters fp32
// (plan.cpp's trainable()), so the ranks sum fp32 gradients as for LoRA; what differs is only
// where they are summed. --bf16 --deterministic, 1 micro-batch per rank: rank 0 + rank 1 are the
// fp32 additions of 1 process accumulating 2 micro-batches, so the 16-bit model file and the
// losses are bit-identical. --fp16, 2 ranks x 1 row vs 1 process x 2 rows, MPI_Allreduce: the
// fp32 masters differ by the reordering (~gamma_n x lr, well under 1e-6 relative), so a 16-bit
// weight either rounds the same way or (its master near a rounding boundary) one ulp apart:
// every weight within 1 fp16 ulp (2^-10 relative), the loss (scaled by 65536 in the backward
// only) within 1e-4 relative. The loss scaler's skip decision is global (StepRunner::step).
// --bf16 --deterministic again with --shard-optimizer (ZeRO-1): each rank keeps the fp32 masters of
// its slice only ("master.shard", started from the file's fp32 values as unsharded masters are),
// updates them, writes their 16-bit copies, and the 16-bit weights are all-gathered: every
// element's update and rounding are the unsharded ones, so the model, the checkpoint (its masters
// gathered) and the states are bit-identical; masters and states per rank are half, as planned.
TEST_CASE("mpirun -np 2 --method full --bf16/--fp16: as one process (bit-identical with --deterministic), sharded") {
  const std::optional<Inputs> inputs = mpi_run_inputs();
  if (!inputs) return;
  const std::string train = vktune() + " train --model " + inputs->model.string() + " --data " + inputs->data.string() +
                            " --headless --max-steps 2 --logging-steps 1 --save-steps 1 --method full "
                            "--learning-rate 1e-3 --lr-scheduler-type constant --seed 7 --output-dir ";
  auto run = [&](const std::string& launcher, const std::string& name, const std::string& flags) {
    return train_into(launcher + train, "mpi-full-" + name, flags);
  };
  const std::string two_ranks = mpiexec() + "-np 2 ";
  const fs::path bf16_two = run(two_ranks, "bf16-two", "--bf16 --per-device-train-batch-size 1 --deterministic");
  const fs::path bf16_one =
      run("", "bf16-one", "--bf16 --per-device-train-batch-size 1 --gradient-accumulation-steps 2");
  REQUIRE(step_losses(bf16_one).size() == 2);
  CHECK(step_losses(bf16_two) == step_losses(bf16_one));
  CHECK(read_text_file(bf16_two / "model.safetensors") == read_text_file(bf16_one / "model.safetensors"));
  const fs::path bf16_sharded =
      run(two_ranks, "bf16-sharded", "--bf16 --per-device-train-batch-size 1 --deterministic --shard-optimizer");
  CHECK(step_losses(bf16_sharded) == step_losses(bf16_two));
  for (const char* file :
       {"model.safetensors", "checkpoint-1/model.safetensors", "checkpoint-1/optimizer.safetensors"}) {
    CAPTURE(file);
    CHECK(read_text_file(bf16_sharded / file) == read_text_file(bf16_two / file));
  }
  check_half_the_states(run_log(bf16_two), run_log(bf16_sharded), "optimizer_state");
  check_half_the_states(run_log(bf16_two), run_log(bf16_sharded), "master_weights");
  check_resume_bit_identical(two_ranks + train, bf16_sharded,
                             "--bf16 --per-device-train-batch-size 1 --deterministic --shard-optimizer",
                             "model.safetensors", 2);

  const fs::path fp16_two = run(two_ranks, "fp16-two", "--fp16 --per-device-train-batch-size 1");
  const fs::path fp16_one = run("", "fp16-one", "--fp16 --per-device-train-batch-size 2");
  check_losses_close(fp16_two, fp16_one, 2);
  model::SafetensorsFile two_file(fp16_two / "model.safetensors"), one_file(fp16_one / "model.safetensors");
  size_t differing = 0, total = 0;
  double worst_ulps = 0;
  for (const model::TensorView& tensor : one_file.tensors()) {
    const std::vector<float> a = model::to_fp32(tensor), b = model::to_fp32(two_file.tensor(tensor.name));
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); i++) {
      const double ulp = std::ldexp(1.0, std::ilogb(std::max({std::abs(a[i]), std::abs(b[i]), 6.1e-5f})) - 10);
      worst_ulps = std::max(worst_ulps, std::abs(double(a[i]) - double(b[i])) / ulp);
      differing += a[i] != b[i];
    }
    total += a.size();
  }
  MESSAGE("--fp16, 2 ranks x 1 vs 1 x 2: " << differing << " of " << total << " weights differ, at most " << worst_ulps
                                           << " fp16 ulp");
  CHECK(worst_ulps <= 1.0);
}

// The step lines' values of `name` in OUTPUT/metrics.jsonl, in order.
std::vector<double> step_metric(const fs::path& output, const std::string& name) {
  std::vector<double> values;
  std::ifstream in(output / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    nlohmann::json entry = nlohmann::json::parse(line);
    if (entry.contains(name) && entry.contains("grad_norm")) values.push_back(entry[name].get<double>());
  }
  return values;
}

// KTO under mpirun: KTOTrainer (under accelerate) uses the mean of the ranks' KL estimates,
// gather(kl).mean().clamp(min=0), not each rank's own, and logs rewards over every rank's rows. Against one process accumulating the same two
// micro-batches (rank r takes micro-batch r), trained in this process (no second launch): with
// --deterministic step 1 is the same (KL 0: B = 0, policy = reference) and so are the step-2 weights;
// at step 2 the 2-rank run's KL is (k0 + k1) / 2 over the two micro-batches' estimates, the same double
// the accumulated run logs as the mean of its micro-batches' (each clamped at 0 there, so equal when both
// are positive: every label desirable raises the completions' log-probs, the mismatched pairs' too).
// Each rank keeping its own would log k0 instead. (The step-2 loss may then differ: one KL for both
// halves instead of one each, as in TRL.)
TEST_CASE("mpirun -np 2 --objective kto: the KL estimate is the mean over ranks, as KTOTrainer's") {
  const std::optional<Inputs> inputs = mpi_run_inputs();
  if (!inputs) return;
  const fs::path data = inputs->root / "kto.jsonl";
  {
    std::ofstream kto(data);
    const char* prompts[] = {"one plus one is", "the sky is", "two and two make",   "grass is",
                             "the sea is",      "snow is",    "three and one make", "the sun is"};
    const char* completions[] = {" two", " blue", " four", " green", " deep", " white", " four", " hot"};
    for (int i = 0; i < 8; i++)
      kto << nlohmann::json{{"prompt", prompts[i]}, {"completion", completions[i]}, {"label", true}}.dump() << "\n";
  }
  const fs::path two = train_into(mpiexec() + "-np 2 " + vktune() + " train --model " + inputs->model.string() +
                                      " --data " + data.string() +
                                      " --headless --max-steps 2 --logging-steps 1 --save-steps 0 --lora-r 4 "
                                      "--target-modules all-linear --learning-rate 2e-2 --lr-scheduler-type constant "
                                      "--seed 7 --deterministic --objective kto --per-device-train-batch-size 2 "
                                      "--output-dir ",
                                  "mpi-kto-two", "");
  train::TrainConfig one;
  one.model = inputs->model.string();
  one.data = data.string();
  one.output_dir = test::temp_dir("mpi-kto-one").string();
  one.headless = true;
  one.max_steps = 2;
  one.logging_steps = 1;
  one.save_steps = 0;
  one.lora_r = 4;
  one.target_modules = "all-linear";
  one.learning_rate = 2e-2;
  one.lr_scheduler_type = train::ScheduleType::constant;
  one.seed = 7;
  one.deterministic = true;
  one.objective = "kto";
  one.per_device_train_batch_size = 2;
  one.gradient_accumulation_steps = 2;
  train::train(one);
  const std::vector<double> kl_two = step_metric(two, "kl"), kl_one = step_metric(one.output_dir, "kl");
  REQUIRE(kl_one.size() == 2);
  REQUIRE(kl_two.size() == 2);
  MESSAGE("KTO step-2 KL: 2 ranks " << kl_two[1] << ", 1 process accumulating " << kl_one[1]);
  CHECK(kl_two[0] == 0.0);
  CHECK(kl_one[1] > 0.0);
  CHECK(kl_two[1] == kl_one[1]);
  CHECK(step_losses(two)[0] == step_losses(one.output_dir)[0]);
  // Its reward metrics are over both ranks' examples (TRL gathers their sums and counts): with 2 rows
  // per micro-batch, (s0 + s1) / 4, as the accumulated mean (s0 / 2 + s1 / 2) / 2 up to rounding.
  for (const char* metric : {"rewards/chosen", "logps/chosen"}) {
    CAPTURE(metric);
    const double value_two = step_metric(two, metric)[1], value_one = step_metric(one.output_dir, metric)[1];
    CHECK(std::abs(value_two - value_one) <= 1e-6 * std::abs(value_one));
  }
}

TEST_CASE("mpirun -np 2 vktune sweep: each rank trains its own trials alone, rank 0 writes the results") {
  const std::optional<Inputs> inputs = mpi_run_inputs();
  if (!inputs) return;
  const fs::path dir = test::temp_dir("mpi-sweep");
  write_file_atomically(dir / "grid.yaml", "output_dir: " + (dir / "sweep").string() + "\ntrain: {model: " +
                                               inputs->model.string() + ", data: " + inputs->data.string() +
                                               ", per_device_train_batch_size: 2, logging_steps: 1, save_steps: 0}\n"
                                               "objective: train_loss\nbudget: {steps: 2}\n"
                                               "parameters:\n  learning_rate: [1e-3, 2e-3]\n  lora_r: [4, 8]\n");
  const std::pair<int, std::string> run =
      test::run_command(mpiexec() + "-np 2 " + vktune() + " sweep " + (dir / "grid.yaml").string() + " 2>&1");
  const std::string& output = run.second;
  CAPTURE(output);
  REQUIRE(run.first == 0);
  // Rank 0 ran trials 1 and 3, rank 1 trials 2 and 4, each in its own state file.
  auto indices = [](const fs::path& file) {
    std::vector<int64_t> found;
    const nlohmann::json state = nlohmann::json::parse(read_text_file(file));
    for (const auto& trial : state.at("trials")) found.push_back(trial.at("index").get<int64_t>());
    return found;
  };
  CHECK(indices(dir / "sweep" / "sweep_state.json") == std::vector<int64_t>{1, 3});
  CHECK(indices(dir / "sweep" / "sweep_state.rank1.json") == std::vector<int64_t>{2, 4});
  // Each trial trained alone (not data parallel with the other rank): its own two steps, one rank.
  for (const char* trial : {"trial-001", "trial-002", "trial-003", "trial-004"}) {
    CAPTURE(trial);
    std::ifstream metrics(dir / "sweep" / trial / "metrics.jsonl");
    int steps = 0;
    for (std::string line; std::getline(metrics, line);) {
      nlohmann::json entry = nlohmann::json::parse(line);
      if (entry.contains("grad_norm")) {
        steps++;
        CHECK_FALSE(entry.contains("rank_step_time_s"));
      }
    }
    CHECK(steps == 2);
  }
  // Rank 0 printed and wrote the whole table: four finished trials and a best config.
  const std::string csv = read_text_file(dir / "sweep" / "results.csv");
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 5);  // header + 4 trials
  CHECK(fs::exists(dir / "sweep" / "best_config.yaml"));
  CHECK(output.find("best config:") != std::string::npos);
}

}  // TEST_SUITE
