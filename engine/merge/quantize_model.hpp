#pragma once
// `vktune quantize`: post-training quantization of every linear weight of a model (the seven
// projections of each layer); embeddings, lm_head, norms and biases are kept as they are.
//   nf4                 written in bitsandbytes' layout exactly as transformers saves a
//                       load_in_4bit model (tests/data/golden/README.md "The NF4 checkpoints"):
//                       <name> U8 [ceil(n/2), 1], <name>.absmax (U8 codes with double
//                       quantization, else F32), .quant_map, [.nested_absmax, .nested_quant_map],
//                       .quant_state.bitsandbytes__nf4 (JSON), and config.json quantization_config
//                       {"quant_method": "bitsandbytes", "load_in_4bit": true, ...}: vktune
//                       (--method qlora) and transformers + bitsandbytes load it. Checked against
//                       tests/data/golden/llama-nf4 (written by transformers): every tensor equal
//                       except the nested_quant_map, which is the map our codes were chosen with
//                       (bitsandbytes' formula, exact) where torch's AVX2 linspace differs by 1-2
//                       ulp in 44 of 256 entries; loaders use the stored map. With double
//                       quantization a first pass over the weights computes each quant state's
//                       offset (its JSON spelling sets the tensor's length in the file header).
//   int8 int4 int4-asym vktune's layout (engine/model/weights.hpp read_vktune_quantized), with
//                       quantization_config {"quant_method": "vktune", "format", "block_size",
//                       "original_dtype"}; vktune loads it for inference and as a LoRA base.
// The codes are computed on the device (engine/quant/device.hpp, bit-identical to the CPU
// quantizers); the error of each weight (RMSE, max |w - dequant(q(w))|) is measured on the host.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/kernels/types.hpp"
#include "engine/merge/output.hpp"
#include "engine/vk/context.hpp"

namespace vkt::merge {

struct QuantizeOptions {
  std::filesystem::path model;
  std::filesystem::path output;
  kernels::WeightFormat format = kernels::WeightFormat::nf4;
  uint32_t block_size = 64;
  bool double_quant = false;  // nf4: bitsandbytes' compress_statistics
  uint64_t max_shard_bytes = default_max_shard_bytes;
  bool show_progress = true;
};

struct QuantizedTensorReport {
  std::string name;
  uint64_t elements = 0;
  double rmse = 0;            // sqrt(mean (w - dequant)^2)
  double max_error = 0;       // max |w - dequant|
  double max_abs_weight = 0;  // max |w|, for the relative error
  double bound = 0;           // the format's worst-case error for this weight (see quantize.cpp)
  uint64_t bytes_before = 0, bytes_after = 0;
};

struct QuantizeSummary {
  std::vector<QuantizedTensorReport> tensors;  // the quantized weights, in file order
  uint64_t bytes_before = 0;                   // all tensors of the input checkpoint (as stored)
  uint64_t bytes_after = 0;                    // all tensors written
  std::vector<std::filesystem::path> files;
  double seconds = 0;
};

QuantizeSummary quantize_model(vk::Context& context, const QuantizeOptions& options);

// "nf4", "int8", "int4", "int4-asym" -> WeightFormat; UserError otherwise.
kernels::WeightFormat parse_quantize_format(const std::string& text);

// The largest |w - dequant(q(w))| the format allows for a block whose largest magnitude is
// `absmax` (and range [lo, hi] for int4-asym): int8 scale/2 = absmax/254, int4 absmax/14 (codes
// -8..7 with scale absmax/7), int4-asym (hi-lo)/30, nf4 half the widest gap between neighbouring
// NF4 code values times absmax (a value is rounded to the nearer of two codes), plus for double
// quantization the error of the decoded absmax times 1 (|code| <= 1). Used by the report and
// the tests.
double quantization_error_bound(kernels::WeightFormat format, double absmax, double lo, double hi);

}  // namespace vkt::merge
