#include "engine/train/lora_init_run.hpp"

#include "engine/base/error.hpp"
#include "engine/model/lora_init.hpp"

namespace vkt::train {

void validate_lora_init(const TrainConfig& c) {
  using kernels::WeightFormat;
  const model::LoraInit init = model::parse_lora_init(c.init_lora_weights);
  if (init.kind == model::LoraInitKind::kaiming) return;
  const std::string flag = "--init-lora-weights " + c.init_lora_weights;
  if (c.method == spec::Method::full)
    throw UserError(flag + " initialises LoRA's A and B; --method full has none", "drop it, or use --method lora");
  if (c.peft_type != spec::PeftType::lora)
    throw UserError(flag + " goes with --peft-type lora (PEFT's LoraConfig; DoRA with it is not built), not " +
                        std::string(spec::peft_type_name(c.peft_type)),
                    "drop --init-lora-weights, or use --peft-type lora");
  if (!c.adapter.empty())
    throw UserError(flag + " starts a new adapter; --adapter " + c.adapter + " continues one",
                    "drop one of them (a run interrupted is resumed with --resume-from-checkpoint)");
  const bool nf4 = c.method == spec::Method::qlora || c.quant == WeightFormat::nf4;
  if (init.kind == model::LoraInitKind::pissa && (nf4 || c.quant != WeightFormat::f32))
    throw UserError(flag + " on a quantized base (" + (nf4 ? std::string("NF4") : kernels::quant_name(c.quant)) +
                        "): PEFT refuses it too (\"Please initialize PiSSA under float32, float16, or bfloat16\")",
                    "train PiSSA with --method lora on the unquantized model, or use --init-lora-weights olora "
                    "(which PEFT and vktune run on the dequantized NF4 weight, then quantize the residual)");
  if (init.kind == model::LoraInitKind::olora && !nf4 && c.quant != WeightFormat::f32)
    throw UserError(flag + " on a --quant " + kernels::quant_name(c.quant) + " base is not built (NF4 is)",
                    "use --method qlora, or --quant none");
}

}  // namespace vkt::train
