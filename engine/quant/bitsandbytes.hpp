#pragma once
// Loading a bitsandbytes NF4 weight (Params4bit + QuantState.as_dict(), as transformers saves
// QLoRA checkpoints) into a QuantizedWeight. bitsandbytes' layout is ours except for length: it
// stores ceil(n/2) code bytes, we store whole blocks, so the tail is padded with code 7 (0.0).
//
// The checkpoint carries its own maps ("quant_map", "nested_quant_map"). The NF4 table must be
// ours (otherwise it is not NF4: fp4 is refused). The nested map is built by torch.linspace at
// quantization time and can differ from dynamic_map() in the last ulp of a few entries with other
// torch builds; the shaders hold dynamic_map() as constants, so in that case (or for a nested
// blocksize other than 256) the absmax values are decoded here with the checkpoint's own map and
// stored as fp32 (double_quant = false): exact, at 3.5 extra bytes per block.
#include <cstdint>
#include <string>

#include "engine/quant/quantize.hpp"

namespace vkt::quant {

struct BitsandbytesNf4 {
  uint32_t rows = 0, cols = 0;      // the weight's shape (quant_state "shape"), (out, in)
  uint32_t blocksize = 64;          // quant_state "blocksize"
  const uint8_t* packed = nullptr;  // the weight tensor's bytes: (ceil(rows*cols/2)) uint8, any quant_storage
  uint64_t packed_bytes = 0;
  const float* quant_map = nullptr;  // (16) fp32 "quant_map"; optional
  // Without double quantization:
  const float* absmax = nullptr;  // (blocks) fp32 "absmax"
  // With double quantization ("nested_*" present):
  const uint8_t* absmax_codes = nullptr;    // (blocks) uint8 "absmax"
  const float* nested_absmax = nullptr;     // (ceil(blocks/nested_blocksize)) fp32
  const float* nested_quant_map = nullptr;  // (256) fp32; optional (then dynamic_map() is assumed)
  float nested_offset = 0;
  uint32_t nested_blocksize = 256;
};

// Throws UserError (naming `name`) when the tensors do not describe an NF4 weight of that shape.
QuantizedWeight from_bitsandbytes_nf4(const BitsandbytesNf4& source, const std::string& name);

}  // namespace vkt::quant
