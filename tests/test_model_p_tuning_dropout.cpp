// P-tuning's LSTM encoder with --encoder-dropout (engine/model/p_tuning_lstm.hpp): torch.nn.LSTM's
// dropout on each layer's output but the last, in training only. The reference is a CPU encoder in
// double (below: torch.nn.LSTM's equations, gate order i, f, g, o, then Linear-ReLU-Linear) that
// multiplies layer 0's output by the very mask the device draws (ref::dropout of ones, the same
// Philox key: seed, micro-step, lstm_dropout_key(0)). Its gradients are central differences of
// L = Σ g·prompt (g random) in double (every entry of the embedding, every 4th of the weights). On the
// case ptuning_lstm's shapes (tests/data/hf/llama3: 5 virtual tokens, hidden 32, 2 bidirectional
// layers of 12): the device's prompt within 1e-6 max-abs and its gradients within 1e-5 norm-wise
// relative (fp32 sums of a few dozen terms: ~1e-7; the differences' own error ~1e-9). The mask
// really acts: the prompt without it differs by far more, and a backward that skips the mask misses
// the gradients of layer 0 and the embedding by ~50%. A model's forward with gradients drops out; its
// evaluation forward and the prompt a save writes (record_prompt_encoder) do not. Suite model_hf (it
// opens tests/data/hf/llama3).
#include <doctest/doctest.h>

#include <cmath>
#include <map>

#include "engine/kernels/optimizer.hpp"
#include "engine/kernels/random.hpp"
#include "engine/model/p_tuning.hpp"
#include "engine/model/p_tuning_lstm.hpp"
#include "engine/train/evaluate.hpp"
#include "tests/golden_run.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

constexpr float kDropout = 0.4f;
constexpr uint32_t kSeed = 1234, kMicroStep = 5;

using Parameters = std::map<std::string, std::vector<double>>;

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// The encoder's prompt (n, d) in double; mask: (n, 2h) multiplying layer 0's output before layer 1
// reads it (empty: none). Two layers, as the case.
std::vector<double> reference_prompt(const Parameters& p, uint32_t n, uint32_t d, uint32_t h,
                                     const std::vector<float>& mask) {
  std::vector<double> input = p.at("prompt_encoder.embedding.weight");
  uint32_t in = d;
  for (uint32_t layer = 0; layer < 2; layer++) {
    std::vector<double> output(size_t(n) * 2 * h);
    for (uint32_t dir = 0; dir < 2; dir++) {
      const std::string suffix = "_l" + std::to_string(layer) + (dir ? "_reverse" : "");
      const auto& w_ih = p.at("prompt_encoder.lstm_head.weight_ih" + suffix);
      const auto& w_hh = p.at("prompt_encoder.lstm_head.weight_hh" + suffix);
      const auto& b_ih = p.at("prompt_encoder.lstm_head.bias_ih" + suffix);
      const auto& b_hh = p.at("prompt_encoder.lstm_head.bias_hh" + suffix);
      std::vector<double> hs(h, 0.0), cs(h, 0.0), gates(4 * h);
      for (uint32_t k = 0; k < n; k++) {
        const uint32_t t = dir ? n - 1 - k : k;
        for (uint32_t g = 0; g < 4 * h; g++) {
          double sum = b_ih[g] + b_hh[g];
          for (uint32_t i = 0; i < in; i++) sum += w_ih[size_t(g) * in + i] * input[size_t(t) * in + i];
          for (uint32_t j = 0; j < h; j++) sum += w_hh[size_t(g) * h + j] * hs[j];
          gates[g] = sum;
        }
        for (uint32_t j = 0; j < h; j++) {
          const double i_gate = sigmoid(gates[j]), f_gate = sigmoid(gates[h + j]);
          const double g_gate = std::tanh(gates[2 * h + j]), o_gate = sigmoid(gates[3 * h + j]);
          cs[j] = f_gate * cs[j] + i_gate * g_gate;
          hs[j] = o_gate * std::tanh(cs[j]);
          output[size_t(t) * 2 * h + dir * h + j] = hs[j];
        }
      }
    }
    if (layer == 0 && !mask.empty())
      for (size_t i = 0; i < output.size(); i++) output[i] *= mask[i];
    input = output;
    in = 2 * h;
  }
  auto linear = [&](const std::vector<double>& x, const std::string& name, uint32_t out, uint32_t width, bool relu) {
    const auto& w = p.at(name + ".weight");
    const auto& b = p.at(name + ".bias");
    std::vector<double> y(size_t(n) * out);
    for (uint32_t t = 0; t < n; t++)
      for (uint32_t o = 0; o < out; o++) {
        double sum = b[o];
        for (uint32_t i = 0; i < width; i++) sum += w[size_t(o) * width + i] * x[size_t(t) * width + i];
        y[size_t(t) * out + o] = relu ? std::max(sum, 0.0) : sum;
      }
    return y;
  };
  return linear(linear(input, "prompt_encoder.mlp_head.0", 2 * h, 2 * h, true), "prompt_encoder.mlp_head.2", d, 2 * h,
                false);
}

double dot(const std::vector<double>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); i++) sum += a[i] * b[i];
  return sum;
}

double max_difference(const std::vector<float>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); i++) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

struct Encoder {
  test::AdapterSession opened;
  uint32_t n = 0, d = 0, h = 0;
  Parameters parameters;
  model::BufferSet& buffers() { return *opened.session->buffers; }
  std::vector<float> prompt() { return test::download(buffers().buffer("prompt_embeddings"), size_t(n) * d); }
};

// The case ptuning_lstm's session, training the encoder with --encoder-dropout kDropout from vktune's
// initialisation; StepState keyed by (kSeed, kMicroStep).
Encoder open_encoder(const test::GoldenBatch& batch) {
  const fs::path soft = test::source_dir() / "tests/data/soft_prompt";
  test::SessionSetup setup;
  setup.settings = [](model::LoraSettings& lora) {
    lora.train_encoder = true;
    lora.encoder_dropout = kDropout;
  };
  Encoder e{test::open_adapter_session(test::source_dir() / "tests/data/hf/llama3", soft / "ptuning_lstm/adapter",
                                       batch, setup)};
  e.n = e.opened.lora.virtual_tokens;
  e.d = static_cast<uint32_t>(e.opened.session->plan.shape.hidden);
  e.h = e.opened.lora.encoder_hidden;
  REQUIRE(model::lstm_encoder_layers(e.buffers()) == 2);
  model::init_prompt_encoder(test::context(), e.buffers(), e.opened.session->plan.shape, e.opened.lora, 99);
  for (const auto& tensor : model::prompt_encoder_tensors(e.opened.session->plan.shape, e.opened.lora)) {
    std::vector<float> values = test::download(e.buffers().buffer(tensor.buffer));
    e.parameters[tensor.buffer].assign(values.begin(), values.end());
  }
  kernels::StepState state;
  state.rng_seed = kSeed;
  state.rng_step = kMicroStep;
  state.spare[0] = static_cast<float>(1.0 / batch.weight_sum);
  kernels::write_step_state(test::context(), e.buffers().buffer("step_state"), state);
  return e;
}

// Layer 0's output mask (n, 2h): 0 or 1/(1-p), as the device draws it.
std::vector<float> device_mask(uint32_t n, uint32_t h) {
  std::vector<float> ones(size_t(n) * 2 * h, 1.0f), mask(ones.size());
  ref::dropout(ones.data(), mask.data(), ones.size(), kDropout, model::lstm_dropout_key(0), kSeed, kMicroStep);
  return mask;
}

}  // namespace

TEST_SUITE("model_hf") {

TEST_CASE(
    "p-tuning LSTM --encoder-dropout: forward and gradients vs a CPU encoder with the same mask; none in "
    "evaluation and in the saved prompt") {
  const test::GoldenFile golden(test::source_dir() / "tests/data/soft_prompt/ptuning_lstm.golden.bin");
  const test::GoldenBatch batch = test::golden_batch(golden);
  Encoder e = open_encoder(batch);
  const std::vector<float> mask = device_mask(e.n, e.h);
  uint32_t dropped = 0;
  for (float m : mask) dropped += m == 0.0f;
  CHECK(dropped > 0);
  CHECK(dropped < mask.size());
  const std::vector<double> expected = reference_prompt(e.parameters, e.n, e.d, e.h, mask);
  const std::vector<double> plain = reference_prompt(e.parameters, e.n, e.d, e.h, {});
  auto& ctx = test::context();
  // The model: a forward with gradients drops out; its evaluation forward and the prompt a save (and
  // so generate) reads do not.
  train::upload_micro_batch(ctx, e.buffers(), batch);
  model::Transformer& transformer = *e.opened.session->transformer;
  ctx.run([&](vk::Recorder& r) { transformer.record_forward(r, true, true); });
  CHECK(max_difference(e.prompt(), expected) <= 1e-6);
  ctx.run([&](vk::Recorder& r) { transformer.record_forward(r, true, false); });  // evaluation
  CHECK(max_difference(e.prompt(), plain) <= 1e-6);
  ctx.run([&](vk::Recorder& r) { transformer.record_prompt_encoder(r); });  // what a save writes
  CHECK(max_difference(e.prompt(), plain) <= 1e-6);

  // The encoder alone, then its backward from g = d L / d prompt into zeroed grad.* (same StepState).
  ctx.run([&](vk::Recorder& r) { model::record_prompt_encoder_forward(r, e.buffers(), e.n, e.d, e.h, kDropout); });
  const std::vector<float> prompt = e.prompt();
  const double forward_error = max_difference(prompt, expected);
  const double unmasked_shift = max_difference(prompt, plain);
  MESSAGE("LSTM dropout " << kDropout << ": " << dropped << " of " << mask.size()
                          << " layer-0 outputs dropped; prompt max-abs error " << forward_error
                          << " (bound 1e-6); without the mask it would differ by " << unmasked_shift);
  CHECK(forward_error <= 1e-6);
  CHECK(unmasked_shift > 1000 * 1e-6);
  const std::vector<float> g = test::random_floats(size_t(e.n) * e.d, 77, -1, 1);
  ctx.upload(e.buffers().buffer("prompt_encoder.grad_output"), g.data());
  ctx.run([&](vk::Recorder& r) {
    for (const auto& [name, values] : e.parameters) r.fill(e.buffers().range("grad." + name));
    model::record_prompt_encoder_backward(r, e.buffers(), e.n, e.d, e.h, kDropout);
  });
  // Central differences of the reference for the tensors the mask touches on the way back: layer 1's
  // input weights read the dropped output; layer 0 and the embedding get their gradient through it.
  for (const char* name : {"prompt_encoder.lstm_head.weight_ih_l1", "prompt_encoder.lstm_head.weight_ih_l1_reverse",
                           "prompt_encoder.lstm_head.weight_hh_l0", "prompt_encoder.embedding.weight"}) {
    const std::vector<float> gradient = test::download(e.buffers().buffer(std::string("grad.") + name));
    Parameters p = e.parameters;
    std::vector<double>& values = p.at(name);
    REQUIRE(gradient.size() == values.size());
    double error = 0, norm = 0;
    const double step = 1e-6;
    const size_t stride = values.size() > 500 ? 4 : 1;
    for (size_t i = 0; i < values.size(); i += stride) {
      const double saved = values[i];
      values[i] = saved + step;
      const double plus = dot(reference_prompt(p, e.n, e.d, e.h, mask), g);
      values[i] = saved - step;
      const double minus = dot(reference_prompt(p, e.n, e.d, e.h, mask), g);
      values[i] = saved;
      const double fd = (plus - minus) / (2 * step);
      error += (gradient[i] - fd) * (gradient[i] - fd);
      norm += fd * fd;
    }
    const double relative = std::sqrt(error / norm);
    const std::string tensor = name;
    CAPTURE(tensor);
    MESSAGE(tensor << ": gradient relative error " << relative << " vs central differences (bound 1e-5)");
    CHECK(relative <= 1e-5);
  }
}

}  // TEST_SUITE
