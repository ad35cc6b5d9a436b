// QAT's fake quantization (engine/quant/fake_quant.hpp) against engine/quant's quantize then
// dequantize on the CPU: the quantization kernels are bit-identical to engine/quant, so the round
// trip is too. Suite kernels_quant.
#include <doctest/doctest.h>

#include "engine/quant/fake_quant.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/support.hpp"

using namespace vkt;
using kernels::WeightFormat;
using test::context;
using test::Guarded;

TEST_SUITE("kernels_quant") {

TEST_CASE("fake_quantize: equals quantize then dequantize, bit for bit (nf4, int8, int4, int4_asym)") {
  for (WeightFormat format : {WeightFormat::nf4, WeightFormat::int8, WeightFormat::int4, WeightFormat::int4_asym})
    for (auto shape : {std::pair{7u, 33u}, std::pair{64u, 64u}}) {
      const uint32_t rows = shape.first, cols = shape.second, block = 64;
      const uint64_t n = uint64_t(rows) * cols;
      INFO(std::string(kernels::quant_name(format)) << " " << rows << "x" << cols);
      auto w = test::random_floats(n, 401, -0.5f, 0.5f);
      Guarded wb = Guarded::of(w, "w"), out(n * 4, "out");
      Guarded codes(quant::fake_quant_codes_bytes(format, n, block), "codes");
      Guarded scales(quant::fake_quant_scales_bytes(n, block), "scales"), zeros((n + block - 1) / block + 4, "zeros");
      context().run([&](vk::Recorder& r) {
        quant::fake_quantize(r, wb.range(), n, format, block, codes.range(), scales.range(), zeros.range(),
                             out.range());
      });
      std::vector<float> expected = ref::fake_quantize(w.data(), rows, cols, format, block);
      test::check_close(out.floats(), expected, 0, 0, "fake-quantized w");
      CHECK(expected != w);  // the round trip does change the weights
      CHECK(out.guard_intact());
    }
}

}  // TEST_SUITE
