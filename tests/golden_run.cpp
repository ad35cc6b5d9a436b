#include "tests/golden_run.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>

#include "engine/kernels/optimizer.hpp"
#include "engine/merge/export.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/generate.hpp"
#include "engine/model/p_tuning.hpp"
#include "engine/model/session.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/step_runner.hpp"
#include "tests/support.hpp"

namespace vkt::test {
namespace fs = std::filesystem;

double relative_error(const std::vector<float>& actual, const std::vector<float>& expected) {
  double error = 0, reference = 0;
  for (size_t i = 0; i < expected.size(); i++) {
    double d = double(actual[i]) - expected[i];
    error += d * d;
    reference += double(expected[i]) * expected[i];
  }
  return std::sqrt(error / std::max(reference, 1e-30));
}

GoldenBatch golden_batch(const GoldenFile& golden, const std::string& prefix) {
  GoldenBatch b;
  const auto& ids = golden[prefix + "ids"];
  b.batch = static_cast<uint32_t>(ids.shape[0]);
  b.seq_len = static_cast<uint32_t>(ids.shape[1]);
  auto id_values = ids.ints();
  auto weight_values = golden[prefix + "weights"].floats();
  auto position_values = golden[prefix + "positions"].ints();
  b.lengths = golden[prefix + "lengths"].ints();
  size_t n = size_t(b.batch) * b.seq_len;
  b.ids.resize(n);
  b.targets.assign(n, 0);
  b.weights.assign(n, 0.0f);
  b.positions.resize(n);
  b.segments.assign(n, 0);  // one sequence per row; right padding is causal-invisible
  for (size_t i = 0; i < n; i++) {
    b.ids[i] = static_cast<uint32_t>(id_values[i]);
    b.positions[i] = static_cast<uint32_t>(position_values[i]);
    if ((i + 1) % b.seq_len != 0) {
      b.targets[i] = static_cast<uint32_t>(id_values[i + 1]);
      b.weights[i] = weight_values[i + 1];
      b.weight_sum += weight_values[i + 1];
    }
  }
  return b;
}

double worst_real_row_error(const std::vector<float>& actual, const std::vector<float>& expected, const GoldenBatch& b,
                            uint32_t width) {
  double worst = 0;
  for (uint32_t row = 0; row < b.batch; row++)
    for (int64_t t = 0; t < b.lengths[row]; t++)
      for (uint32_t j = 0; j < width; j++) {
        size_t i = (size_t(row) * b.seq_len + size_t(t)) * width + j;
        worst = std::max(worst, std::fabs(double(actual[i]) - expected[i]));
      }
  return worst;
}

GoldenRun run_golden(const GoldenFile& golden, const fs::path& folder, const fs::path& adapter_dir,
                     spec::RunSettings settings, const SessionSetup& setup) {
  auto& ctx = context();
  GoldenBatch batch = golden_batch(golden);
  settings.batch = batch.batch;
  settings.seq_len = batch.seq_len;
  settings.training = true;
  model::LoraSettings lora;
  const bool full = settings.method == spec::Method::full;
  // A LoRA run without an adapter folder has no targets: the base model alone, under a LoRA plan.
  const bool adapter = !full && !adapter_dir.empty();
  if (adapter) lora = model::load_adapter_config(adapter_dir).settings;
  if (setup.settings) setup.settings(lora);
  auto session = model::open_model(ctx, folder, settings, full ? nullptr : &lora);
  auto& buffers = *session->buffers;
  if (adapter) model::load_adapter_weights(ctx, buffers, session->plan.shape, lora, adapter_dir);
  if (setup.weights) setup.weights(*session, lora);
  train::upload_micro_batch(ctx, buffers, batch);
  kernels::StepState state;
  state.spare[0] = static_cast<float>(1.0 / batch.weight_sum);
  kernels::write_step_state(ctx, buffers.buffer("step_state"), state);

  const uint32_t rows = batch.batch * batch.seq_len;
  const uint32_t vocab = static_cast<uint32_t>(session->config.vocab_size);
  GoldenRun run;
  vk::Buffer logits = ctx.allocate(uint64_t(rows) * vocab * 4, vk::Category::workspace, "golden.logits");
  ctx.run([&](vk::Recorder& r) { session->transformer->record_logits(r, logits.range()); });
  run.logits = download(logits);

  auto& transformer = *session->transformer;
  transformer.set_compute_input_gradient(true);
  ctx.run([&](vk::Recorder& r) {
    for (const auto& spec : session->plan.buffers)
      if (spec.category == vk::Category::gradients || spec.name == "loss.step") r.fill(buffers.range(spec.name));
  });
  ctx.run([&](vk::Recorder& r) {
    transformer.record_forward(r, true, true);
    transformer.record_backward(r);
  });
  float loss_sum = 0;
  ctx.download(buffers.buffer("loss.step"), &loss_sum, 0, 4);
  run.loss = loss_sum / batch.weight_sum;
  run.dembed = download(buffers.buffer("grad_act.residual"));
  std::map<std::string, std::string> extra_names;  // modules_to_save, trainable tokens: PEFT's saved names
  if (!full)
    for (const auto& extra : model::adapter_extra_tensors(session->plan.shape, lora))
      extra_names[extra.buffer] = extra.peft_name;
  if (!full)  // P-tuning's encoder: not in PEFT's file, the golden names it as its buffers
    for (const auto& parameter : model::prompt_encoder_tensors(session->plan.shape, lora))
      extra_names[parameter.buffer] = parameter.buffer;
  for (const auto& spec : session->plan.buffers) {
    if (spec.category != vk::Category::gradients) continue;
    std::string name = spec.name.substr(5);  // after "grad."
    // model.layers.0.self_attn.q_proj.lora_A -> PEFT's name
    std::string golden_name = full                      ? name
                              : extra_names.count(name) ? extra_names[name]
                                                        : "base_model.model." + name + ".weight";
    run.gradients[golden_name] = download(buffers.buffer(spec.name));
  }
  return run;
}

void check_fp32_and_nf4_variants(const std::string& name, const fs::path& golden_path, const fs::path& folder,
                                 const fs::path& adapter_dir, const SessionSetup& setup) {
  GoldenErrors errors = check_golden_variant(golden_path, "fp32", folder, adapter_dir,
                                             lora_run_settings(kernels::WeightFormat::f32), GoldenBounds{}, setup);
  MESSAGE(name << " fp32: logits max-abs " << errors.logits << ", loss relative " << errors.loss
               << ", worst gradient relative " << errors.gradient << ", dembed relative " << errors.dembed);
  spec::RunSettings checkpointed = lora_run_settings(kernels::WeightFormat::f32);
  checkpointed.gradient_checkpointing = true;
  check_golden_variant(golden_path, "fp32", folder, adapter_dir, checkpointed, GoldenBounds{}, setup);
  spec::RunSettings nf4 = lora_run_settings(kernels::WeightFormat::nf4);
  nf4.double_quant = true;
  errors = check_golden_variant(golden_path, "nf4", folder, adapter_dir, nf4, GoldenBounds{}, setup);
  MESSAGE(name << " nf4: logits max-abs " << errors.logits << ", loss relative " << errors.loss
               << ", worst gradient relative " << errors.gradient);
}

AdapterSession open_adapter_session(const fs::path& folder, const fs::path& adapter_dir, const GoldenBatch& batch,
                                    const SessionSetup& setup) {
  AdapterSession opened;
  opened.lora = model::load_adapter_config(adapter_dir).settings;
  if (setup.settings) setup.settings(opened.lora);
  spec::RunSettings settings = lora_run_settings(kernels::WeightFormat::f32);
  settings.batch = batch.batch;
  settings.seq_len = batch.seq_len;
  opened.session = model::open_model(context(), folder, settings, &opened.lora);
  model::load_adapter_weights(context(), *opened.session->buffers, opened.session->plan.shape, opened.lora,
                              adapter_dir);
  if (setup.weights) setup.weights(*opened.session, opened.lora);
  return opened;
}

GoldenErrors check_golden_variant(const fs::path& golden_path, const std::string& variant, const fs::path& folder,
                                  const fs::path& adapter_dir, const spec::RunSettings& settings, GoldenBounds bounds,
                                  const SessionSetup& setup) {
  GoldenFile golden(golden_path);
  GoldenBatch batch = golden_batch(golden);
  GoldenRun run = run_golden(golden, folder, adapter_dir, settings, setup);
  const std::string what = golden_path.stem().string() + " " + variant;
  GoldenErrors errors;
  const uint32_t vocab = static_cast<uint32_t>(golden[variant + ".logits"].shape[2]);
  errors.logits = worst_real_row_error(run.logits, golden[variant + ".logits"].floats(), batch, vocab);
  INFO(what << " logits: max-abs error " << errors.logits << " (bound " << bounds.logits << ")");
  CHECK(errors.logits <= bounds.logits);
  double expected_loss = golden[variant + ".loss"].scalar();
  errors.loss = std::fabs(run.loss - expected_loss) / expected_loss;
  INFO(what << " loss " << run.loss << " vs " << expected_loss);
  CHECK(errors.loss <= bounds.loss);
  errors.dembed = relative_error(run.dembed, golden[variant + ".dembed"].floats());
  INFO("dembed relative error " << errors.dembed);
  CHECK(errors.dembed <= bounds.dembed);
  size_t compared = 0;
  std::string worst_name;
  for (const auto& [name, gradient] : run.gradients) {
    std::string key = variant + ".grad." + name;
    REQUIRE_MESSAGE(golden.has(key), "golden has no " << key);
    double error = relative_error(gradient, golden[key].floats());
    if (error > errors.gradient) {
      errors.gradient = error;
      worst_name = name;
    }
    compared++;
  }
  size_t expected_gradients = 0;  // every gradient the reference computed was compared
  for (const auto& [name, tensor] : golden.tensors()) expected_gradients += name.rfind(variant + ".grad.", 0) == 0;
  INFO(what << ": " << compared << " gradients, worst relative error " << errors.gradient << " (" << worst_name << ")");
  CHECK(compared > 0);
  CHECK(compared == expected_gradients);
  CHECK(errors.gradient <= bounds.gradient);
  return errors;
}

void check_golden_generation(const fs::path& golden_path, const fs::path& folder, const fs::path& adapter_dir) {
  GoldenFile golden(golden_path);
  model::GeneratorOptions options;
  options.model = folder;
  options.adapter = adapter_dir;
  options.max_tokens = 64;
  options.prefill_rows = 3;  // the 5-token prompt runs as a 3-token and a 2-token block
  model::Generator generator(context(), options);
  std::vector<uint32_t> prompt;
  for (int64_t id : golden["gen.prompt"].ints()) prompt.push_back(static_cast<uint32_t>(id));
  model::SamplingOptions sampling;
  sampling.max_new_tokens = 20;
  std::vector<uint32_t> ids = generator.generate(prompt, sampling);
  std::vector<uint32_t> expected;
  for (int64_t id : golden["gen.ids"].ints()) expected.push_back(static_cast<uint32_t>(id));
  auto join = [](const std::vector<uint32_t>& v) {
    std::string text;
    for (uint32_t id : v) text += std::to_string(id) + " ";
    return text;
  };
  INFO(golden_path.stem().string() << " greedy generation: " << join(ids) << "vs " << join(expected));
  CHECK(ids == expected);
}

spec::RunSettings lora_run_settings(kernels::WeightFormat format) {
  spec::RunSettings settings;
  settings.method = spec::Method::lora;
  settings.base_format = format;
  return settings;
}

TrajectoryErrors check_adamw_trajectory(const GoldenFile& golden, const GoldenBatch& batch,
                                        model::ModelSession& session) {
  train::OptimizerSettings optimizer;
  optimizer.weight_decay = 0.01;
  optimizer.max_grad_norm = 1.0;
  train::StepRunner runner(context(), session, optimizer);
  runner.reset();
  const double lr = golden["train.lr"].scalar();
  auto losses = golden["train.loss"].floats();
  auto norms = golden["train.grad_norm"].floats();
  TrajectoryErrors worst;
  for (size_t step = 0; step < losses.size(); step++) {
    runner.step(int64_t(step) + 1, lr, {batch});
    double loss = runner.take_loss_sum(), norm = runner.device_state().grad_norm;
    worst.loss = std::max(worst.loss, std::fabs(loss - losses[step]) / losses[step]);
    worst.grad_norm = std::max(worst.grad_norm, std::fabs(norm - norms[step]) / norms[step]);
    INFO("step " << step << ": loss " << loss << " vs " << losses[step] << ", grad norm " << norm << " vs "
                 << norms[step]);
    CHECK(std::fabs(loss - losses[step]) / losses[step] <= 1e-4);
    CHECK(std::fabs(norm - norms[step]) / norms[step] <= 1e-4);
  }
  return worst;
}

SessionSetup with_golden_encoder(const GoldenFile& golden) {
  SessionSetup setup;
  setup.settings = [](model::LoraSettings& lora) { lora.train_encoder = true; };
  setup.weights = [&golden](model::ModelSession& session, const model::LoraSettings& lora) {
    for (const auto& tensor : model::prompt_encoder_tensors(session.plan.shape, lora))
      context().upload(session.buffers->buffer(tensor.buffer), golden["init." + tensor.buffer].floats().data());
  };
  return setup;
}

void check_trajectory_and_write(const std::string& name, const GoldenFile& golden, const fs::path& folder,
                                const fs::path& adapter_dir, const fs::path& written, const SessionSetup& setup) {
  GoldenBatch batch = golden_batch(golden);
  AdapterSession opened = open_adapter_session(folder, adapter_dir, batch, setup);
  TrajectoryErrors errors = check_adamw_trajectory(golden, batch, *opened.session);
  MESSAGE(name << ": 20 steps, worst relative: loss " << errors.loss << ", grad norm " << errors.grad_norm);
  if (std::getenv("VKT_WRITE_SOFT_PROMPT"))
    write_adapter_and_logits(golden, *opened.session, opened.lora, folder, written);
}

void write_adapter_and_logits(const GoldenFile& golden, const model::ModelSession& session,
                              const model::LoraSettings& lora, const fs::path& folder, const fs::path& out) {
  model::save_adapter(context(), *session.buffers, session.plan.shape, lora,
                      "tests/data/hf/" + folder.filename().string(), out / "adapter");
  GoldenBatch batch = golden_batch(golden);
  std::vector<float> logits =
      run_golden(golden, folder, out / "adapter", lora_run_settings(kernels::WeightFormat::f32)).logits;
  std::vector<model::TensorToWrite> tensors;
  tensors.push_back({"logits",
                     model::FileDtype::F32,
                     {batch.batch, batch.seq_len, session.plan.shape.vocab},
                     [&logits](model::TensorSink& sink) { sink.write(logits.data(), logits.size() * 4); }});
  model::write_safetensors(out / "logits.safetensors", std::move(tensors));
}

double exported_logits_error(const GoldenFile& golden, const fs::path& folder, const fs::path& adapter,
                             const std::string& output_name) {
  merge::ExportOptions options;
  options.model = folder;
  options.adapter = adapter;
  options.output = temp_dir(output_name);
  options.show_progress = false;
  merge::export_merged(context(), options);
  spec::RunSettings plain = lora_run_settings(kernels::WeightFormat::f32);
  plain.method = spec::Method::full;  // no adapter: the merged weights alone
  GoldenRun run = run_golden(golden, options.output, {}, plain);
  const auto vocab = static_cast<uint32_t>(golden["fp32.logits"].shape[2]);
  return worst_real_row_error(run.logits, golden["fp32.logits"].floats(), golden_batch(golden), vocab);
}

void check_peft_load(const nlohmann::json& report, const std::string& name, const GoldenFile& golden,
                     const fs::path& folder, const fs::path& written) {
  const auto& result = report.at("cases").at(name);
  CHECK(result.at("passed").get<bool>());
  CHECK(result.at("logits_max_abs").get<double>() <= 1e-4);
  MESSAGE(name << ": the reference's logits of vktune's adapter vs vktune's: max-abs "
               << result.at("logits_max_abs").get<double>());
  model::SafetensorsFile file(written / "logits.safetensors");
  REQUIRE(file.find("logits") != nullptr);
  std::vector<float> expected = model::to_fp32(*file.find("logits"));
  std::vector<float> actual =
      run_golden(golden, folder, written / "adapter", lora_run_settings(kernels::WeightFormat::f32)).logits;
  const auto vocab = static_cast<uint32_t>(golden["fp32.logits"].shape[2]);
  CHECK(worst_real_row_error(actual, expected, golden_batch(golden), vocab) <= 1e-5);
}

}  // namespace vkt::test
