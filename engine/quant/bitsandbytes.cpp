#include "engine/quant/bitsandbytes.hpp"

#include <algorithm>
#include <cstring>

#include "engine/base/error.hpp"

namespace vkt::quant {

QuantizedWeight from_bitsandbytes_nf4(const BitsandbytesNf4& source, const std::string& name) {
  QuantizedWeight q;
  q.format = WeightFormat::nf4;
  q.rows = source.rows;
  q.cols = source.cols;
  q.block_size = source.blocksize;
  check_block_size(WeightFormat::nf4, source.blocksize, name);
  uint64_t n = q.elements(), blocks = q.blocks();
  if (source.packed == nullptr || source.packed_bytes != (n + 1) / 2) {
    throw UserError(name + ": the packed 4-bit weight holds " + std::to_string(source.packed_bytes) + " bytes, " +
                        std::to_string((n + 1) / 2) + " expected for shape [" + std::to_string(q.rows) + ", " +
                        std::to_string(q.cols) + "]",
                    "check the quant_state shape and that the file is a bitsandbytes 4-bit checkpoint");
  }
  if (source.quant_map && std::memcmp(source.quant_map, nf4_table().data(), 16 * sizeof(float)) != 0) {
    throw UserError(name + ": quant_map is not bitsandbytes' NF4 table (an fp4 checkpoint?)",
                    "only nf4 4-bit checkpoints are supported; requantize with bnb_4bit_quant_type=\"nf4\"");
  }
  q.data.assign(q.padded_elements() / 2, 0x77);  // code 7 = 0.0 for the padding
  std::memcpy(q.data.data(), source.packed, source.packed_bytes);

  bool nested = source.absmax_codes != nullptr;
  if (!nested) {
    if (!source.absmax) throw UserError(name + ": no absmax in the quant state", "the checkpoint is incomplete");
    q.scales.assign(source.absmax, source.absmax + blocks);
    return q;
  }
  if (!source.nested_absmax || source.nested_blocksize == 0) {
    throw UserError(name + ": nested (double-quantized) absmax without nested_absmax", "the checkpoint is incomplete");
  }
  bool our_map =
      !source.nested_quant_map || std::memcmp(source.nested_quant_map, dynamic_map().data(), 256 * sizeof(float)) == 0;
  if (our_map && source.nested_blocksize == double_quant_group) {
    q.double_quant = true;
    q.absmax_codes.assign(source.absmax_codes, source.absmax_codes + blocks);
    q.absmax_scales.assign(source.nested_absmax, source.nested_absmax + q.groups());
    q.absmax_offset = source.nested_offset;
    return q;
  }
  // Decode with the checkpoint's own map and group size, as bitsandbytes' dequantize would.
  const float* map = source.nested_quant_map ? source.nested_quant_map : dynamic_map().data();
  q.scales.resize(blocks);
  for (uint64_t b = 0; b < blocks; b++)
    q.scales[b] =
        rounded(map[source.absmax_codes[b]] * source.nested_absmax[b / source.nested_blocksize]) + source.nested_offset;
  return q;
}

}  // namespace vkt::quant
