#pragma once
// PEFT's init_lora_weights beyond the default (peft 0.21.2, peft/tuners/lora/layer.py):
//   true           A kaiming-uniform, B zero (init_adapter, adapter.hpp)
//   gaussian       A ~ N(0, (1/r)²), B zero
//   pissa          W = U S Vᵀ (exact SVD): B = U_r √(S_r/s), A = √(S_r/s) V_rᵀ, and the base becomes the
//                  residual W - s·B·A (s = the LoRA scale), so the model's output is unchanged
//   pissa_niter_K  the same from torch.svd_lowrank's randomized SVD (q = r, K subspace iterations):
//                  Halko et al.'s algorithm from our own Gaussian draws, so not bit-comparable to PEFT
//   olora          W = Q R (thin QR): B = Q[:, :r], A = R[:r], base W - s·B·A
// The SVD/QR runs on the host (LAPACKE + CBLAS, double precision; OpenBLAS where Debian's alternatives
// pick it) once at load time, module by module, computing only what PEFT keeps: exact pissa's top r
// triplets from the r largest eigenpairs of the smaller Gram matrix (not a full SVD), olora's Q[:, :r],
// R[:r] from the QR of W's first r columns (not a full QR; the same Householder factors). On an
// NF4 base, OLoRA works as PEFT's on bitsandbytes: on the dequantized weight, the residual quantized
// again; PiSSA on a quantized base is refused, as PEFT refuses it (pissa_init's TypeError).
//
// PiSSA/OLoRA train against a changed base, so the adapter a run finally saves is converted as PEFT's
// save_pretrained(path_initial_model_for_weight_conversion=...) converts it: ΔW = B·A - B0·A0 written
// as plain LoRA of rank 2r (A' = [A; A0], B' = [B, -B0], lora_alpha doubled (×√2 with rsLoRA) so the
// scale is unchanged, init_lora_weights true), which works on the original base. Checkpoints keep the
// rank-r adapter with init_lora_weights "pissa"/"olora" (as PEFT saves it unconverted); a resumed run
// recomputes the residual and A0/B0 from the same base and seed.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/base/progress.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/session.hpp"

namespace vkt::model {

enum class LoraInitKind { kaiming, gaussian, pissa, olora };

struct LoraInit {
  LoraInitKind kind = LoraInitKind::kaiming;
  uint32_t niter = 0;  // pissa_niter_K: K (pissa with niter 0 is the exact SVD)
  bool randomized = false;
  std::string name() const;  // PEFT's spelling: "true", "gaussian", "pissa", "pissa_niter_4", "olora"
  bool changes_base() const { return kind == LoraInitKind::pissa || kind == LoraInitKind::olora; }
};
// "true" | "gaussian" | "pissa" | "pissa_niter_K" | "olora" (PEFT's names; "True" too); UserError otherwise.
LoraInit parse_lora_init(const std::string& text);

// A (r, in) and B (out, r) of one module, row-major fp32.
struct LoraPair {
  std::vector<float> a, b;
};
// pissa_niter_K's randomized SVD: K subspace iterations, Gaussian draws keyed by (seed, key).
struct RandomizedSvd {
  uint32_t niter = 0;
  uint64_t seed = 0;
  uint32_t key = 0;
};
// PiSSA of `weight` (out, in) row-major: returns A, B and replaces `weight` by the residual
// W - scale·B·A (computed from the fp32 A, B). Exact SVD unless `randomized` is given.
// UserError when r > min(out, in).
LoraPair pissa_init(std::vector<float>& weight, uint64_t out, uint64_t in, uint32_t rank, float scale,
                    const RandomizedSvd* randomized = nullptr);
// OLoRA of `weight` (out, in): B = Q[:, :r], A = R[:r]; `weight` becomes W - scale·B·A.
LoraPair olora_init(std::vector<float>& weight, uint64_t out, uint64_t in, uint32_t rank, float scale);
// (r, in) values ~ N(0, (1/r)²) keyed by (seed, key).
std::vector<float> gaussian_lora_a(uint32_t rank, uint64_t in, uint64_t seed, uint32_t key);

// What an init left for the save: its name and, when it changed the base, A0/B0 of every adapted
// module by LoRA buffer name ("model.layers.0.self_attn.q_proj.lora_A").
struct InitialLora {
  LoraInit init;
  std::map<std::string, std::vector<float>> initial;
};

// save_adapter's part: init_lora_weights into adapter_config.json `config` (PEFT's name; with
// `convert` and an init that changed the base: true, r doubled, lora_alpha doubled (×√2 with rsLoRA) as PEFT's
// save_pretrained does; nothing for init true).
void record_lora_init(nlohmann::json& config, const LoraSettings& lora, const InitialLora& initial, bool convert);
// One tensor of the converted adapter: A' = [A; A0] (2r, in) or B' = [B, -B0] (out, 2r), A and B
// read from the device when written.
TensorToWrite converted_lora_tensor(vk::Context& context, const BufferSet& buffers, const spec::ModelShape& shape,
                                    const LoraSettings& lora, const InitialLora& initial, uint32_t layer,
                                    spec::Module module, bool a);

// After init_adapter: applies `init` to the session's adapter (and, for PiSSA/OLoRA, its base
// weights, on the device), with a progress bar over the modules. UserError for a base it cannot
// change (int8/int4, GGUF blocks; PiSSA on NF4).
InitialLora apply_lora_init(vk::Context& context, ModelSession& session, const LoraSettings& lora, const LoraInit& init,
                            uint64_t seed);

// The base linear weight of (layer, owner) as fp32 (out = fused rows, in), read back from the device
// (dense or NF4, dequantized), and its write-back (NF4 quantized again); what apply_lora_init uses.
std::vector<float> read_base_weight(vk::Context& context, ModelSession& session, uint32_t layer, spec::Module owner);
void write_base_weight(vk::Context& context, ModelSession& session, uint32_t layer, spec::Module owner,
                       const std::vector<float>& values);

}  // namespace vkt::model
