#include "engine/plan/report.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"

namespace vkt::plan {

using spec::Method;
using spec::ModelShape;
using spec::RunSettings;
using vk::Category;
using vk::MemoryKind;

PlanReport make_report(const ModelShape& shape, const RunSettings& settings, std::optional<uint64_t> device_bytes,
                       const std::string& device_name) {
  PlanReport report;
  report.training = make_plan(shape, settings);
  RunSettings on = settings, off = settings;
  on.gradient_checkpointing = true;
  off.gradient_checkpointing = false;
  report.with_checkpointing = make_plan(shape, on);
  report.without_checkpointing = make_plan(shape, off);
  RunSettings serve = settings;
  serve.training = false;
  serve.method = settings.method == Method::full ? Method::lora : settings.method;
  if (settings.method == Method::full &&
      settings.activation_dtype != kernels::DType::f32) {  // serves its 16-bit weights
    serve.dtype = settings.activation_dtype;
    serve.base_format = serve.dtype == kernels::DType::f16 ? WeightFormat::f16 : WeightFormat::bf16;
  }
  serve.kv_cache_tokens = settings.seq_len;
  serve.seq_len = 1;  // decoding one token at a time
  report.kv_tokens = settings.seq_len;
  report.inference = make_plan(shape, serve);
  report.device_bytes = device_bytes;
  report.device_name = device_name;
  return report;
}

namespace {
std::string gb(double bytes) {
  char text[64];
  std::snprintf(text, sizeof text, "%s (%.2f GB)", format_bytes(bytes).c_str(), bytes / 1e9);
  return text;
}

std::string line(const std::string& label, double bytes) {
  char text[160];
  std::snprintf(text, sizeof text, "  %-46s %s\n", label.c_str(), gb(bytes).c_str());
  return text;
}

uint64_t activation_bytes(const MemoryPlan& plan) { return plan.bytes(Category::activations); }
}  // namespace

uint64_t master_weight_bytes(const MemoryPlan& plan) {
  uint64_t bytes = 0;
  for (const auto& buffer : plan.buffers)
    if (buffer.name.rfind("master.", 0) == 0) bytes += buffer.bytes;
  return bytes;
}

double rules_bytes_per_value(const MemoryPlan& plan) {
  const RunSettings& s = plan.settings;
  if (s.method == Method::full) return kernels::dtype_bytes(s.dtype);  // the trained weights' type
  return double(plan.bytes(Category::base_weights) + plan.bytes(Category::quantized_weights)) /
         double(std::max<uint64_t>(1, plan.parameters.total));
}

std::string format_report(const PlanReport& report) {
  const MemoryPlan& plan = report.training;
  const RunSettings& s = plan.settings;
  const ParameterCounts& p = plan.parameters;
  std::ostringstream out;
  char text[256];
  out << "parameters\n";
  auto count = [](uint64_t n) {
    char buffer[32];
    if (n >= 1000000000ull)
      std::snprintf(buffer, sizeof buffer, "%.2fB", double(n) / 1e9);
    else if (n >= 1000000ull)
      std::snprintf(buffer, sizeof buffer, "%.2fM", double(n) / 1e6);
    else if (n >= 1000ull)
      std::snprintf(buffer, sizeof buffer, "%.1fK", double(n) / 1e3);
    else
      std::snprintf(buffer, sizeof buffer, "%llu", static_cast<unsigned long long>(n));
    return std::string(buffer);
  };
  std::snprintf(text, sizeof text,
                "  embedding %s  attention %s  mlp %s  norms %s  lm_head %s  biases %s\n"
                "  total %s (%llu), trainable %s (%llu, %.3f%%)\n",
                count(p.embedding).c_str(), count(p.attention).c_str(), count(p.mlp).c_str(), count(p.norms).c_str(),
                count(p.lm_head).c_str(), count(p.biases).c_str(), count(p.total).c_str(),
                static_cast<unsigned long long>(p.total), count(p.trainable).c_str(),
                static_cast<unsigned long long>(p.trainable),
                100.0 * double(p.trainable) / double(std::max<uint64_t>(1, p.total)));
  out << text;
  // Adapted modules as PEFT counts them (Phi-3's qkv_proj is one).
  const size_t lora_modules =
      static_cast<size_t>(std::count_if(s.target_modules.begin(), s.target_modules.end(), [&](spec::Module module) {
        return spec::fused_owner(plan.shape, module) == module;
      }));
  char adapted[64] = "every weight";  // full finetuning has no rank
  if (s.method != Method::full)
    std::snprintf(adapted, sizeof adapted, "r=%u on %zu module kinds", s.lora_r, lora_modules);
  std::snprintf(
      text, sizeof text, "run: %s, base %s%s, dtype %s, activations %s%s, %s, batch %llu x %llu tokens, %s%s, %s\n",
      method_name(s.method), spec::base_format_text(s).c_str(),
      s.base_format == WeightFormat::nf4 && s.double_quant ? "+dq" : "", kernels::dtype_name(s.dtype),
      kernels::dtype_name(s.activation_dtype), s.pure_bf16 ? " (pure bf16: no master weights)" : "", adapted,
      static_cast<unsigned long long>(s.batch), static_cast<unsigned long long>(s.seq_len), optimizer_name(s.optimizer),
      s.offload_optimizer ? " (offloaded)"
      : s.page_optimizer  ? " (paged)"
                          : "",
      s.gradient_checkpointing ? "gradient checkpointing" : "no checkpointing");
  out << text;
  if (s.optimizer_shards > 1)
    out << "  per rank of " << s.optimizer_shards << " (--shard-optimizer, ZeRO-1: each rank keeps the optimizer "
        << "states of 1/" << s.optimizer_shards << " of the trainable elements)\n";
  if (s.save_embed_tokens || s.save_lm_head || !s.trainable_token_indices.empty())  // PEFT's extras, in adapter params
    out << "  also trained (fp32, beside LoRA):" << (s.save_embed_tokens ? " embed_tokens" : "")
        << (s.save_lm_head ? " lm_head" : "")
        << (s.trainable_token_indices.empty()
                ? ""
                : " " + std::to_string(s.trainable_token_indices.size()) + " embedding rows (trainable tokens)")
        << "\n";
  out << "training memory (the detailed plan)\n";
  const bool quantized =
      (kernels::is_quantized(s.base_format) || s.base_format == WeightFormat::gguf) && s.method != Method::full;
  out << line(quantized ? std::string("dense weights (embeddings, norms: ") + kernels::dtype_name(s.dtype) + ")"
                        : std::string("base weights (") +
                              (s.method == Method::full ? kernels::dtype_name(s.dtype)
                                                        : kernels::weight_format_name(s.base_format)) +
                              ")",
              double(plan.bytes(Category::base_weights)));
  if (quantized)
    out << line(std::string("quantized linear weights (") + spec::base_format_text(s) +
                    (s.base_format == WeightFormat::nf4 && s.double_quant ? " + double quant)" : ")"),
                double(plan.bytes(Category::quantized_weights)));
  out << line("adapter parameters", double(plan.bytes(Category::adapter_params)));
  out << line("gradients", double(plan.bytes(Category::gradients)));
  out << line("optimizer states on device", double(plan.bytes(Category::optimizer_state, MemoryKind::device)));
  out << line("optimizer states offloaded to host", double(plan.bytes(Category::optimizer_state, MemoryKind::offload)));
  if (const uint64_t master = master_weight_bytes(plan)) out << line("fp32 master weights", double(master));
  if (const uint64_t trainable = plan.bytes(Category::gradients) / 4) {  // every trainable value has an fp32 gradient
    std::snprintf(text, sizeof text, "  optimizer states: %.3f B per trainable parameter (%s)\n",
                  double(plan.bytes(Category::optimizer_state)) / double(trainable), optimizer_name(s.optimizer));
    out << text;
  }
  out << line("activations", double(plan.bytes(Category::activations)));
  out << line("workspace (logits chunk, scratch)", double(plan.bytes(Category::workspace)));
  out << line("total on the device", double(plan.device_bytes()));
  if (plan.contains("ddp.buckets"))  // --world-size N > 1: host-visible, beside the device total
    out << line("host staging (ddp.buckets)", double(plan.find("ddp.buckets").bytes));
  std::snprintf(text, sizeof text, "  logits: %llu rows per chunk of %s (full fp32 logits would be %s)\n",
                static_cast<unsigned long long>(plan.logits_chunk_rows),
                format_bytes(double(plan.logits_chunk_rows * plan.shape.vocab * 4)).c_str(),
                format_bytes(double(s.batch * s.seq_len * plan.shape.vocab * 4)).c_str());
  out << text;
  out << "activations\n";
  out << line("per layer, saved for backward", double(saved_activation_bytes_per_layer(plan.shape, s)));
  out << line("all layers without checkpointing", double(activation_bytes(report.without_checkpointing)));
  out << line("all layers with checkpointing", double(activation_bytes(report.with_checkpointing)));
  out << "serving (inference)\n";
  out << line("weights", double(report.inference.bytes(Category::base_weights) +
                                report.inference.bytes(Category::quantized_weights)));
  out << line("KV cache for " + std::to_string(report.kv_tokens) + " tokens x " + std::to_string(s.batch),
              double(report.inference.bytes(Category::kv_cache)));
  // The seeds' rules of thumb, at the run's bytes per value M; this run's own gradient and state
  // bytes beside them (its states are fp32 whatever M is).
  const double bytes_per_value = rules_bytes_per_value(plan);
  const uint32_t states = optimizer_states_per_parameter(s.optimizer);
  RulesOfThumb rules = rules_of_thumb(double(p.total), bytes_per_value, double(p.trainable), states);
  const double planned_states = double(plan.bytes(Category::gradients) + plan.bytes(Category::optimizer_state));
  out << "rules of thumb (AI Engineering, ch. 7)\n";
  std::snprintf(text, sizeof text, "  weights N x M = %.3fB x %.2f B = %s\n", p.total / 1e9, bytes_per_value,
                gb(rules.weights_bytes).c_str());
  out << text;
  out << line("inference ~ N x M x 1.2", rules.inference_bytes);
  std::snprintf(text, sizeof text, "gradients + %u states at M (%s x %u x %.0f B)", states, count(p.trainable).c_str(),
                1 + states, bytes_per_value);
  out << line(text, rules.gradients_and_states);
  out << line("  this run: fp32 gradients, fp32 states", planned_states);
  if (const uint64_t master = master_weight_bytes(plan))
    out << line("  this run: + fp32 master weights", double(master));
  out << line(
      "training = weights + activations + grads + states",
      rules.weights_bytes + double(activation_bytes(plan)) + planned_states + double(master_weight_bytes(plan)));
  if (report.device_bytes) {
    Verdict verdict = judge(plan, *report.device_bytes);
    std::string name = report.device_name.empty() ? "" : " (" + report.device_name + ")";
    out << "verdict against " << format_bytes(double(*report.device_bytes)) << name << ": ";
    if (verdict.fits) {
      out << "FITS with " << format_bytes(double(verdict.headroom)) << " headroom\n";
    } else {
      out << "DOES NOT FIT: " << format_bytes(double(-verdict.headroom)) << " missing\n"
          << "  what to change, cheapest first (each applied on top of the ones before):\n";
      for (const auto& advice : verdict.advice) out << "  - " << advice << "\n";
    }
  }
  return out.str();
}

std::string report_json(const PlanReport& report) {
  const MemoryPlan& plan = report.training;
  nlohmann::json categories = nlohmann::json::object();
  for (size_t c = 0; c < vk::category_count; c++) {
    categories[vk::category_name(Category(c))] = {{"device", plan.bytes(Category(c), MemoryKind::device)},
                                                  {"offload", plan.bytes(Category(c), MemoryKind::offload)},
                                                  {"host_staging", plan.bytes(Category(c), MemoryKind::staging)}};
  }
  const ParameterCounts& p = plan.parameters;
  const RulesOfThumb rules = rules_of_thumb(double(p.total), rules_bytes_per_value(plan), double(p.trainable),
                                            optimizer_states_per_parameter(plan.settings.optimizer));
  nlohmann::json json = {
      {"parameters",
       {{"embedding", p.embedding},
        {"attention", p.attention},
        {"mlp", p.mlp},
        {"norms", p.norms},
        {"lm_head", p.lm_head},
        {"biases", p.biases},
        {"total", p.total},
        {"trainable", p.trainable}}},
      {"settings",
       {{"method", method_name(plan.settings.method)},
        {"base_format", kernels::weight_format_name(plan.settings.base_format)},
        {"double_quant", plan.settings.double_quant},
        {"dtype", kernels::dtype_name(plan.settings.dtype)},
        {"activation_dtype", kernels::dtype_name(plan.settings.activation_dtype)},
        {"pure_bf16", plan.settings.pure_bf16},
        {"lora_r", plan.settings.lora_r},
        {"batch", plan.settings.batch},
        {"seq_len", plan.settings.seq_len},
        {"gradient_checkpointing", plan.settings.gradient_checkpointing},
        {"optimizer", optimizer_name(plan.settings.optimizer)},
        {"offload_optimizer", plan.settings.offload_optimizer},
        {"paged_optimizer", plan.settings.page_optimizer},
        {"optimizer_shards", plan.settings.optimizer_shards}}},
      {"bytes", categories},
      {"device_total", plan.device_bytes()},
      {"total", plan.total_bytes()},
      {"logits_chunk_rows", plan.logits_chunk_rows},
      {"rules_of_thumb",
       {{"bytes_per_value", rules_bytes_per_value(plan)},
        {"weights", rules.weights_bytes},
        {"inference", rules.inference_bytes},
        {"gradients_and_states", rules.gradients_and_states},
        {"master_weights", master_weight_bytes(plan)}}},
      {"activations_per_layer", saved_activation_bytes_per_layer(plan.shape, plan.settings)},
      {"activations_without_checkpointing", report.without_checkpointing.bytes(Category::activations)},
      {"activations_with_checkpointing", report.with_checkpointing.bytes(Category::activations)},
      {"inference",
       {{"weights",
         report.inference.bytes(Category::base_weights) + report.inference.bytes(Category::quantized_weights)},
        {"kv_cache", report.inference.bytes(Category::kv_cache)},
        {"kv_tokens", report.kv_tokens},
        {"total", report.inference.device_bytes()}}},
  };
  if (report.device_bytes) {
    Verdict verdict = judge(plan, *report.device_bytes);
    json["verdict"] = {{"device_bytes", *report.device_bytes},
                       {"fits", verdict.fits},
                       {"headroom", verdict.headroom},
                       {"advice", verdict.advice}};
  }
  return json.dump(2);
}

std::string format_plan_vs_measured(const MemoryPlan& plan, const vk::LedgerSnapshot& measured) {
  std::ostringstream out;
  char text[200];
  std::snprintf(text, sizeof text, "  %-18s %14s %14s %8s\n", "memory", "planned", "measured peak", "ratio");
  out << text;
  for (size_t c = 0; c < vk::category_count; c++) {
    uint64_t planned = plan.bytes(Category(c)), peak = measured.category_peak(Category(c));
    if (planned == 0 && peak == 0) continue;
    std::snprintf(text, sizeof text, "  %-18s %14s %14s %7.3fx\n", vk::category_name(Category(c)),
                  format_bytes(double(planned)).c_str(), format_bytes(double(peak)).c_str(),
                  planned ? double(peak) / double(planned) : 0.0);
    out << text;
  }
  std::snprintf(text, sizeof text, "  %-18s %14s %14s %7.3fx\n", "total",
                format_bytes(double(plan.total_bytes())).c_str(), format_bytes(double(measured.total_peak)).c_str(),
                double(measured.total_peak) / double(std::max<uint64_t>(1, plan.total_bytes())));
  out << text;
  return out.str();
}

}  // namespace vkt::plan
