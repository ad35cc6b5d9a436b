#pragma once
// Calibration activations for pruning (Wanda): the L2 norm of each input feature of every linear
// layer over the real tokens of a JSONL file, from one forward of the dense model (Wanda's code
// feeds each layer the outputs of the layers already pruned; vktune calibrates all layers on the
// dense model at once, which the Wanda paper reports as close).
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "engine/vk/context.hpp"

namespace vkt::train {

// By weight name ("model.layers.0.self_attn.q_proj.weight"; Phi-3: qkv_proj, gate_up_proj) ->
// (in-features) ‖X_j‖₂: q/k/v read the attention norm's output, o_proj the attention output,
// gate/up the MLP norm's output, down_proj act(gate)·up.
std::map<std::string, std::vector<float>> calibration_column_norms(vk::Context& context,
                                                                   const std::filesystem::path& model_dir,
                                                                   const std::filesystem::path& data,
                                                                   uint32_t max_length = 1024, uint32_t batch = 4);

}  // namespace vkt::train
