// Knowledge distillation (engine/train/distill.hpp, kernels::distill_loss inside the student's
// chunked loss): the loss and every LoRA gradient of the tiny Llama 3 student (tests/data/hf/llama3
// + adapter) distilled from a bigger random Llama teacher (hidden 48, 3 layers) against torch
// (tests/reference/distill_golden.py wrote tests/data/distill/), and the tokenizer checks.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/kernels/optimizer.hpp"
#include "engine/train/distill.hpp"
#include "engine/train/monitor.hpp"
#include "engine/train/step_runner.hpp"
#include "engine/train/trainer.hpp"
#include "tests/golden_file.hpp"
#include "tests/golden_run.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
using namespace vkt::train;
namespace fs = std::filesystem;

TEST_SUITE("train_distill") {

TEST_CASE("distill: loss and LoRA gradients of a student distilled from a bigger teacher match torch") {
  const fs::path data = test::source_dir() / "tests/data";
  test::GoldenFile golden(data / "distill/distill.golden.bin");
  test::GoldenBatch batch = test::golden_batch(golden);
  const fs::path folder = data / "hf/llama3";
  test::AdapterSession opened = test::open_adapter_session(folder, folder / "adapter", batch);
  auto& ctx = test::context();
  auto& session = *opened.session;
  auto& buffers = *session.buffers;
  DistillSettings settings;
  settings.teacher = data / "distill/teacher";
  settings.temperature = golden["temperature"].scalar();
  settings.alpha = golden["alpha"].scalar();
  std::unique_ptr<Teacher> teacher = open_teacher(ctx, session, settings);
  CHECK(teacher->session->config.hidden_size == 48);
  CHECK(teacher->session->config.num_hidden_layers == 3);
  // The teacher's own forward (its logits) against transformers': fp32 over 3 layers.
  const uint32_t vocab = static_cast<uint32_t>(session.config.vocab_size);
  {
    model::BufferSet& inputs = *teacher->session->buffers;  // an inference plan: ids, positions, segments
    ctx.upload(inputs.buffer("input.ids"), batch.ids.data(), 0, batch.ids.size() * 4);
    ctx.upload(inputs.buffer("input.positions"), batch.positions.data(), 0, batch.positions.size() * 4);
    ctx.upload(inputs.buffer("input.segments"), batch.segments.data(), 0, batch.segments.size() * 4);
    test::Guarded logits(size_t(batch.batch) * batch.seq_len * vocab * 4, "teacher logits");
    ctx.run([&](vk::Recorder& r) { teacher->session->transformer->record_logits(r, logits.range()); });
    const double error = test::worst_real_row_error(logits.floats(), golden["teacher.logits"].floats(), batch, vocab);
    INFO("teacher logits max-abs error " << error << " (bound 1e-4, the golden tests' fp32 logits bound)");
    CHECK(error <= 1e-4);
  }
  StepRunner runner(ctx, session, OptimizerSettings{});
  runner.reset();
  runner.upload(batch);
  kernels::StepState state;
  state.spare[0] = static_cast<float>(1.0 / batch.weight_sum);
  kernels::write_step_state(ctx, buffers.buffer("step_state"), state);
  ctx.run([&](vk::Recorder& r) {
    session.transformer->record_forward(r, true, true);
    session.transformer->record_backward(r);
  });
  const double loss = test::download(buffers.buffer("loss.step"), 1)[0] / batch.weight_sum;
  const double expected_loss = golden["loss"].scalar();
  INFO("loss " << loss << " vs torch " << expected_loss << ", relative error "
               << std::fabs(loss - expected_loss) / expected_loss << " (bound 1e-5, the golden loss bound)");
  CHECK(std::fabs(loss - expected_loss) <= 1e-5 * expected_loss);
  size_t compared = 0, expected = 0;
  double worst = 0;
  for (const auto& spec : session.plan.buffers) {
    if (spec.category != vk::Category::gradients) continue;
    const std::string key = "grad.base_model.model." + spec.name.substr(5) + ".weight";
    REQUIRE_MESSAGE(golden.has(key), "golden has no " << key);
    worst = std::max(worst, test::relative_error(test::download(buffers.buffer(spec.name)), golden[key].floats()));
    compared++;
  }
  for (const auto& [tensor, value] : golden.tensors()) expected += tensor.rfind("grad.", 0) == 0;
  INFO(compared << " LoRA gradients, worst relative error " << worst << " (bound 1e-3, today's golden bound)");
  CHECK(compared == expected);
  CHECK(compared > 0);
  CHECK(worst <= 1e-3);
}

TEST_CASE("distill: a teacher with another tokenizer or vocabulary is refused, naming both files") {
  const fs::path student = test::temp_dir("distill_student"), teacher = test::temp_dir("distill_teacher");
  const fs::path fixture = test::source_dir() / "tests/data/hf/llama3/config.json";
  for (const fs::path& dir : {student, teacher}) fs::copy_file(fixture, dir / "config.json");
  const std::string tokenizer = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}})";
  write_file_atomically(student / "tokenizer.json", tokenizer);
  write_file_atomically(teacher / "tokenizer.json", tokenizer);
  CHECK_NOTHROW(check_same_tokenizer(student, teacher));
  // The same vocabulary written differently (spacing) is the same tokenizer.
  write_file_atomically(teacher / "tokenizer.json", R"({"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":[]}})");
  CHECK_NOTHROW(check_same_tokenizer(student, teacher));
  write_file_atomically(teacher / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 1, "b": 0}}})");
  try {
    check_same_tokenizer(student, teacher);
    FAIL("different vocabularies accepted");
  } catch (const UserError& error) {
    const std::string message = error.what();
    CHECK(message.find((student / "tokenizer.json").string()) != std::string::npos);
    CHECK(message.find((teacher / "tokenizer.json").string()) != std::string::npos);
  }
  fs::remove(teacher / "tokenizer.json");
  CHECK_THROWS_AS(check_same_tokenizer(student, teacher), UserError);
  fs::remove(student / "tokenizer.json");
  CHECK_NOTHROW(check_same_tokenizer(student, teacher));  // fixtures without tokenizer.json: vocab_size decides
  std::string config = read_text_file(teacher / "config.json");
  config.replace(config.find("\"vocab_size\": 128"), 17, "\"vocab_size\": 256");
  write_file_atomically(teacher / "config.json", config);
  try {
    check_same_tokenizer(student, teacher);
    FAIL("different vocab_size accepted");
  } catch (const UserError& error) {
    const std::string message = error.what();
    CHECK(message.find((teacher / "config.json").string()) != std::string::npos);
  }
}

TEST_CASE("distill: a short LoRA run of a tiny student from a bigger teacher of the same tokenizer") {
  const fs::path root = test::temp_dir("distill_e2e");
  train::TrainConfig config = test::tiny_random_lora_config(root, "distill_e2e_out");
  test::TinyModelOptions teacher_options;
  teacher_options.hidden = 48;
  teacher_options.layers = 3;
  teacher_options.seed = 5;
  config.objective = "distill";
  config.teacher = test::tiny_model(root / "teacher", teacher_options).string();
  config.distill_temperature = 2;
  config.distill_alpha = 0.5;
  config.max_steps = 4;
  train::TrainSummary summary = train::train(config);
  CHECK(summary.steps == 4);
  CHECK(std::isfinite(summary.first_loss));
  CHECK(std::isfinite(summary.last_loss));
  // The teacher's plan is what its session allocates: the ledger's peak is the student's plan plus it.
  const plan::MemoryPlan teacher = teacher_plan(summary.plan.settings, distill_settings(config));
  CHECK(teacher.bytes(vk::Category::base_weights) > 0);
  CHECK(summary.measured.total_peak == summary.plan.total_bytes() + teacher.total_bytes());
  // metrics.jsonl logs the loss's parts (loss = alpha·distill/kl + (1 - alpha)·distill/ce, summed in fp32
  // over the same rows in another order).
  std::ifstream metrics(fs::path(config.output_dir) / "metrics.jsonl");
  size_t logged = 0;
  for (std::string line; std::getline(metrics, line);) {
    const nlohmann::json entry = nlohmann::json::parse(line);
    if (!entry.contains("loss")) continue;
    REQUIRE(entry.contains("distill/kl"));
    REQUIRE(entry.contains("distill/ce"));
    const double loss = entry["loss"], kl = entry["distill/kl"], ce = entry["distill/ce"];
    INFO("step " << entry["step"] << ": loss " << loss << ", kl " << kl << ", ce " << ce);
    CHECK(kl > 0);
    CHECK(ce > 0);
    CHECK(std::fabs(0.5 * kl + 0.5 * ce - loss) <= 1e-5 * loss);
    // `vktune dashboard` reads them back as the step's objective metrics.
    RunMonitor replay;
    REQUIRE(apply_metrics_line(replay, line));
    const std::vector<std::pair<std::string, double>> extra = replay.snapshot().steps.at(0).extra;
    REQUIRE(extra.size() == 2);
    CHECK(extra[0].first == "distill/ce");  // nlohmann's object order: alphabetical
    CHECK(extra[0].second == ce);
    CHECK(extra[1].first == "distill/kl");
    logged++;
  }
  CHECK(logged == 4);
  // run.json: the teacher's memory planned beside allocated, and the student's trainable kinds.
  const RunInfo info = run_info_from_json(read_text_file(fs::path(config.output_dir) / "run.json"), nullptr);
  const MemoryPart* teacher_part = nullptr;
  for (const MemoryPart& part : info.memory_parts)
    if (part.name == "teacher") teacher_part = &part;
  REQUIRE(teacher_part != nullptr);
  CHECK(teacher_part->planned == teacher.device_bytes());
  CHECK(teacher_part->measured == teacher.device_bytes());
  REQUIRE(info.trainable_parameters.size() == 2);  // LoRA A and B
  CHECK(info.trainable_parameters[0].first == "LoRA A");
  CHECK(info.trainable_parameters[1].first == "LoRA B");
  CHECK(info.trainable_parameters[0].second + info.trainable_parameters[1].second == summary.plan.parameters.trainable);
  config.teacher.clear();
  CHECK_THROWS_AS(train::train(config), UserError);  // --objective distill without --teacher
}

TEST_CASE("distill: vktune generate --data writes a teacher's answers as prompt/completion JSONL") {
  const fs::path root = test::temp_dir("distill_generate");
  const fs::path data = root / "prompts.jsonl", answers = root / "answers.jsonl", log = root / "log.txt";
  write_file_atomically(data, "{\"prompt\": \"Q: sky? \", \"completion\": \"grey\"}\n{\"text\": \"the sea\"}\n");
  const std::string command = "ASAN_OPTIONS=detect_leaks=0 " + (test::binary_dir() / "vktune").string() +
                              " generate --model " + test::tiny_model(root / "teacher").string() + " --data " +
                              data.string() + " --output " + answers.string() + " --max-new-tokens 3 >" + log.string() +
                              " 2>&1";
  const int status = std::system(command.c_str());
  INFO(read_text_file(log));
  REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  std::vector<nlohmann::json> lines;
  std::istringstream text(read_text_file(answers));
  for (std::string line; std::getline(text, line);) lines.push_back(nlohmann::json::parse(line));
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["prompt"] == "Q: sky? ");  // the prompt without its completion
  CHECK(lines[1]["prompt"] == "the sea");   // a text is all prompt
  CHECK(lines[0]["completion"].is_string());
}

TEST_CASE("distill: --teacher-adapter is applied to the teacher (student = teacher: KL 0 at alpha 1)") {
  const fs::path data = test::source_dir() / "tests/data";
  test::GoldenFile golden(data / "distill/distill.golden.bin");
  test::GoldenBatch batch = test::golden_batch(golden);
  const fs::path folder = data / "hf/llama3";
  auto& ctx = test::context();
  for (bool with_adapter : {true, false}) {
    CAPTURE(with_adapter);
    test::AdapterSession opened = test::open_adapter_session(folder, folder / "adapter", batch);
    DistillSettings settings;
    settings.teacher = folder;                                        // the student's own base ...
    if (with_adapter) settings.teacher_adapter = folder / "adapter";  // ... and its adapter: the same model
    settings.alpha = 1;
    std::unique_ptr<Teacher> teacher = open_teacher(ctx, *opened.session, settings);
    auto& buffers = *opened.session->buffers;
    StepRunner runner(ctx, *opened.session, OptimizerSettings{});
    runner.reset();
    runner.upload(batch);
    kernels::StepState state;
    state.spare[0] = static_cast<float>(1.0 / batch.weight_sum);
    kernels::write_step_state(ctx, buffers.buffer("step_state"), state);
    ctx.run([&](vk::Recorder& r) { opened.session->transformer->record_forward(r, true, true); });
    const double loss = test::download(buffers.buffer("loss.step"), 1)[0] / batch.weight_sum;
    INFO("T^2 KL " << loss);
    if (with_adapter)
      CHECK(std::fabs(loss) <= 1e-5);  // identical logits: KL 0 up to the fp32 log-sum-exps
    else
      CHECK(loss > 1e-3);  // the golden adapter's B != 0: the bare base differs from the student
  }
}
}
