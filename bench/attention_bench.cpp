// Benchmark rows for the attention kernels: the forward, each backward pass alone, on a small
// Llama's training step (16 sequences of 128 packed tokens, 4 q heads over 2 kv heads), one long
// sequence (1024 tokens), head_dim 128, and a decode step (one new token over 1024 cached).
// FLOPs count only the causally visible (query, key) pairs, as flash-attention papers do.
#include <algorithm>
#include <cmath>
#include <string>

#include "bench/kernel_bench.hpp"
#include "engine/kernels/attention.hpp"

namespace vkt::bench {
namespace {

using kernels::AttentionShape;
using kernels::DType;

enum class Pass { forward, delta, dkdv, dq };

const char* pass_op(Pass pass) {
  switch (pass) {
    case Pass::forward:
      return "attention_forward";
    case Pass::delta:
      return "attention_backward_delta";
    case Pass::dkdv:
      return "attention_backward_dkdv";
    case Pass::dq:
      return "attention_backward_dq";
  }
  return "";
}

// Visible (query, key) pairs of one (sequence, q head).
double visible_pairs(const AttentionShape& s) {
  double pairs = 0;
  for (uint32_t i = 0; i < s.seq_q; i++) pairs += std::min<double>(s.seq_kv, double(s.q_offset) + i + 1);
  return pairs;
}

void add(Pass pass, uint32_t batch, uint32_t seq_q, uint32_t seq_kv, uint32_t q_heads, uint32_t kv_heads,
         uint32_t head_dim, const std::string& note = "") {
  AttentionShape s;
  s.batch = batch;
  s.seq_q = seq_q;
  s.seq_kv = seq_kv;
  s.q_heads = q_heads;
  s.kv_heads = kv_heads;
  s.head_dim = head_dim;
  s.q_offset = seq_kv - seq_q;
  s.scale = 1.0f / std::sqrt(float(head_dim));
  KernelBenchmark row;
  row.op = pass_op(pass);
  row.shape = "B=" + std::to_string(batch) + " Tq=" + std::to_string(seq_q) + " Tkv=" + std::to_string(seq_kv) +
              " H=" + std::to_string(q_heads) + "/" + std::to_string(kv_heads) + " D=" + std::to_string(head_dim);
  if (!note.empty()) row.shape += " " + note;
  size_t q_count = size_t(batch) * seq_q * q_heads * head_dim;
  size_t kv_count = size_t(batch) * seq_kv * kv_heads * head_dim;
  size_t stat_count = size_t(batch) * q_heads * seq_q;
  double pairs = visible_pairs(s) * batch * q_heads;
  // Multiply-adds per visible pair and head dimension: forward q·k and p·v; dK/dV recomputes
  // q·k, then dO·v, dV += p dO, dK += dS q; dQ recomputes q·k and dO·v, then dQ += dS k.
  switch (pass) {
    case Pass::forward:
      row.flops = 4.0 * head_dim * pairs;
      row.bytes = 4.0 * (2 * q_count + 2 * kv_count + stat_count);
      break;
    case Pass::delta:
      row.flops = 2.0 * q_count;
      row.bytes = 4.0 * (2 * q_count + stat_count);
      break;
    case Pass::dkdv:
      row.flops = 8.0 * head_dim * pairs;
      row.bytes = 4.0 * (2 * q_count + 4 * kv_count + 2 * stat_count);
      break;
    case Pass::dq:
      row.flops = 6.0 * head_dim * pairs;
      row.bytes = 4.0 * (3 * q_count + 2 * kv_count + 2 * stat_count);
      break;
  }
  row.setup = [=](vk::Context& context) -> RecordFn {
    auto q = random_tensor(context, q_count, DType::f32, 11, "bench-q");
    auto k = random_tensor(context, kv_count, DType::f32, 12, "bench-k");
    auto v = random_tensor(context, kv_count, DType::f32, 13, "bench-v");
    auto d_o = random_tensor(context, q_count, DType::f32, 14, "bench-d_o");
    auto o = random_tensor(context, q_count, DType::f32, 15, "bench-o");
    auto lse = random_tensor(context, stat_count, DType::f32, 16, "bench-lse");
    auto delta = random_tensor(context, stat_count, DType::f32, 17, "bench-delta");
    auto dq = random_tensor(context, q_count, DType::f32, 18, "bench-dq");
    auto dk = random_tensor(context, kv_count, DType::f32, 19, "bench-dk");
    auto dv = random_tensor(context, kv_count, DType::f32, 20, "bench-dv");
    uint64_t workspace_bytes = kernels::attention_forward_workspace_bytes(s);
    auto workspace = random_tensor(context, std::max<uint64_t>(workspace_bytes / 4, 4), DType::f32, 21, "bench-ws");
    // The backward passes read a real o, lse and delta (random ones would overflow exp).
    context.run([&](vk::Recorder& recorder) {
      vk::BufferRange ws = workspace->range();
      kernels::attention_forward(recorder, q->range(), k->range(), v->range(), o->range(), lse->range(), s, nullptr,
                                 nullptr, workspace_bytes ? &ws : nullptr);
      kernels::attention_backward_delta(recorder, o->range(), d_o->range(), delta->range(), s);
    });
    return [=](vk::Recorder& recorder) {
      switch (pass) {
        case Pass::forward: {
          vk::BufferRange ws = workspace->range();
          kernels::attention_forward(recorder, q->range(), k->range(), v->range(), o->range(), lse->range(), s, nullptr,
                                     nullptr, workspace_bytes ? &ws : nullptr);
          break;
        }
        case Pass::delta:
          kernels::attention_backward_delta(recorder, o->range(), d_o->range(), delta->range(), s);
          break;
        case Pass::dkdv:
          kernels::attention_backward_dkdv(recorder, q->range(), k->range(), v->range(), d_o->range(), lse->range(),
                                           delta->range(), dk->range(), dv->range(), s);
          break;
        case Pass::dq:
          kernels::attention_backward_dq(recorder, q->range(), k->range(), v->range(), d_o->range(), lse->range(),
                                         delta->range(), dq->range(), s);
          break;
      }
    };
  };
  register_kernel_benchmark(std::move(row));
}

}  // namespace

void register_attention_benchmarks() {
  for (Pass pass : {Pass::forward, Pass::delta, Pass::dkdv, Pass::dq}) {
    add(pass, 16, 128, 128, 4, 2, 64, "(train step)");
    add(pass, 1, 1024, 1024, 8, 2, 64);
    add(pass, 4, 256, 256, 8, 2, 128);
  }
  add(Pass::forward, 1, 1, 1024, 8, 2, 64, "(decode)");
  add(Pass::forward, 4, 1, 1024, 32, 8, 128, "(decode)");
}

}  // namespace vkt::bench
