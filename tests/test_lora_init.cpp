// --init-lora-weights (engine/model/lora_init.hpp) against PEFT 0.21.2 (tests/reference/lora_init_golden.py;
// data in tests/data/lora_init/) on tests/data/hf/llama3, LoRA r=4, alpha=8, all-linear:
//  - pissa, olora: A, B within 1e-4 relative of PEFT's (PEFT's fp32 SVD vs our double one; each SVD
//    component's sign aligned first: a singular pair is defined up to sign, and the residual does not
//    depend on it), layer 0's residual base within 1e-5;
//    logits after the init within 1e-4 of PEFT's and of vktune's own base model; loss (1e-5 relative),
//    d loss/d embedding and every LoRA gradient (1e-3 relative): model_hf's bounds.
//  - pissa_niter_4: the randomized SVD's residual norm within 2% of PEFT's own pissa_niter_4 over exact pissa.
//  - gaussian: A's sample std within 3% of 1/r (PEFT's), B zero.
//  - olora on NF4 (QLoRA) vs PEFT's olora_init on bitsandbytes (emulated bit-exactly by nf4.py): model_hf's bounds.
//  - the converted adapter (rank 2r plain LoRA) on the ORIGINAL base gives the logits of the finetuned
//    residual model (1e-5), and PEFT's from_pretrained of it agrees (peft_load_check.json, 1e-4).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/base/files.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/lora_init.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/train/config.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/step_runner.hpp"
#include "engine/train/trainer.hpp"
#include "tests/golden_run.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

fs::path data_dir() { return test::source_dir() / "tests/data/lora_init"; }
fs::path llama3() { return test::source_dir() / "tests/data/hf/llama3"; }

const char* const module_paths[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

void golden_lora(model::LoraSettings& lora) {
  lora.rank = 4;
  lora.alpha = 8;
  lora.targets = model::parse_target_modules("all-linear");
}

double norm(const std::vector<float>& x) {
  double sum = 0;
  for (float value : x) sum += double(value) * value;
  return std::sqrt(sum);
}

std::vector<float> download(const vk::Buffer& buffer) {
  std::vector<float> values(buffer.size() / 4);
  test::context().download(buffer, values.data());
  return values;
}

// A session's lora_A / lora_B (by PEFT's saved names) and layer 0's base weights, read right after the init.
struct InitState {
  std::map<std::string, std::vector<float>> lora, residual;
};

// The per-component signs (±1) that align ours (A rows) with the reference's.
std::vector<float> component_signs(const std::vector<float>& a, const std::vector<float>& reference, uint32_t rank) {
  const size_t in = a.size() / rank;
  std::vector<float> signs(rank, 1.0f);
  for (uint32_t k = 0; k < rank; k++) {
    double dot = 0;
    for (size_t j = 0; j < in; j++) dot += double(a[k * in + j]) * reference[k * in + j];
    signs[k] = dot < 0 ? -1.0f : 1.0f;
  }
  return signs;
}
// x with its components' signs flipped: A (r, in) by rows, B (out, r) by columns.
std::vector<float> with_signs(std::vector<float> x, const std::vector<float>& signs, bool a) {
  const size_t rank = signs.size();
  for (size_t i = 0; i < x.size(); i++) x[i] *= signs[a ? i / (x.size() / rank) : i % rank];
  return x;
}

struct CaseErrors {
  double a = 0, b = 0, residual = 0, gradient = 0;
  int flipped = 0;
};

CaseErrors check_case(const std::string& name) {
  test::GoldenFile golden(data_dir() / (name + ".golden.bin"));
  const model::LoraInit init = model::parse_lora_init(name);
  InitState state;
  test::SessionSetup setup;
  setup.settings = golden_lora;
  setup.weights = [&](model::ModelSession& session, const model::LoraSettings& lora) {
    model::init_adapter(test::context(), *session.buffers, session.plan.shape, lora, 7);
    model::apply_lora_init(test::context(), session, lora, init, 7);
    for (uint32_t layer = 0; layer < 2; layer++)
      for (spec::Module module : model::lora_owners(session.plan.shape, lora.targets))
        for (bool a : {true, false})
          state.lora[model::peft_tensor_name(session.plan.shape, layer, module, a)] =
              download(session.buffers->buffer(model::lora_buffer_name(session.plan.shape, layer, module, a)));
    for (size_t m = 0; m < spec::module_count; m++)
      state.residual[model::layer_tensor_name(0, static_cast<spec::Module>(m))] =
          model::read_base_weight(test::context(), session, 0, static_cast<spec::Module>(m));
  };
  const test::GoldenRun run =
      test::run_golden(golden, llama3(), {}, test::lora_run_settings(kernels::WeightFormat::f32), setup);
  const test::GoldenRun base =
      test::run_golden(golden, llama3(), {}, test::lora_run_settings(kernels::WeightFormat::f32));
  const test::GoldenBatch batch = test::golden_batch(golden);
  const auto vocab = static_cast<uint32_t>(golden["fp32.logits"].shape[2]);

  CaseErrors errors;
  std::map<std::string, std::vector<float>> signs;  // by module prefix "base_model...q_proj."
  for (uint32_t layer = 0; layer < 2; layer++)
    for (const char* path : module_paths) {
      const std::string prefix = "base_model.model.model.layers." + std::to_string(layer) + "." + path + ".";
      INFO(prefix);
      const std::vector<float> a_ref = golden["init." + prefix + "lora_A.weight"].floats();
      const std::vector<float> b_ref = golden["init." + prefix + "lora_B.weight"].floats();
      REQUIRE(state.lora.count(prefix + "lora_A.weight"));
      const std::vector<float> s = component_signs(state.lora[prefix + "lora_A.weight"], a_ref, 4);
      for (float sign : s) errors.flipped += sign < 0;
      signs[prefix] = s;
      errors.a =
          std::max(errors.a, test::relative_error(with_signs(state.lora[prefix + "lora_A.weight"], s, true), a_ref));
      errors.b =
          std::max(errors.b, test::relative_error(with_signs(state.lora[prefix + "lora_B.weight"], s, false), b_ref));
    }
  for (const char* path : module_paths) {
    const std::string weight = std::string("model.layers.0.") + path + ".weight";
    REQUIRE(state.residual.count(weight));
    errors.residual =
        std::max(errors.residual, test::relative_error(state.residual[weight], golden["residual." + weight].floats()));
  }
  const double to_peft = test::worst_real_row_error(run.logits, golden["fp32.logits"].floats(), batch, vocab);
  const double to_base = test::worst_real_row_error(run.logits, base.logits, batch, vocab);
  const double loss = std::fabs(run.loss - golden["fp32.loss"].scalar()) / golden["fp32.loss"].scalar();
  const double dembed = test::relative_error(run.dembed, golden["fp32.dembed"].floats());
  size_t gradients = 0;
  for (const auto& [key, tensor] : golden.tensors()) {
    if (key.rfind("fp32.grad.", 0) != 0) continue;
    const std::string tensor_name = key.substr(10);
    INFO(tensor_name);
    REQUIRE(run.gradients.count(tensor_name));
    const bool a = tensor_name.find("lora_A") != std::string::npos;
    const std::string prefix = tensor_name.substr(0, tensor_name.find(a ? "lora_A" : "lora_B"));
    errors.gradient =
        std::max(errors.gradient,
                 test::relative_error(with_signs(run.gradients.at(tensor_name), signs.at(prefix), a), tensor.floats()));
    gradients++;
  }
  MESSAGE(name << ": A " << errors.a << ", B " << errors.b << " (relative; " << errors.flipped
               << " components of 56 with the other sign), residual " << errors.residual << "; logits max-abs "
               << to_peft << " vs PEFT, " << to_base << " vs the base; loss " << loss << ", dembed " << dembed
               << ", worst gradient " << errors.gradient);
  CHECK(gradients == 28);
  // PEFT's SVD and QR run in fp32, ours in double: pissa's singular vectors differ by PEFT's fp32 error
  // (~1e-5 on these near-equal singular values of a random weight), OLoRA's factors by ~2e-7.
  CHECK(errors.a <= 1e-4);
  CHECK(errors.b <= 1e-4);
  CHECK(errors.residual <= 1e-5);
  CHECK(to_peft <= 1e-4);
  CHECK(to_base <= 1e-4);
  CHECK(loss <= 1e-5);
  CHECK(dembed <= 1e-3);
  CHECK(errors.gradient <= 1e-3);
  return errors;
}

// Trains `init` on the golden batch for a few AdamW steps, then saves the adapter converted; returns
// the finetuned (residual) model's logits and writes the adapter into `out`/adapter.
std::vector<float> finetune_and_convert(const std::string& init, const fs::path& out) {
  auto& ctx = test::context();
  test::GoldenFile golden(data_dir() / (init + ".golden.bin"));
  const test::GoldenBatch batch = test::golden_batch(golden);
  model::LoraSettings lora;
  golden_lora(lora);
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.batch = batch.batch;
  settings.seq_len = batch.seq_len;
  settings.training = true;
  auto session = model::open_model(ctx, llama3(), settings, &lora);
  model::init_adapter(ctx, *session->buffers, session->plan.shape, lora, 11);
  const model::InitialLora initial = model::apply_lora_init(ctx, *session, lora, model::parse_lora_init(init), 11);
  train::StepRunner runner(ctx, *session, train::OptimizerSettings{});
  runner.reset();
  for (int64_t step = 1; step <= 5; step++) runner.step(step, 1e-2, {batch});
  model::save_adapter(ctx, *session->buffers, session->plan.shape, lora, "tests/data/hf/llama3", out / "adapter", "",
                      &initial, true);
  train::upload_micro_batch(ctx, *session->buffers, batch);
  vk::Buffer logits = ctx.allocate(uint64_t(batch.batch) * batch.seq_len * session->plan.shape.vocab * 4,
                                   vk::Category::workspace, "lora_init.logits");
  ctx.run([&](vk::Recorder& r) { session->transformer->record_logits(r, logits.range()); });
  return download(logits);
}

}  // namespace

TEST_SUITE("model_hf") {

TEST_CASE("lora init: pissa and olora match PEFT 0.21.2 (A, B, residual base, logits, loss, gradients)") {
  const CaseErrors pissa = check_case("pissa");
  const CaseErrors olora = check_case("olora");
  // OLoRA's QR has LAPACK's Householder signs on both sides: no component needs flipping.
  CHECK(olora.flipped == 0);
  (void)pissa;
}

TEST_CASE("lora init: the converted adapter (rank 2r) on the original base gives the finetuned logits; PEFT agrees") {
  for (const char* name : {"pissa", "olora"}) {
    INFO(std::string(name));
    test::GoldenFile golden(data_dir() / (std::string(name) + ".golden.bin"));
    const test::GoldenBatch batch = test::golden_batch(golden);
    const auto vocab = static_cast<uint32_t>(golden["fp32.logits"].shape[2]);
    // VKT_WRITE_LORA_INIT=1 rewrites what lora_init_golden.py --check-vktune loads into PEFT.
    const bool write = std::getenv("VKT_WRITE_LORA_INIT") != nullptr;
    const fs::path out = write ? data_dir() / "vktune" / name : test::temp_dir(std::string("lora_init_") + name);
    const std::vector<float> finetuned = finetune_and_convert(name, out);
    const auto config = nlohmann::json::parse(read_text_file(out / "adapter" / "adapter_config.json"));
    CHECK(config["r"] == 8);  // PEFT's conversion: 2r, alpha doubled (the scale stays alpha/r)
    CHECK(config["lora_alpha"].get<double>() == 16.0);
    CHECK(config["init_lora_weights"] == true);
    const test::GoldenRun converted =
        test::run_golden(golden, llama3(), out / "adapter", test::lora_run_settings(kernels::WeightFormat::f32));
    const test::GoldenRun base =
        test::run_golden(golden, llama3(), {}, test::lora_run_settings(kernels::WeightFormat::f32));
    const double error = test::worst_real_row_error(converted.logits, finetuned, batch, vocab);
    const double moved = test::worst_real_row_error(finetuned, base.logits, batch, vocab);
    MESSAGE(
        std::string(name) << ": converted adapter on the original base vs the finetuned residual model: logits max-abs "
                          << error << " (finetuning moved them by " << moved << ")");
    CHECK(error <= 1e-5);
    CHECK(moved > 1e-2);
    if (write) {
      std::vector<model::TensorToWrite> tensors;
      tensors.push_back(
          {"logits", model::FileDtype::F32, {batch.batch, batch.seq_len, vocab}, [&finetuned](model::TensorSink& sink) {
             sink.write(finetuned.data(), finetuned.size() * 4);
           }});
      model::write_safetensors(out / "logits.safetensors", std::move(tensors));
      continue;  // lora_init_golden.py --check-vktune writes the report next
    }
    const auto report = nlohmann::json::parse(read_text_file(data_dir() / "peft_load_check.json"));
    test::check_peft_load(report, name, golden, llama3(), data_dir() / "vktune" / name);
  }
}

TEST_CASE("lora init: pissa_niter_4 is as close to exact pissa as PEFT's; gaussian draws A with std 1/r") {
  test::GoldenFile golden(data_dir() / "niter.golden.bin");
  const std::vector<double> peft_ratios = golden["niter.ratio"].doubles();
  model::SafetensorsFolder folder(llama3());
  const model::LoraInit niter = model::parse_lora_init("pissa_niter_4");
  CHECK(niter.name() == "pissa_niter_4");
  double worst = 0, mean = 0, peft_mean = 0, reconstruction = 0;
  std::vector<float> gaussian;
  size_t index = 0;
  for (uint32_t layer = 0; layer < 2; layer++)
    for (size_t m = 0; m < spec::module_count; m++, index++) {
      const std::string name = model::layer_tensor_name(layer, static_cast<spec::Module>(m));
      const model::TensorView& tensor = folder.tensor(name);
      const std::vector<float> weight = model::to_fp32(tensor);
      const uint64_t out = tensor.shape[0], in = tensor.shape[1];
      std::vector<float> exact = weight, randomized = weight;
      const model::LoraPair exact_pair = model::pissa_init(exact, out, in, 4, 2.0f);
      const model::RandomizedSvd draws{niter.niter, 7, uint32_t(index)};
      model::pissa_init(randomized, out, in, 4, 2.0f, &draws);
      const double ratio = norm(randomized) / norm(exact);
      worst = std::max(worst, ratio - peft_ratios.at(index));
      mean += ratio / 14;
      peft_mean += peft_ratios.at(index) / 14;
      // residual + 2 B A gives W back.
      std::vector<float> rebuilt = exact;
      for (uint64_t i = 0; i < out; i++)
        for (uint64_t j = 0; j < in; j++)
          for (uint64_t k = 0; k < 4; k++)
            rebuilt[i * in + j] += 2.0f * exact_pair.b[i * 4 + k] * exact_pair.a[k * in + j];
      reconstruction = std::max(reconstruction, test::relative_error(rebuilt, weight));
      CHECK(ratio >= 1.0 - 1e-6);  // the exact SVD's residual is the smallest (Eckart–Young)
      const std::vector<float> a = model::gaussian_lora_a(4, in, 7, uint32_t(index));
      gaussian.insert(gaussian.end(), a.begin(), a.end());
    }
  double sum = 0, squares = 0;
  for (float value : gaussian) sum += value, squares += double(value) * value;
  const double gaussian_mean = sum / gaussian.size();
  const double gaussian_std = std::sqrt(squares / gaussian.size() - gaussian_mean * gaussian_mean);
  MESSAGE("pissa_niter_4 residual norm over exact pissa's: mean "
          << mean << " (PEFT's " << peft_mean << "), worst excess over PEFT's on the same weight " << worst
          << "; W rebuilt from exact pissa: relative " << reconstruction << "; gaussian A std " << gaussian_std
          << " (PEFT's sample " << golden["gaussian.std"].scalar() << ", 1/r = 0.25), mean " << gaussian_mean);
  CHECK(mean <= peft_mean + 0.02);
  CHECK(worst <= 0.05);
  CHECK(reconstruction <= 1e-6);
  CHECK(std::fabs(gaussian_std - 0.25) <= 0.03 * 0.25);
  CHECK(std::fabs(gaussian_mean) <= 0.01);
  // adapter_config.json: true adds nothing (IA3 or prompt configs have no such key), gaussian is recorded as
  // PEFT records it (no conversion: the base is unchanged), rsLoRA's conversion keeps alpha/sqrt(r).
  model::LoraSettings lora;
  lora.rank = 4;
  lora.alpha = 8;
  nlohmann::json config = nlohmann::json::object();
  model::record_lora_init(config, lora, model::InitialLora{model::parse_lora_init("true"), {}}, true);
  CHECK(config.empty());
  model::record_lora_init(config, lora, model::InitialLora{model::parse_lora_init("gaussian"), {}}, true);
  CHECK(config.size() == 1);
  CHECK(config["init_lora_weights"] == "gaussian");
  lora.rslora = true;
  model::record_lora_init(config, lora, model::InitialLora{model::parse_lora_init("olora"), {}}, true);
  CHECK(config["r"] == 8);
  CHECK(config["lora_alpha"].get<double>() / std::sqrt(8.0) == doctest::Approx(8.0 / std::sqrt(4.0)));
  CHECK(config["init_lora_weights"] == true);
  CHECK(model::parse_lora_init("True").kind == model::LoraInitKind::kaiming);
  CHECK(model::parse_lora_init("olora").name() == "olora");
  CHECK(test::user_error_of([] { model::parse_lora_init("pissa_niter_"); }).find("pissa_niter_K") != std::string::npos);
  CHECK(test::user_error_of([] { model::parse_lora_init("loftq"); }).find("not one of PEFT") != std::string::npos);
}

}  // TEST_SUITE

TEST_SUITE("model_hf") {

TEST_CASE("lora init: pissa on Phi-3's fused qkv_proj / gate_up_proj (one SVD of the fused weight) keeps the logits") {
  const fs::path phi3 = test::source_dir() / "tests/data/hf/phi3";
  test::GoldenFile golden(test::source_dir() / "tests/data/hf/phi3.golden.bin");
  const test::GoldenBatch batch = test::golden_batch(golden);
  const auto vocab = static_cast<uint32_t>(golden["fp32.logits"].shape[2]);
  test::SessionSetup setup;
  setup.settings = golden_lora;
  double rebuilt = 0;
  setup.weights = [&](model::ModelSession& session, const model::LoraSettings& lora) {
    model::init_adapter(test::context(), *session.buffers, session.plan.shape, lora, 7);
    const std::vector<float> fused = model::read_base_weight(test::context(), session, 1, spec::Module::q_proj);
    const model::InitialLora initial =
        model::apply_lora_init(test::context(), session, lora, model::parse_lora_init("pissa"), 7);
    // The fused weight (q; k; v rows) = its residual + 2 B A, with one A and the fused B.
    std::vector<float> residual = model::read_base_weight(test::context(), session, 1, spec::Module::q_proj);
    const auto& a = initial.initial.at(model::lora_buffer_name(session.plan.shape, 1, spec::Module::q_proj, true));
    const auto& b = initial.initial.at(model::lora_buffer_name(session.plan.shape, 1, spec::Module::q_proj, false));
    const size_t in = a.size() / 4, out = b.size() / 4;
    REQUIRE(out * in == fused.size());
    for (size_t i = 0; i < out; i++)
      for (size_t j = 0; j < in; j++)
        for (size_t k = 0; k < 4; k++) residual[i * in + j] += 2.0f * b[i * 4 + k] * a[k * in + j];
    rebuilt = test::relative_error(residual, fused);
  };
  const test::GoldenRun pissa =
      test::run_golden(golden, phi3, {}, test::lora_run_settings(kernels::WeightFormat::f32), setup);
  const test::GoldenRun base = test::run_golden(golden, phi3, {}, test::lora_run_settings(kernels::WeightFormat::f32));
  const double error = test::worst_real_row_error(pissa.logits, base.logits, batch, vocab);
  MESSAGE("phi3 pissa: logits after the init vs the base's: max-abs "
          << error << "; layer 1's fused qkv rebuilt: relative " << rebuilt);
  CHECK(error <= 1e-4);
  CHECK(rebuilt <= 1e-6);
}

TEST_CASE(
    "lora init: olora on an NF4 base (PEFT: the dequantized weight, the residual quantized again); pissa refused") {
  test::GoldenFile golden(data_dir() / "olora.golden.bin");
  const test::GoldenBatch batch = test::golden_batch(golden);
  const auto vocab = static_cast<uint32_t>(golden["fp32.logits"].shape[2]);
  spec::RunSettings nf4 = test::lora_run_settings(kernels::WeightFormat::nf4);
  nf4.double_quant = true;
  test::SessionSetup setup;
  setup.settings = golden_lora;
  std::string refusal;
  setup.weights = [&](model::ModelSession& session, const model::LoraSettings& lora) {
    model::init_adapter(test::context(), *session.buffers, session.plan.shape, lora, 7);
    refusal = test::user_error_of(
        [&] { model::apply_lora_init(test::context(), session, lora, model::parse_lora_init("pissa"), 7); });
    model::apply_lora_init(test::context(), session, lora, model::parse_lora_init("olora"), 7);
  };
  const test::GoldenRun olora = test::run_golden(golden, llama3(), {}, nf4, setup);
  const test::GoldenRun base = test::run_golden(golden, llama3(), {}, nf4);
  const double logits = test::worst_real_row_error(olora.logits, golden["nf4.logits"].floats(), batch, vocab);
  const double loss = std::fabs(olora.loss - golden["nf4.loss"].scalar()) / golden["nf4.loss"].scalar();
  const double dembed = test::relative_error(olora.dembed, golden["nf4.dembed"].floats());
  double gradient = 0;
  size_t gradients = 0;
  for (const auto& [key, tensor] : golden.tensors())
    if (key.rfind("nf4.grad.", 0) == 0) {
      gradient = std::max(gradient, test::relative_error(olora.gradients.at(key.substr(9)), tensor.floats()));
      gradients++;
    }
  // Quantizing the residual again moves the model as much as quantizing W did (PEFT's behaviour too).
  const double moved = test::worst_real_row_error(olora.logits, base.logits, batch, vocab);
  MESSAGE("olora on NF4 vs PEFT's (bitsandbytes-exact NF4): logits max-abs "
          << logits << ", loss " << loss << ", dembed " << dembed << ", worst gradient " << gradient
          << "; the requantized residual moved the "
          << "logits by " << moved << " from the NF4 base's");
  CHECK(gradients == 28);
  CHECK(logits <= 1e-4);
  CHECK(loss <= 1e-5);
  CHECK(dembed <= 1e-3);
  CHECK(gradient <= 1e-3);
  CHECK(moved > 1e-2);                                              // so the bounds above see the requantization
  CHECK(refusal.find("PEFT refuses it too") != std::string::npos);  // before it changed anything
}

}  // TEST_SUITE

TEST_SUITE("train_e2e") {

TEST_CASE("train: --init-lora-weights pissa: checkpoints unconverted, the final adapter converted; a resume matches") {
  auto pissa_run = [](const std::string& name) {
    train::TrainConfig config = test::tiny_random_lora_config(test::binary_dir() / "test-output" / "e2e", name);
    config.per_device_train_batch_size = 1;
    config.max_length = 32;
    config.max_steps = 2;
    config.save_steps = 1;
    config.init_lora_weights = "pissa";
    return config;
  };
  train::TrainConfig config = pissa_run("pissa-resume");
  train::train(config);
  const fs::path out(config.output_dir);
  const auto checkpoint = nlohmann::json::parse(read_text_file(out / "checkpoint-1" / "adapter_config.json"));
  CHECK(checkpoint["init_lora_weights"] == "pissa");  // as PEFT saves it unconverted: r, alpha unchanged
  CHECK(checkpoint["r"] == config.lora_r);
  const auto final_config = nlohmann::json::parse(read_text_file(out / "adapter_config.json"));
  CHECK(final_config["init_lora_weights"] == true);
  CHECK(final_config["r"] == 2 * config.lora_r);
  CHECK(final_config["lora_alpha"].get<double>() == 2 * config.lora_alpha);
  // vktune's own readers refuse the unconverted checkpoint adapter, with a hint.
  CHECK(test::user_error_of([&] { model::load_adapter_config(out / "checkpoint-1"); }).find("residual") !=
        std::string::npos);
  // Resumed from checkpoint-1, the residual and A0/B0 are recomputed: the final adapter is the same.
  const std::string straight = read_text_file(out / "adapter_model.safetensors");
  fs::remove_all(out / "checkpoint-2");
  fs::remove(out / "adapter_model.safetensors");
  config.resume_from_checkpoint = "latest";
  train::train(config);
  CHECK(read_text_file(out / "adapter_model.safetensors") == straight);

  // What PEFT refuses, or vktune does not build, is refused before the model loads.
  train::TrainConfig refused = pissa_run("pissa-refused");
  refused.method = spec::Method::qlora;
  CHECK(test::user_error_of([&] { train::train(refused); }).find("PEFT refuses it too") != std::string::npos);
  refused.method = spec::Method::full;
  CHECK(test::user_error_of([&] { train::train(refused); }).find("--method full has none") != std::string::npos);
  refused.method = spec::Method::qlora;  // OLoRA on NF4 is PEFT's too (the NF4 golden above)
  refused.init_lora_weights = "olora";
  CHECK_NOTHROW(train::validate(refused));
  refused.quant = kernels::WeightFormat::int8;
  refused.method = spec::Method::lora;
  CHECK(test::user_error_of([&] { train::validate(refused); }).find("not built (NF4 is)") != std::string::npos);
  refused.quant = kernels::WeightFormat::f32;
  refused.peft_type = spec::PeftType::dora;
  CHECK(test::user_error_of([&] { train::validate(refused); }).find("--peft-type lora") != std::string::npos);
  refused.peft_type = spec::PeftType::lora;
  refused.init_lora_weights = "corda";
  CHECK(test::user_error_of([&] { train::train(refused); }).find("not one of PEFT") != std::string::npos);
}

}  // TEST_SUITE
