// Benchmark rows for the matmul kernels: the 1024^3 headline in each form and storage type,
// then the shapes a LoRA step on a 1B-class Llama (hidden 2048) runs on 512 tokens, dense and with
// a quantized base weight (QLoRA: dequantized in the matmul's load stage), and a GGUF base's
// ggml blocks (Q4_K, Q8_0, Q6_K) decoded the same way.
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/kernel_bench.hpp"
#include "engine/kernels/activation.hpp"
#include "engine/kernels/matmul_lora_a.hpp"
#include "engine/kernels/matmul_swiglu.hpp"
#include "engine/quant/device.hpp"
#include "engine/quant/ggml_device.hpp"
#include "engine/quant/quantize.hpp"

namespace vkt::bench {
namespace {

using kernels::DType;

enum class Form { nt, nn, tn };

const char* form_name(Form form) {
  return form == Form::nt ? "matmul_nt" : form == Form::nn ? "matmul_nn" : "matmul_tn";
}

kernels::WeightFormat weight_format(DType type) {
  return type == DType::f16    ? kernels::WeightFormat::f16
         : type == DType::bf16 ? kernels::WeightFormat::bf16
                               : kernels::WeightFormat::f32;
}

// Sizes follow matmul.hpp: nt C[M,N] = A[M,K]·W[N,K]ᵀ, nn C[M,K] = A[M,N]·W[N,K],
// tn C[N,K] = A[M,N]ᵀ·B[M,K]. All operands of one row share a storage type (tn's C is fp32).
void add(Form form, uint32_t m, uint32_t n, uint32_t k, DType type, const std::string& note, uint32_t batch = 1) {
  KernelBenchmark row;
  row.op = form_name(form);
  row.shape = "M=" + std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k) + " " +
              kernels::dtype_name(type);
  if (batch > 1) row.shape += " x" + std::to_string(batch);
  if (!note.empty()) row.shape += " " + note;
  size_t a_count, b_count, c_count;
  if (form == Form::nt)
    a_count = size_t(m) * k, b_count = size_t(n) * k, c_count = size_t(m) * n;
  else if (form == Form::nn)
    a_count = size_t(m) * n, b_count = size_t(n) * k, c_count = size_t(m) * k;
  else
    a_count = size_t(m) * n, b_count = size_t(m) * k, c_count = size_t(n) * k;
  DType c_type = form == Form::tn ? DType::f32 : type;
  row.flops = 2.0 * m * n * k * batch;
  row.bytes =
      double(batch) * ((a_count + b_count) * kernels::dtype_bytes(type) + c_count * kernels::dtype_bytes(c_type));
  row.supported = [type](const vk::Capabilities& caps) { return type == DType::f32 || caps.storage_16bit; };
  row.setup = [=](vk::Context& context) -> RecordFn {
    auto a = random_tensor(context, a_count * batch, type, 1, "bench-a");
    auto b = random_tensor(context, b_count * batch, type, 2, "bench-b");
    auto c = random_tensor(context, c_count * batch, c_type, 3, "bench-c");
    kernels::MatmulBatch batching{batch, a_count, b_count, c_count};
    return [=](vk::Recorder& recorder) {
      kernels::WeightRef w;
      w.format = weight_format(type);
      w.data = b->range();
      if (form == Form::nt)
        kernels::matmul_nt(recorder, a->range(), type, w, c->range(), c_type, m, n, k, 1.0f, 0.0f, nullptr, batching);
      else if (form == Form::nn)
        kernels::matmul_nn(recorder, a->range(), type, w, c->range(), c_type, m, n, k, 1.0f, 0.0f, batching);
      else
        kernels::matmul_tn(recorder, a->range(), type, b->range(), type, c->range(), m, n, k, 1.0f, 0.0f, batching);
    };
  };
  register_kernel_benchmark(std::move(row));
}

// The forward (nt) or dX (nn) product of fp32 A and C with a quantized W (n, k) already on the device.
RecordFn weight_product(vk::Context& context, Form form, uint32_t m, uint32_t n, uint32_t k,
                        std::shared_ptr<quant::DeviceWeight> weight) {
  uint32_t inner = form == Form::nt ? k : n, cols = form == Form::nt ? n : k;
  auto a = random_tensor(context, size_t(m) * inner, DType::f32, 1, "bench-a");
  auto c = random_tensor(context, size_t(m) * cols, DType::f32, 3, "bench-c");
  return [=](vk::Recorder& recorder) {
    if (form == Form::nt)
      kernels::matmul_nt(recorder, a->range(), DType::f32, weight->ref, c->range(), DType::f32, m, n, k);
    else
      kernels::matmul_nn(recorder, a->range(), DType::f32, weight->ref, c->range(), DType::f32, m, n, k);
  };
}

// Normal weights W (n, k) (std 0.02, as initialized models) quantized on the CPU and uploaded.
std::shared_ptr<quant::DeviceWeight> random_quantized_weight(vk::Context& context, uint32_t n, uint32_t k,
                                                             kernels::WeightFormat format,
                                                             quant::QuantOptions options) {
  std::vector<float> values(size_t(n) * k);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (float& value : values) value = normal(rng);
  return std::make_shared<quant::DeviceWeight>(
      quant::upload(context, quant::quantize(values.data(), n, k, format, options, "bench-w"), "bench-w"));
}

// A quantized weight W (n, k) in the forward (nt) or dX (nn) product of a linear layer; A and C
// fp32. Bytes count the codes and statistics as stored.
void add_quantized(Form form, uint32_t m, uint32_t n, uint32_t k, kernels::WeightFormat format, bool double_quant,
                   const std::string& note) {
  KernelBenchmark row;
  row.op = form_name(form);
  std::string format_name = kernels::weight_format_name(format);
  if (double_quant) format_name += "+dq";
  row.shape = "M=" + std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k) + " W " + format_name;
  if (!note.empty()) row.shape += " " + note;
  uint32_t inner = form == Form::nt ? k : n, cols = form == Form::nt ? n : k;
  quant::QuantOptions options{64, double_quant};
  row.flops = 2.0 * m * n * k;
  // The weight's bytes as stored (codes and statistics), without quantizing it here.
  double code_bytes = format == kernels::WeightFormat::int8 ? 1.0 : 0.5;
  double stat_bytes = double_quant ? 1.0 : format == kernels::WeightFormat::int4_asym ? 5.0 : 4.0;
  row.bytes = (double(m) * inner + double(m) * cols) * 4 + double(n) * k * (code_bytes + stat_bytes / 64);
  row.setup = [=](vk::Context& context) -> RecordFn {
    return weight_product(context, form, m, n, k, random_quantized_weight(context, n, k, format, options));
  };
  register_kernel_benchmark(std::move(row));
}

// A GGUF weight W (n, k) in ggml block type `type`, kept as stored (--quant gguf) and decoded in the
// matmul's load stage; A and C fp32. Bytes count the blocks as stored (Q8_0 34 per 32, Q4_K 144 per 256).
void add_ggml(Form form, uint32_t m, uint32_t n, uint32_t k, quant::GgmlType type, const std::string& note) {
  KernelBenchmark row;
  row.op = form_name(form);
  row.shape = "M=" + std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k) + " W gguf " +
              quant::ggml_type_name(type);
  if (!note.empty()) row.shape += " " + note;
  uint32_t inner = form == Form::nt ? k : n, cols = form == Form::nt ? n : k;
  const uint64_t weight_bytes = quant::ggml_row_bytes(type, uint64_t(n) * k);
  row.flops = 2.0 * m * n * k;
  row.bytes = (double(m) * inner + double(m) * cols) * 4 + double(weight_bytes);
  row.setup = [=](vk::Context& context) -> RecordFn {
    // Random code bytes; every fp16 scale field (offset 0 and 2 in the block, 208 for Q6_K) a small
    // finite value, so the products stay finite (speed does not depend on the values).
    const quant::GgmlTypeInfo& info = quant::ggml_type_info(type);
    std::vector<uint8_t> blocks(weight_bytes);
    std::mt19937 rng(5);
    for (uint8_t& byte : blocks) byte = static_cast<uint8_t>(rng());
    const uint16_t small_scale = 0x1400;  // fp16 2^-10
    for (size_t at = 0; at < blocks.size(); at += info.block_bytes)
      for (size_t field : type == quant::GgmlType::Q6_K ? std::vector<size_t>{208} : std::vector<size_t>{0, 2})
        std::memcpy(&blocks[at + field], &small_scale, 2);
    auto weight = std::make_shared<quant::DeviceWeight>(quant::upload_ggml(context, type, n, k, blocks, "bench-w"));
    return weight_product(context, form, m, n, k, weight);
  };
  register_kernel_benchmark(std::move(row));
}

// The MLP's up product and its SwiGLU h = silu(gate) * up (engine/model/fused_mlp.hpp): fused in the
// product's epilogue (matmul_nt_swiglu) or as matmul_nt then the swiglu kernel; A, C, gate, h in `type`.
void add_swiglu(uint32_t m, uint32_t n, uint32_t k, DType type, bool fused, const std::string& note) {
  KernelBenchmark row;
  row.op = "matmul_nt_swiglu";
  row.shape = "M=" + std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k) + " " +
              kernels::dtype_name(type) + (fused ? " fused " : " separate ") + note;
  row.flops = 2.0 * m * n * k;
  row.bytes = (double(m) * k + 3.0 * m * n) * kernels::dtype_bytes(type) + double(n) * k * 4;
  row.supported = [type](const vk::Capabilities& caps) { return type == DType::f32 || caps.storage_16bit; };
  row.setup = [=](vk::Context& context) -> RecordFn {
    auto a = random_tensor(context, size_t(m) * k, type, 1, "bench-a");
    auto w = random_tensor(context, size_t(n) * k, DType::f32, 2, "bench-w");
    auto c = random_tensor(context, size_t(m) * n, type, 3, "bench-c");
    auto gate = random_tensor(context, size_t(m) * n, type, 4, "bench-gate");
    auto h = random_tensor(context, size_t(m) * n, type, 5, "bench-h");
    return [=](vk::Recorder& recorder) {
      kernels::WeightRef weight = kernels::dense_f32(w->range());
      if (fused) {
        kernels::matmul_nt_swiglu(recorder, a->range(), type, weight, c->range(), type, m, n, k, 1.0f, 0.0f,
                                  {gate->range(), h->range()});
        return;
      }
      kernels::matmul_nt(recorder, a->range(), type, weight, c->range(), type, m, n, k);
      kernels::swiglu(recorder, gate->range(), c->range(), h->range(), m * n, type);
    };
  };
  register_kernel_benchmark(std::move(row));
}

// A LoRA layer's base product y = x·Wᵀ and t = x·Aᵀ (rank r), or (nn) its backward's dx = dy·W and
// dt = s·dy·B: fused into one dispatch (engine/kernels/matmul_lora_a.hpp, engine/model/linear.cpp) or as
// two products; activations in `type`, W fp32 or NF4 + double quant, A and B fp32.
void add_lora_a(Form form, uint32_t m, uint32_t n, uint32_t k, uint32_t rank, DType type, bool nf4, bool fused,
                const std::string& note) {
  KernelBenchmark row;
  bool nn = form == Form::nn;
  row.op = nn ? "matmul_nn_lora_b" : "matmul_nt_lora_a";
  row.shape = "M=" + std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k) + " r=" +
              std::to_string(rank) + " " + kernels::dtype_name(type) + (nf4 ? " W nf4+dq" : "") +
              (fused ? " fused " : " separate ") + note;
  row.flops = 2.0 * m * (n + rank) * k;
  double weight_bytes = nf4 ? double(n) * k * (0.5 + 1.0 / 64) : double(n) * k * 4;
  uint32_t inner = nn ? n : k;
  row.bytes = double(m) * (k + n + rank) * kernels::dtype_bytes(type) + weight_bytes + double(rank) * inner * 4;
  row.supported = [type](const vk::Capabilities& caps) { return type == DType::f32 || caps.storage_16bit; };
  row.setup = [=](vk::Context& context) -> RecordFn {
    auto x = random_tensor(context, size_t(m) * inner, type, 1, "bench-x");
    auto a = random_tensor(context, size_t(rank) * inner, DType::f32, 2, "bench-lora");
    auto y = random_tensor(context, size_t(m) * (nn ? k : n), type, 3, "bench-y");
    auto t = random_tensor(context, size_t(m) * rank, type, 4, "bench-t");
    std::shared_ptr<quant::DeviceWeight> quantized;
    std::shared_ptr<vk::Buffer> dense;
    kernels::WeightRef weight;
    if (nf4) {
      quantized = random_quantized_weight(context, n, k, kernels::WeightFormat::nf4, {64, true});
      weight = quantized->ref;
    } else {
      dense = random_tensor(context, size_t(n) * k, DType::f32, 5, "bench-w");
      weight = kernels::dense_f32(dense->range());
    }
    return [=](vk::Recorder& recorder) {
      kernels::WeightRef lora = kernels::dense_f32(a->range());
      if (nn && fused) {
        kernels::matmul_nn_lora_b(recorder, x->range(), type, weight, y->range(), type, m, n, k, 0.0f,
                                  {a->range(), t->range(), rank, 2.0f});
      } else if (nn) {
        kernels::matmul_nn(recorder, x->range(), type, weight, y->range(), type, m, n, k);
        kernels::matmul_nn(recorder, x->range(), type, lora, t->range(), type, m, n, rank, 2.0f);
      } else if (fused) {
        kernels::matmul_nt_lora_a(recorder, x->range(), type, weight, y->range(), type, m, n, k, nullptr,
                                  {a->range(), t->range(), rank});
      } else {
        kernels::matmul_nt(recorder, x->range(), type, weight, y->range(), type, m, n, k);
        kernels::matmul_nt(recorder, x->range(), type, lora, t->range(), type, m, rank, k);
      }
    };
  };
  register_kernel_benchmark(std::move(row));
}

}  // namespace

void register_matmul_benchmarks() {
  for (Form form : {Form::nt, Form::nn, Form::tn}) add(form, 1024, 1024, 1024, DType::f32, "");
  add(Form::nt, 1024, 1024, 1024, DType::f16, "");
  add(Form::nt, 1024, 1024, 1024, DType::bf16, "");
  add(Form::nn, 1024, 1024, 1024, DType::f16, "");
  add(Form::tn, 1024, 1024, 1024, DType::f16, "");
  // One projection of a hidden-2048 model on 512 tokens: forward, dX, dW.
  add(Form::nt, 512, 2048, 2048, DType::f32, "(proj fwd)");
  add(Form::nn, 512, 2048, 2048, DType::f32, "(proj dX)");
  add(Form::tn, 512, 2048, 2048, DType::f32, "(proj dW)");
  // LoRA rank 16 on the same projection: x·Aᵀ, then (x·Aᵀ)·Bᵀ, and dA = dHᵀ·x.
  add(Form::nt, 512, 16, 2048, DType::f32, "(lora A fwd)");
  add(Form::nt, 512, 2048, 16, DType::f32, "(lora B fwd)");
  add(Form::tn, 512, 16, 2048, DType::f32, "(lora dA)");
  // QLoRA: the same projection and an MLP projection (5632x2048) with an NF4 + double-quant base
  // weight, forward and dX (the dense rows above and below are the comparison), then the other
  // formats on the projection forward.
  using kernels::WeightFormat;
  add_quantized(Form::nt, 512, 2048, 2048, WeightFormat::nf4, true, "(proj fwd)");
  add_quantized(Form::nn, 512, 2048, 2048, WeightFormat::nf4, true, "(proj dX)");
  add(Form::nt, 512, 5632, 2048, DType::f32, "(mlp up fwd)");
  add(Form::nn, 512, 5632, 2048, DType::f32, "(mlp up dX)");
  add_quantized(Form::nt, 512, 5632, 2048, WeightFormat::nf4, true, "(mlp up fwd)");
  add_quantized(Form::nn, 512, 5632, 2048, WeightFormat::nf4, true, "(mlp up dX)");
  add_quantized(Form::nt, 512, 2048, 2048, WeightFormat::nf4, false, "(proj fwd)");
  add_quantized(Form::nt, 512, 2048, 2048, WeightFormat::int8, false, "(proj fwd)");
  add_quantized(Form::nt, 512, 2048, 2048, WeightFormat::int4, false, "(proj fwd)");
  add_quantized(Form::nt, 512, 2048, 2048, WeightFormat::int4_asym, false, "(proj fwd)");
  // A GGUF base kept in its blocks (--quant gguf): Q4_K and Q6_K (the Q4_K_M mix) and Q8_0, against
  // the NF4 rows above (same shapes), forward and dX.
  for (quant::GgmlType type : {quant::GgmlType::Q4_K, quant::GgmlType::Q8_0, quant::GgmlType::Q6_K}) {
    add_ggml(Form::nt, 512, 2048, 2048, type, "(proj fwd)");
    add_ggml(Form::nn, 512, 2048, 2048, type, "(proj dX)");
  }
  // Qwen2.5-0.5B (hidden 896, MLP 4864) on 512 tokens: the MLP up/gate and down projections,
  // forward (nt) and dX (nn), dense and NF4 + double quant (bench/matmul_nn.md).
  add(Form::nt, 512, 4864, 896, DType::f32, "(qwen up fwd)");
  add(Form::nn, 512, 4864, 896, DType::f32, "(qwen up dX)");
  add(Form::nt, 512, 896, 4864, DType::f32, "(qwen down fwd)");
  add(Form::nn, 512, 896, 4864, DType::f32, "(qwen down dX)");
  add(Form::nn, 512, 4864, 896, DType::bf16, "(qwen up dX)");
  add_quantized(Form::nt, 512, 4864, 896, WeightFormat::nf4, true, "(qwen up fwd)");
  add_quantized(Form::nn, 512, 4864, 896, WeightFormat::nf4, true, "(qwen up dX)");
  add_quantized(Form::nn, 512, 896, 4864, WeightFormat::nf4, true, "(qwen down dX)");
  // The SwiGLU fusion at the Qwen2.5-0.5B up product and at a tiny model's (bench/fusions.md).
  for (DType type : {DType::f32, DType::bf16})
    for (bool fused : {false, true}) {
      add_swiglu(512, 4864, 896, type, fused, "(qwen up + swiglu)");
      add_swiglu(64, 256, 64, type, fused, "(tiny up + swiglu)");
    }
  // LoRA's t = x·Aᵀ beside the base product (r 16): Qwen2.5-0.5B's q projection and up projection on 512
  // tokens, dense fp32 and NF4 (QLoRA), and a tiny model's (bench/fusions.md).
  // The backward's dt = s·dy·B beside dx = dy·W: the same layers (a dense fp32 W in matmul_nn is split
  // into L2-sized passes on lavapipe, B is not: there dt keeps its own dispatch, so only NF4 rows here).
  for (bool fused : {false, true}) {
    add_lora_a(Form::nt, 512, 896, 896, 16, DType::f32, false, fused, "(qwen q)");
    add_lora_a(Form::nt, 512, 4864, 896, 16, DType::f32, true, fused, "(qwen up)");
    add_lora_a(Form::nt, 512, 896, 896, 16, DType::bf16, true, fused, "(qwen q)");
    add_lora_a(Form::nt, 64, 64, 64, 16, DType::f32, false, fused, "(tiny q)");
    add_lora_a(Form::nn, 512, 896, 896, 16, DType::f32, true, fused, "(qwen q dX)");
    add_lora_a(Form::nn, 512, 4864, 896, 16, DType::f32, true, fused, "(qwen up dX)");
    add_lora_a(Form::nn, 512, 896, 896, 16, DType::bf16, true, fused, "(qwen q dX)");
    add_lora_a(Form::nn, 64, 64, 64, 16, DType::f32, false, fused, "(tiny q dX)");
  }
  // Attention scores of 16 heads: Q·Kᵀ over head dim 64 on 256 tokens.
  add(Form::nt, 256, 256, 64, DType::f32, "(scores)", 16);
}

}  // namespace vkt::bench
