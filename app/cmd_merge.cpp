// `vktune merge CONFIG.yaml --output DIR`: mergekit-compatible merges (engine/merge/merge.hpp),
// streamed tensor by tensor with the element-wise work on the Vulkan device; or, with
// --adapter-space, a merge of LoRA adapters of one base into a new adapter.
#include <cstdio>

#include "app/commands.hpp"
#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/merge/adapter_merge.hpp"
#include "engine/merge/config.hpp"
#include "engine/merge/merge.hpp"
#include "engine/plan/report.hpp"

namespace vkt::app {

void add_merge_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "merge",
      "Merge models as mergekit does (linear, slerp, task_arithmetic, ties, dare_linear, dare_ties, passthrough)");
  static std::string config_path, output, max_shard_size = "5GB", adapter_space;
  static int64_t random_seed = 42, rank = 0, device = -1;
  command->add_option("config", config_path, "mergekit YAML file (merge_method, models or slices, parameters, ...)")
      ->required();
  command->add_option("--output,-o", output, "output folder (an HF model, or a PEFT adapter with --adapter-space)")
      ->required();
  command->add_option("--max-shard-size", max_shard_size,
                      "split model.safetensors above this size, as save_pretrained (default 5GB)");
  command->add_option("--random-seed", random_seed, "seed of DARE's drop masks (and the randomized SVD); default 42");
  command->add_option("--adapter-space", adapter_space,
                      "merge LoRA adapters of one base into an adapter: 'svd' (truncated SVD to --rank) or 'concat' "
                      "(exact, rank = sum of the ranks; it saves no memory: the adapter is as large as all inputs)");
  command->add_option("--rank", rank,
                      "--adapter-space svd: rank of the merged adapter (default: the sum of the ranks)");
  command->add_option("--device", device, "Vulkan device index (vktune devices lists them)");
  command->footer(
      "Models are HF folders, or FOLDER+ADAPTER (mergekit's syntax: the PEFT adapter is merged into the folder\n"
      "first, W + s*B*A). Examples: examples/merge/*.yaml. DARE masks are deterministic for a --random-seed.\n"
      "Example:\n  vktune merge examples/merge/ties.yaml --output merged");
  command->callback([] {
    merge::MergeConfig config = merge::load_merge_config(config_path);
    vk::ContextOptions context_options;
    context_options.device_index = static_cast<int>(device);
    vk::Context context(context_options);
    if (!adapter_space.empty()) {
      if (adapter_space != "svd" && adapter_space != "concat")
        throw UserError("--adapter-space '" + adapter_space + "' is not supported", "use svd or concat");
      if (adapter_space == "concat" && rank != 0)
        throw UserError("--rank does not apply to --adapter-space concat",
                        "the concatenated rank is the sum of the ranks");
      merge::AdapterMergeOptions options;
      options.output = output;
      options.concatenate = adapter_space == "concat";
      options.rank = static_cast<uint32_t>(rank);
      options.random_seed = static_cast<uint32_t>(random_seed);
      merge::AdapterMergeSummary summary = merge::run_adapter_merge(context, config, options);
      std::printf("merged adapters (%s, %s) into %s: r=%u, %lld modules, targets",
                  merge::merge_method_name(summary.method), adapter_space.c_str(), output.c_str(), summary.rank,
                  static_cast<long long>(summary.modules));
      for (const auto& target : summary.targets) std::printf(" %s", target.c_str());
      std::printf("\nrelative Frobenius error of the low-rank form: max %.3g, mean %.3g; %s\n",
                  summary.max_relative_residual, summary.mean_relative_residual,
                  format_duration(summary.seconds).c_str());
      return;
    }
    merge::MergeOptions options;
    options.output = output;
    options.max_shard_bytes = parse_byte_size(max_shard_size);
    options.random_seed = static_cast<uint32_t>(random_seed);
    merge::MergeSummary summary = merge::run_merge(context, config, options);
    std::printf("merged (%s) %lld tensors, %lld layers, %s, %s in %s -> %s\n", merge::merge_method_name(summary.method),
                static_cast<long long>(summary.tensors), static_cast<long long>(summary.layers),
                summary.out_dtype.c_str(), format_bytes(double(summary.bytes_written)).c_str(),
                format_duration(summary.seconds).c_str(), output.c_str());
    std::printf("memory: inputs %s on disk, largest tensor %s (fp32); resident %s at start, peak %s\n",
                format_bytes(double(summary.input_bytes)).c_str(),
                format_bytes(double(summary.largest_tensor_bytes)).c_str(),
                format_bytes(double(summary.rss_before)).c_str(), format_bytes(double(summary.peak_rss)).c_str());
  });
}

}  // namespace vkt::app
