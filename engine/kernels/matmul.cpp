#include "engine/kernels/matmul.hpp"
#include "engine/kernels/matmul_lora_a.hpp"
#include "engine/kernels/matmul_swiglu.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <utility>

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"
#include "engine/base/log.hpp"
#include "engine/kernels/autotune.hpp"
#include "engine/kernels/matmul_coopmat.hpp"
#include "engine/kernels/quantize.hpp"
#include "engine/kernels/ranges.hpp"
#include "engine/vk/pipeline.hpp"
#include "engine/vk/subgroup_size.hpp"

namespace vkt::kernels {
namespace {

bool env_set(const char* name) {
  const char* value = std::getenv(name);
  return value && *value && std::strcmp(value, "0") != 0;
}

// Push constants of shaders/matmul.comp (std430 offsets). A quantized R operand takes quant.glsl's
// QuantWeight apart (data in r, stats0/stats1, absmax_offset; its encoding goes into
// specialization constants), so the block stays within the 128 bytes Vulkan guarantees.
struct MatmulPush {
  uint64_t l, r, c, bias;
  uint64_t r_stats0, r_stats1;
  uint64_t c2;  // matmul_nt_swiglu's h (the gate goes in `bias`), or the second product's C
  uint64_t r2;  // the second product's R (matmul_nt_lora_a's A)
  uint32_t stride_l, stride_r, stride_c;
  uint32_t rows, cols, inner;
  uint32_t ld_l, ld_r, ld_c;
  float alpha, beta;
  uint32_t group_rows;
  float r_absmax_offset;
  uint32_t r_index_offset;
  uint32_t cols2;  // the second product's columns
  float alpha2;    // the second product's alpha
};
static_assert(sizeof(MatmulPush) == 128);

// One operand of the canonical product C[i,j] = sum_p L[i,p] R[p,j] (see shaders/matmul.comp).
struct Operand {
  const BufferRange* range;
  DType type;
  bool p_contiguous;  // element (x, p) at x*ld + p; otherwise at p*ld + x
  uint32_t ld;        // leading dimension in elements
  uint32_t extent;    // rows of L / columns of R
  uint64_t batch_stride;
  const char* name;
  const WeightRef* quantized = nullptr;  // a quantized weight: must stay the R operand
};

// Elements an operand spans: the last batch entry's last element + 1.
uint64_t span(const Operand& operand, uint32_t inner, uint32_t batches) {
  uint64_t last = operand.p_contiguous ? uint64_t(operand.extent - 1) * operand.ld + (inner - 1)
                                       : uint64_t(inner - 1) * operand.ld + (operand.extent - 1);
  return uint64_t(batches - 1) * operand.batch_stride + last + 1;
}

// vec4 global loads need every group of 4 along the contiguous dimension to be whole and
// aligned to 4 elements: the contiguous extent, the leading dimension and the batch stride are
// multiples of 4, and for a dense operand the base address is aligned to 4 elements. A quantized
// weight is indexed by element, not by address: 4 elements at an index % 4 == 0 lie in one block
// and one 32-bit code word (its arrays are always word-aligned, see require_weight_bytes).
// Otherwise the shader loads scalars.
bool vec4_loads(const Operand& operand, uint32_t inner) {
  if (env_set("VKT_DISABLE_MATMUL_VEC4")) return false;
  uint32_t contiguous_extent = operand.p_contiguous ? inner : operand.extent;
  return contiguous_extent % 4 == 0 && operand.ld % 4 == 0 && operand.batch_stride % 4 == 0 &&
         (operand.quantized || operand.range->address % (4 * dtype_bytes(operand.type)) == 0);
}

uint32_t type_code(DType type) { return static_cast<uint32_t>(type); }  // shader: 0 fp32, 1 fp16, 2 bf16

// lavapipe (Mesa 22.3) counts the loop iterations of an invocation, all loops together, and
// silently leaves every loop after 65535 of them (CONVENTIONS.md). The direct body iterates
// inner/4 times and the tiled body inner/16 times (their other loops are unrolled), so on CPU
// drivers a longer inner dimension is split into dispatches of at most this many steps, each
// after the first accumulating into C (beta = 1): at most 32768 iterations per invocation (plus
// 256 where the direct body builds its NF4 pair table, shaders/nf4_pairs.glsl).
constexpr uint32_t cpu_inner_per_dispatch = 1u << 17;

// The direct body's inner steps per dispatch for matmul_nn with a dense weight, where R = W[N,K] is read
// across its rows: each tile reads tile_cols columns of every row of W, and its L strip (tile rows x
// inner) of A. With a long inner dimension (Qwen2.5-0.5B's MLP: 4864) neither strip stays in the CPU's
// L2 across tiles, and W comes back from L3 for every row tile in 128-byte pieces at a row stride. Inner
// passes of 2 KiB of W per column (512 fp32 steps; each pass after the first accumulates into C, beta 1)
// keep both strips in L2, as they are in the forward (nt): Qwen up dX (M=512 N=4864 K=896) 553-701 -> 283-290
// cpu ms, down dX (N=896 K=4864) 335 -> 289 (bench/matmul_nn.md). A quantized W is 4-8x smaller and
// already fits: passes there only add work (292 -> 320). The split depends on the operands only, never
// on the candidate tiling, so autotune candidates stay bit-identical. VKT_DISABLE_MATMUL_NN_SPLIT=1: off.
// An R of at most 32 columns (a LoRA B in dt = s·dy·B) is one column tile: nothing else reads the L strip,
// so it is not split either (and a fused second product, matmul_lora_a.hpp, then splits as its W does).
uint32_t direct_inner_per_dispatch(const Operand& left, const Operand& right) {
  if (!left.p_contiguous || right.p_contiguous || right.quantized || right.extent <= 32 ||
      env_set("VKT_DISABLE_MATMUL_NN_SPLIT"))
    return ~0u;
  return 2048u / dtype_bytes(right.type);
}

// The second product's R (matmul_lora_a.hpp) beside a product whose R is `right`: dense fp32, laid out
// as a dense R, with R's leading dimension when p is contiguous (the shader indexes both with ld_r), else
// with its own column count. Also how the second product's own dispatch reads it.
Operand second_operand(const SecondProduct& second, const Operand& right) {
  return Operand{&second.weight, DType::f32, right.p_contiguous, right.p_contiguous ? right.ld : second.cols,
                 second.cols, 0, "second R"};
}

// Records the dispatches of one product with `body_tiling` (a candidate of matmul_candidates), or with
// the coopmat body when `coopmat` is given (its workgroup tiles replace body_tiling's).
// `operand_ranges`: every range the operands read (a quantized weight's arrays).
void record_passes(Recorder& recorder, const char* label, const MatmulTiling& body_tiling, const Operand& left,
                   const Operand& right, const std::vector<BufferRange>& operand_ranges, const BufferRange& c,
                   DType c_type, uint32_t rows, uint32_t cols, uint32_t inner, float alpha, float beta,
                   const BufferRange* bias, const MatmulBatch& batch, const SwigluEpilogue* swiglu = nullptr,
                   const CoopmatTiling* coopmat = nullptr, const SecondProduct* second = nullptr) {
  const auto& caps = recorder.context().caps();
  MatmulTiling tiling = body_tiling;
  if (coopmat) {
    tiling = MatmulTiling{};
    tiling.tile_rows = coopmat->tile_rows();
    tiling.tile_cols = coopmat->tile_cols();
    tiling.tile_inner = coopmat->k;
    tiling.subgroup_size = coopmat->subgroup_size;
  }
  const WeightRef* quantized = right.quantized;
  bool needs_16bit = left.type != DType::f32 || right.type != DType::f32 || c_type != DType::f32;
  // Bias and the quantized-weight load stage index by the un-swapped operands, so a transposed
  // launch swaps L and R, rows and cols, and writes C (and reads the bias) transposed.
  const Operand* l = &left;
  const Operand* r = &right;
  if (tiling.transposed) {
    std::swap(l, r);
    std::swap(rows, cols);
  }
  bool l_vec4 = inner > 0 && vec4_loads(*l, inner);
  bool r_vec4 = inner > 0 && vec4_loads(*r, inner);
  std::optional<Operand> r2;
  if (second) {
    VKT_ASSERT(!coopmat && !swiglu && !tiling.transposed && batch.count == 1,
               std::string(label) + ": a second product runs only in the plain bodies, untransposed, one batch entry");
    r2 = second_operand(*second, right);
  }
  bool r2_vec4 = r2 && inner > 0 && vec4_loads(*r2, inner);
  std::string shader = coopmat ? "matmul_coopmat" : tiling.direct ? "matmul_direct" : "matmul";
  if (quantized) shader += "_q";
  if (needs_16bit && !coopmat) shader += "_s16";  // the coopmat body always reads 16-bit storage
  // The direct and coopmat bodies count on their subgroup size: asked for where the device can choose.
  shader = vk::subgroup_sized_shader(recorder.context(), shader, tiling.subgroup_size);

  uint32_t per_dispatch = caps.device_type == VK_PHYSICAL_DEVICE_TYPE_CPU ? cpu_inner_per_dispatch : inner;
  if (tiling.direct) per_dispatch = std::min(per_dispatch, direct_inner_per_dispatch(left, right));
  uint32_t p0 = 0;
  do {
    uint32_t pass_inner = std::min(inner - p0, std::max(per_dispatch, 1u));
    bool first = p0 == 0;
    float pass_beta = first ? beta : 1.0f;
    const BufferRange* pass_bias = first ? bias : nullptr;
    bool pass_swiglu = swiglu && p0 + pass_inner >= inner;
    std::vector<uint32_t> specialization = {coopmat ? coopmat->workgroup_size() : tiling.workgroup_size(),
                                            tiling.tile_rows,
                                            tiling.tile_cols,
                                            tiling.tile_inner,
                                            tiling.thread_rows,
                                            tiling.thread_cols,
                                            l->p_contiguous,
                                            r->p_contiguous,
                                            type_code(l->type),
                                            type_code(r->type),
                                            type_code(c_type),
                                            l_vec4,
                                            r_vec4,
                                            tiling.transposed,
                                            tiling.subgroup_size,
                                            pass_beta != 0.0f,
                                            pass_bias != nullptr};
    if (quantized) {
      QuantWeightPush encoded = quant_weight_push(*quantized);
      specialization.push_back(encoded.encoding & 0xffu);         // WEIGHT_FORMAT
      specialization.push_back((encoded.encoding >> 8) & 0xffu);  // WEIGHT_BLOCK_SHIFT
      specialization.push_back((encoded.encoding >> 16) & 1u);    // WEIGHT_DOUBLE_QUANT
    } else if (pass_swiglu || second) {
      specialization.insert(specialization.end(), {3u, 6u, 0u});  // unused by dense weights: the shader's defaults
    }
    // SWIGLU_EPILOGUE (constant_id 20), SECOND_PRODUCT and R2_VEC4 (21, 22); never with coopmat.
    if (pass_swiglu || second) specialization.push_back(pass_swiglu);
    if (second) specialization.insert(specialization.end(), {1u, r2_vec4, !first});  // ACCUMULATE2: later passes
    if (coopmat) {
      specialization.resize(20, 0u);  // constants 17..19 unused by a dense weight
      specialization.insert(specialization.end(), {coopmat->m, coopmat->n, coopmat->k});  // 20..22
    }
    // This pass reads steps p0 .. p0+pass_inner of both operands: dense ones start that many
    // elements (p contiguous) or rows (otherwise) later, a quantized one that many indices later.
    auto step_offset = [&](const Operand& operand) { return uint64_t(p0) * (operand.p_contiguous ? 1 : operand.ld); };
    MatmulPush push{};
    push.l = l->range->address + step_offset(*l) * dtype_bytes(l->type);
    push.r = r->range->address + (quantized ? 0 : step_offset(*r) * dtype_bytes(r->type));
    push.c = c.address;
    push.bias = pass_bias ? pass_bias->address : pass_swiglu ? swiglu->gate.address : 0;
    push.c2 = pass_swiglu ? swiglu->h.address : second ? second->c.address : 0;
    if (second) {
      push.r2 = r2->range->address + step_offset(*r2) * dtype_bytes(DType::f32);
      push.cols2 = second->cols;
      push.alpha2 = second->alpha;
    }
    push.stride_l = static_cast<uint32_t>(l->batch_stride);  // record() checked that they fit
    push.stride_r = static_cast<uint32_t>(r->batch_stride);
    push.stride_c = static_cast<uint32_t>(batch.stride_c);
    push.rows = rows;
    push.cols = cols;
    push.inner = pass_inner;
    push.ld_l = l->ld;
    push.ld_r = r->ld;
    push.ld_c = tiling.transposed ? rows : cols;  // C's row length: its original column count
    push.alpha = alpha;
    push.beta = pass_beta;
    if (quantized) {
      QuantWeightPush encoded = quant_weight_push(*quantized);
      push.r = encoded.data;
      push.r_stats0 = encoded.stats0;
      push.r_stats1 = encoded.stats1;
      push.r_absmax_offset = encoded.absmax_offset;
      push.r_index_offset = static_cast<uint32_t>(step_offset(*r));
    }

    // Column tiles: C's, then the second product's (shaders/matmul.comp SECOND_PRODUCT).
    uint32_t col_tiles = ceil_div(cols, tiling.tile_cols) + (second ? ceil_div(second->cols, tiling.tile_cols) : 0);
    Grid grid{col_tiles, ceil_div(rows, tiling.tile_rows), batch.count};
    if (tiling.direct) {
      // One line of tiles, visited in groups of row tiles whose L rows fit a typical CPU L2
      // (512 KiB), see shaders/matmul_direct.glsl.
      uint64_t strip_bytes = uint64_t(tiling.tile_rows) * std::max(pass_inner, 1u) * dtype_bytes(l->type);
      push.group_rows = static_cast<uint32_t>(std::clamp<uint64_t>((512u << 10) / strip_bytes, 1, 16));
      Grid line = grid_1d(uint64_t(grid.x) * grid.y, 1);
      grid.x = line.x;
      grid.y = line.y;
    }

    std::vector<BufferRange> reads = operand_ranges;
    if (pass_beta != 0.0f) reads.push_back(c);
    if (pass_bias) reads.push_back(*pass_bias);
    std::vector<BufferRange> writes = {c};
    if (second) {
      if (!first) reads.push_back(second->c);  // ACCUMULATE2: later passes add into C2
      writes.push_back(second->c);
    }
    if (pass_swiglu) {
      reads.push_back(swiglu->gate);
      writes.push_back(swiglu->h);
    }
    record_dispatch(recorder, {.shader = shader,
                               .specialization = specialization,
                               .push = push,
                               .grid = grid,
                               .reads = reads,
                               .writes = writes,
                               .label = label});
    p0 += pass_inner;
  } while (p0 < inner);
}
// The shape class of a product for autotuning: each extent rounded up to a power of two.
std::string shape_bucket(uint32_t rows, uint32_t cols, uint32_t inner, uint32_t batches) {
  auto up = [](uint32_t x) { return std::to_string(std::bit_ceil(std::max(x, 1u))); };
  return "r" + up(rows) + "|c" + up(cols) + "|k" + up(inner) + (batches > 1 ? "|b" + up(batches) : "");
}

// Milliseconds of one product with `tiling`: the first batch entry, at most one inner pass and at
// most autotune_output_bytes of output rows, written into a scratch C (the real C may hold data the
// recording still needs); the operands are read where they are (their contents do not matter for
// timing). One warm-up run, then the median of three: device time from timestamp queries on GPUs; on
// CPU drivers the process's CPU time, since lavapipe's timestamps are wall time and swing with
// whatever else the cores run (the work itself is what the process spends). The scratch is not in the
// plan: the ledger's peaks are put back after it is freed.
constexpr uint64_t autotune_output_bytes = 16u << 20;
double process_cpu_ms() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return now.tv_sec * 1e3 + now.tv_nsec * 1e-6;
}
// Rows and inner extent a timing run uses for a product (see time_candidate).
struct TimedExtent {
  uint32_t rows, inner;
};
TimedExtent timed_extent(const vk::Context& context, DType c_type, uint32_t rows, uint32_t cols, uint32_t inner) {
  bool cpu_driver = context.caps().device_type == VK_PHYSICAL_DEVICE_TYPE_CPU;
  uint64_t row_bytes = uint64_t(cols) * dtype_bytes(c_type);
  return {static_cast<uint32_t>(std::clamp<uint64_t>(autotune_output_bytes / row_bytes, 1, rows)),
          cpu_driver ? std::min(inner, cpu_inner_per_dispatch) : inner};
}

// Milliseconds of what `record_timed` records (every dispatch of it) into scratch outputs of
// `scratch_bytes` each (the real outputs may hold data the recording still needs): a warm-up run,
// then the median of three, as time_candidate describes. The scratch is not in the plan: the
// ledger's peaks are put back after it is freed.
double time_recording(vk::Context& context, const std::vector<uint64_t>& scratch_bytes,
                      const std::function<void(Recorder&, const std::vector<BufferRange>&)>& record_timed) {
  bool cpu_driver = context.caps().device_type == VK_PHYSICAL_DEVICE_TYPE_CPU;
  vk::LedgerSnapshot before = context.ledger().snapshot();
  std::vector<double> samples;
  {
    std::vector<vk::Buffer> scratch;
    std::vector<BufferRange> outputs;
    for (uint64_t bytes : scratch_bytes) {
      scratch.push_back(context.allocate(bytes, vk::Category::workspace, "autotune scratch output"));
      outputs.push_back(scratch.back().range());
    }
    vk::Sequence sequence(context, !cpu_driver);
    sequence.record([&](Recorder& recorder) { record_timed(recorder, outputs); });
    context.submit({&sequence});  // warm-up: first touch of the memory, driver-side compilation
    for (int run = 0; run < 3; run++) {
      auto start = std::chrono::steady_clock::now();
      double cpu_start = process_cpu_ms();
      context.submit({&sequence});
      double cpu_ms = process_cpu_ms() - cpu_start;
      double host_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      std::vector<vk::KernelTiming> timings = sequence.timings();
      double device_ms = 0;
      for (const vk::KernelTiming& timing : timings) device_ms += timing.milliseconds;
      samples.push_back(cpu_driver ? cpu_ms : timings.empty() ? host_ms : device_ms);
    }
  }
  context.ledger().restore_peaks(before);
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

double time_candidate(vk::Context& context, const MatmulTiling& tiling, const Operand& left, const Operand& right,
                      const std::vector<BufferRange>& operand_ranges, DType c_type, uint32_t rows, uint32_t cols,
                      uint32_t inner, const CoopmatTiling* coopmat) {
  TimedExtent timed = timed_extent(context, c_type, rows, cols, inner);
  return time_recording(context, {uint64_t(timed.rows) * cols * dtype_bytes(c_type)},
                        [&](Recorder& recorder, const std::vector<BufferRange>& scratch) {
                          record_passes(recorder, "autotune", tiling, left, right, operand_ranges, scratch[0], c_type,
                                        timed.rows, cols, timed.inner, 1.0f, 0.0f, nullptr, MatmulBatch{}, nullptr,
                                        coopmat);
                        });
}

// The check a coopmat candidate passes before it is timed (matmul_coopmat.hpp): a random problem of
// its shape class (left's layout and type; right's, random too unless quantized: then the product's own
// weight), extents clamped, computed by `coopmat` and by `fallback`, compared by coopmat_verdict.
// Called while the caller records: its own host-visible buffers (memcpy, no one-shot uploads) and
// its own sequence, as time_candidate.
CoopmatVerdict verify_coopmat(vk::Context& context, const CoopmatTiling& coopmat, const MatmulTiling& fallback,
                              const Operand& left, const Operand& right, DType c_type, uint32_t rows, uint32_t cols,
                              uint32_t inner) {
  rows = std::min(rows, 256u);
  cols = std::min(cols, 256u);
  inner = std::min(inner, 2048u);
  std::mt19937 random(19);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  auto random_f16 = [&](size_t count) {
    std::vector<uint16_t> values(count);
    for (uint16_t& value : values) value = float_to_half(uniform(random));
    return values;
  };
  vk::LedgerSnapshot before = context.ledger().snapshot();
  CoopmatVerdict verdict;
  {
    auto host_visible = [&](const std::vector<uint16_t>& values, const char* name) {
      vk::Buffer buffer = context.allocate(values.size() * 2, vk::Category::workspace, name, vk::MemoryKind::staging);
      std::memcpy(buffer.mapped(), values.data(), values.size() * 2);
      return buffer;
    };
    vk::Buffer l_buffer = host_visible(random_f16(size_t(rows) * inner), "coopmat check L");
    BufferRange l_range = l_buffer.range();
    Operand l{&l_range, DType::f16, left.p_contiguous, left.p_contiguous ? inner : rows, rows, 0, "L"};
    Operand r = right;
    r.batch_stride = 0;
    vk::Buffer r_buffer;
    BufferRange r_range;
    std::vector<BufferRange> reads = {l_range};
    if (right.quantized) {
      for (const BufferRange& range : quant_weight_reads(*right.quantized)) reads.push_back(range);
    } else {
      r_buffer = host_visible(random_f16(size_t(cols) * inner), "coopmat check R");
      r_range = r_buffer.range();
      r = Operand{&r_range, DType::f16, right.p_contiguous, right.p_contiguous ? inner : cols, cols, 0, "R"};
      reads.push_back(r_range);
    }
    size_t outputs = size_t(rows) * cols;
    std::vector<std::vector<float>> results;
    for (const CoopmatTiling* with_coopmat : {&coopmat, static_cast<const CoopmatTiling*>(nullptr)}) {
      vk::Buffer c_buffer = context.allocate(outputs * dtype_bytes(c_type), vk::Category::workspace, "coopmat check C",
                                             vk::MemoryKind::staging);
      BufferRange c_range = c_buffer.range();
      vk::Sequence sequence(context);
      sequence.record([&](Recorder& recorder) {
        record_passes(recorder, "coopmat check", fallback, l, r, reads, c_range, c_type, rows, cols, inner, 1.0f, 0.0f,
                      nullptr, MatmulBatch{}, nullptr, with_coopmat);
      });
      context.submit({&sequence});  // every sequence ends with a barrier that makes its writes host-visible
      std::vector<float> values(outputs);
      if (c_type == DType::f32) {
        std::memcpy(values.data(), c_buffer.mapped(), outputs * 4);
      } else {
        const auto* bits = static_cast<const uint16_t*>(c_buffer.mapped());
        for (size_t i = 0; i < outputs; i++)
          values[i] = c_type == DType::f16 ? half_to_float(bits[i]) : bf16_to_float(bits[i]);
      }
      results.push_back(std::move(values));
    }
    verdict = coopmat_verdict(results[0], results[1]);
  }
  context.ledger().restore_peaks(before);
  return verdict;
}

void record(Recorder& recorder, const char* label, const Operand& left, const Operand& right, const BufferRange& c,
            DType c_type, uint32_t rows, uint32_t cols, uint32_t inner, float alpha, float beta,
            const BufferRange* bias, const MatmulBatch& batch, const SwigluEpilogue* swiglu = nullptr,
            const SecondProduct* second = nullptr) {
  auto& context = recorder.context();
  const auto& caps = context.caps();
  std::string where = std::string(label) + " (" + std::to_string(rows) + "x" + std::to_string(cols) + "x" +
                      std::to_string(inner) + ", batch " + std::to_string(batch.count) + ")";
  if (rows == 0 || cols == 0 || batch.count == 0) return;
  VKT_ASSERT(batch.count <= caps.max_workgroup_count[2], where + ": batch count above the device's workgroup limit");
  VKT_ASSERT(!left.quantized, where + ": only the weight operand may be quantized");
  const WeightRef* quantized = right.quantized;

  bool needs_16bit = left.type != DType::f32 || right.type != DType::f32 || c_type != DType::f32;
  if (needs_16bit && !caps.storage_16bit)
    throw UserError(where + ": fp16/bf16 tensors need 16-bit storage buffers, which " + caps.name + " lacks",
                    "use fp32 activations and weights on this device");

  // Bounds: every range must hold what the shader will touch.
  std::vector<BufferRange> operand_ranges = {*left.range};
  if (quantized) {
    for (const BufferRange& range : quant_weight_reads(*quantized)) operand_ranges.push_back(range);
  } else {
    operand_ranges.push_back(*right.range);
  }
  for (const Operand* operand : {&left, &right}) {
    if (inner == 0) break;
    uint64_t elements = span(*operand, inner, batch.count);
    if (operand->quantized) {
      require_weight_bytes(*operand->quantized, elements, where);
      continue;
    }
    require_bytes(*operand->range, elements * dtype_bytes(operand->type), where, operand->name);
  }
  for (uint64_t stride : {left.batch_stride, right.batch_stride, batch.stride_c})
    VKT_ASSERT(stride <= UINT32_MAX, where + ": batch strides above 2^32 elements");
  uint64_t c_bytes = (uint64_t(batch.count - 1) * batch.stride_c + uint64_t(rows) * cols) * dtype_bytes(c_type);
  require_bytes(c, c_bytes, where, "C");
  // The second product's operand, as its own matmul_nt / matmul_nn sees it (the fallback below records that).
  std::optional<Operand> second_right;
  if (second) {
    VKT_ASSERT(!swiglu && batch.count == 1 && left.p_contiguous && second->cols > 0,
               where + ": a second product takes no SwiGLU epilogue and one batch entry, nt or nn");
    VKT_ASSERT(!right.p_contiguous || right.ld == inner, where + ": the second R shares W's leading dimension");
    second_right = second_operand(*second, right);
    if (inner > 0) require_bytes(second->weight, span(*second_right, inner, 1) * 4, where, "second R");
    require_bytes(second->c, uint64_t(rows) * second->cols * dtype_bytes(c_type), where, "second C");
    VKT_ASSERT(!second->c.overlaps(c), where + ": the two outputs overlap");
    operand_ranges.push_back(second->weight);
  }
  if (bias) require_bytes(*bias, uint64_t(cols) * 4, where, "bias");
  if (swiglu) {
    VKT_ASSERT(!bias && batch.count == 1, where + ": the SwiGLU epilogue takes no bias and one batch entry");
    require_bytes(swiglu->gate, uint64_t(rows) * cols * dtype_bytes(c_type), where, "gate");
    require_bytes(swiglu->h, uint64_t(rows) * cols * dtype_bytes(c_type), where, "h");
  }
  for (const BufferRange& range : operand_ranges) {
    VKT_ASSERT(range.bytes == 0 || !range.overlaps(c), where + ": an operand overlaps the output");
    VKT_ASSERT(range.bytes == 0 || !second || !range.overlaps(second->c), where + ": an operand overlaps the output");
  }

  // A fused second product keeps R's columns across the lanes: no transposed launch.
  std::vector<MatmulTiling> candidates = matmul_candidates(context, rows, cols, !quantized && !second);
  // The coopmat body, where offered, is the last candidate (index candidates.size()).
  // (Not with the SwiGLU epilogue: the coopmat body has none.)
  std::optional<CoopmatTiling> coopmat =
      swiglu ? std::nullopt : coopmat_tiling(context, left.type, right.type, quantized);
  std::vector<std::string> names;
  for (const MatmulTiling& candidate : candidates) names.push_back(candidate.name());
  if (coopmat) names.push_back(coopmat->name());
  uint32_t choice = 0;
  std::string shape_class = std::string(candidates[0].direct ? "matmul_direct" : "matmul") + "|" +
                            (left.p_contiguous ? "l" : "L") + (right.p_contiguous ? "r" : "R") + "|" +
                            std::to_string(type_code(left.type)) + std::to_string(type_code(right.type)) +
                            std::to_string(type_code(c_type)) + "|w" +
                            std::to_string(quantized ? static_cast<uint32_t>(quantized->format) : 0u) + "|" +
                            shape_bucket(rows, cols, inner, batch.count) + (swiglu ? "|swiglu" : "") +
                            (second ? "|second" : "");
  if (names.size() > 1) {
    choice = autotune_choose(context, shape_class, names, [&](uint32_t candidate) -> double {
      if (candidate == candidates.size()) {
        CoopmatVerdict verdict =
            verify_coopmat(recorder.context(), *coopmat, candidates[0], left, right, c_type, rows, cols, inner);
        if (!verdict.matches) {
          log::warn("matmul: the cooperative-matrix body " + coopmat->name() + " disagrees with " +
                    candidates[0].name() + " on " + shape_class + " (relative error " +
                    std::to_string(verdict.relative_error) + " > " + std::to_string(coopmat_tolerance) +
                    "): not used; VKT_NO_COOPMAT=1 skips the check");
          return INFINITY;
        }
        return time_candidate(recorder.context(), candidates[0], left, right, operand_ranges, c_type, rows, cols, inner,
                              &*coopmat);
      }
      return time_candidate(recorder.context(), candidates[candidate], left, right, operand_ranges, c_type, rows, cols,
                            inner, nullptr);
    });
  }
  note_matmul_path(std::string(label) + " " + dtype_name(left.type) + "." +
                       (quantized ? weight_format_name(quantized->format) : dtype_name(right.type)) + "->" +
                       dtype_name(c_type) + " " + std::to_string(rows) + "x" + std::to_string(cols) + "x" +
                       std::to_string(inner),
                   names[choice]);
  bool use_coopmat = coopmat && choice == candidates.size();
  // Where the matrix units run the main product (the coopmat body has no second product), or the
  // fusion is switched off, the second product gets its own dispatch.
  // Fused, the second product is summed in the main product's inner passes (CPU drivers): only where
  // its own dispatch would pass the same way does it stay bit-identical to that dispatch.
  bool same_passes = !second || !candidates[0].direct ||
                     std::min(direct_inner_per_dispatch(left, right), inner) ==
                         std::min(direct_inner_per_dispatch(left, *second_right), inner);
  bool fuse = second && same_passes && !use_coopmat && !env_set("VKT_DISABLE_FUSED_LORA_A");
  if (fuse) {
    // The fused second product's column tiles are as wide as the main product's: on a GPU's 128-wide
    // tiles a rank-16 T is mostly padding, against the launch and the read of A it saves. Where tuning
    // is on, both ways are timed and the faster one is kept (the default, untuned: fused).
    const MatmulTiling& tiling = candidates[choice];
    std::string fusion_class = shape_class + "|c2_" + std::to_string(std::bit_ceil(second->cols));
    fuse = autotune_choose(context, fusion_class, {"fused", "separate"}, [&](uint32_t way) -> double {
      TimedExtent timed = timed_extent(context, c_type, rows, cols + second->cols, inner);
      uint64_t column_bytes = uint64_t(timed.rows) * dtype_bytes(c_type);
      return time_recording(
          context, {column_bytes * cols, column_bytes * second->cols},
          [&](Recorder& timing, const std::vector<BufferRange>& scratch) {
            SecondProduct timed_second{second->weight, scratch[1], second->cols, second->alpha};
            record_passes(timing, "autotune", tiling, left, right, operand_ranges, scratch[0], c_type, timed.rows, cols,
                          timed.inner, 1.0f, 0.0f, nullptr, MatmulBatch{}, nullptr, nullptr,
                          way == 0 ? &timed_second : nullptr);
            if (way == 0) return;
            record_passes(timing, "autotune", matmul_tiling(context, timed.rows, second->cols), left, *second_right,
                          {*left.range, second->weight}, scratch[1], c_type, timed.rows, second->cols, timed.inner,
                          second->alpha, 0.0f, nullptr, MatmulBatch{});
          });
    }) == 0;
  }
  record_passes(recorder, label, candidates[use_coopmat ? 0 : choice], left, right, operand_ranges, c, c_type, rows,
                cols, inner, alpha, beta, bias, batch, swiglu, use_coopmat ? &*coopmat : nullptr,
                fuse ? second : nullptr);
  if (second && !fuse)
    record(recorder, right.p_contiguous ? "matmul_nt" : "matmul_nn", left, *second_right, second->c, c_type, rows,
           second->cols, inner, second->alpha, 0.0f, nullptr, MatmulBatch{});
}

DType dense_type(WeightFormat format) {
  switch (format) {
    case WeightFormat::f16:
      return DType::f16;
    case WeightFormat::bf16:
      return DType::bf16;
    default:
      return DType::f32;
  }
}

// The operands of matmul_nt (L = A[M,K], R = W[N,K]ᵀ) and of matmul_nn (L = A[M,N], R = W[N,K]); they
// point at `a` and `w`.
struct Operands {
  Operand left, right;
};
Operands nt_operands(const BufferRange& a, DType a_type, const WeightRef& w, uint32_t m, uint32_t n, uint32_t k,
                     const MatmulBatch& batch = {}) {
  return {{&a, a_type, true, k, m, batch.stride_a, "A"},
          {&w.data, dense_type(w.format), true, k, n, batch.stride_b, "W", is_quantized(w.format) ? &w : nullptr}};
}
Operands nn_operands(const BufferRange& a, DType a_type, const WeightRef& w, uint32_t m, uint32_t n, uint32_t k,
                     const MatmulBatch& batch = {}) {
  return {{&a, a_type, true, n, m, batch.stride_a, "A"},
          {&w.data, dense_type(w.format), false, k, k, batch.stride_b, "W", is_quantized(w.format) ? &w : nullptr}};
}

}  // namespace

MatmulTiling matmul_tiling(vk::Context& context, uint32_t rows, uint32_t cols, bool allow_transpose) {
  const auto& caps = context.caps();
  bool small_tiles = env_set("VKT_DISABLE_MATMUL_LARGE_TILES");
  MatmulTiling tiling;
  // The direct body wants a CPU driver (loads are per-lane scalar accesses there, see
  // shaders/matmul_direct.glsl) and a subgroup size the shader can count on.
  tiling.direct = caps.device_type == VK_PHYSICAL_DEVICE_TYPE_CPU && caps.subgroup_size >= 4 &&
                  caps.min_subgroup_size == caps.max_subgroup_size && caps.subgroup_shuffle &&
                  !env_set("VKT_DISABLE_MATMUL_DIRECT");
  if (tiling.direct) {
    // Each lane keeps 32 rows x 4 columns of accumulators: per step over P it loads 4 + 32/8
    // values (as 64-bit words) for 128 FMAs, and the 128 accumulators stay in registers and L1.
    // Measured on lavapipe (1024^3 fp32 nt, quiet machine): 32x4 ~45 GFLOP/s with a 0.6 s
    // compile; 32x32 16 and 8.5 s (accumulators spill); 16x8 40; 8x8 28.
    uint32_t lanes = caps.subgroup_size;
    tiling.subgroup_size = lanes;
    tiling.thread_cols = 4;
    // A thin output (a LoRA rank) goes down the rows, so the lanes' 4-column groups are full.
    tiling.transposed = allow_transpose && cols < lanes * tiling.thread_cols && rows > cols;
    uint32_t down = tiling.transposed ? cols : rows;
    tiling.thread_rows = lanes;  // a multiple of the subgroup size: each lane loads whole rows
    while (tiling.thread_rows < 32 && down > tiling.thread_rows && !small_tiles) tiling.thread_rows *= 2;
    tiling.tile_rows = tiling.thread_rows;
    tiling.tile_cols = lanes * tiling.thread_cols;
    tiling.tile_inner = 4;
    return tiling;
  }
  // Tiled: 8x8 outputs per thread, 16 shared-memory values read per 64 FMAs. The workgroup tile
  // shrinks to 64 or 32 along a dimension that small, so thin products (decode, LoRA ranks) do
  // not compute mostly padding.
  auto tile_for = [&](uint32_t extent) -> uint32_t {
    return small_tiles || extent <= 32 ? 32 : extent <= 64 ? 64 : 128;
  };
  tiling.tile_rows = tile_for(rows);
  tiling.tile_cols = tile_for(cols);
  // Workgroups above the device limit (at least 128 in Vulkan) lose the tall tile.
  while (tiling.workgroup_size() > caps.max_workgroup_invocations && tiling.tile_rows > 32) tiling.tile_rows /= 2;
  tiling.tile_inner = 16;
  VKT_ASSERT(tiling.shared_bytes() <= caps.max_shared_memory, "matmul tile does not fit shared memory");
  return tiling;
}

std::string MatmulTiling::name() const {
  std::string shape = std::to_string(tile_rows) + "x" + std::to_string(tile_cols) + "/" + std::to_string(thread_rows) +
                      "x" + std::to_string(thread_cols);
  return (direct ? (transposed ? "direct-t " : "direct ") : "tiled ") + shape;
}

std::vector<MatmulTiling> matmul_candidates(vk::Context& context, uint32_t rows, uint32_t cols, bool allow_transpose) {
  const auto& caps = context.caps();
  MatmulTiling base = matmul_tiling(context, rows, cols, allow_transpose);
  std::vector<MatmulTiling> candidates = {base};
  // A kill switch pins the tiles: nothing to tune.
  if (env_set("VKT_DISABLE_MATMUL_LARGE_TILES")) return candidates;
  auto add = [&](MatmulTiling candidate) {
    for (const MatmulTiling& known : candidates)
      if (known.name() == candidate.name()) return;
    if (candidate.workgroup_size() > caps.max_workgroup_invocations) return;
    if (candidate.shared_bytes() > caps.max_shared_memory) return;
    candidates.push_back(candidate);
  };
  if (base.direct) {
    // Rows per subgroup (a multiple of the subgroup size, 32 at most: more spills) and 4 or 8
    // columns per lane; never a taller tile than the output has rows.
    uint32_t lanes = base.subgroup_size;
    uint32_t down = base.transposed ? cols : rows;
    for (uint32_t thread_cols : {4u, 8u})
      for (uint32_t thread_rows = lanes; thread_rows <= 32; thread_rows *= 2) {
        if (thread_rows > lanes && thread_rows / 2 >= down) break;
        if (thread_cols == 8 && thread_rows > 16) break;  // 32x8: 256 accumulators per lane spill
        MatmulTiling candidate = base;
        candidate.thread_rows = candidate.tile_rows = thread_rows;
        candidate.thread_cols = thread_cols;
        candidate.tile_cols = lanes * thread_cols;
        add(candidate);
      }
    return candidates;
  }
  // Tiled: a few workgroup tiles (none more than twice the output's extent), 8x8 outputs per thread
  // or 4x4 for small tiles; each candidate is one more pipeline to compile, so the list stays short.
  auto fits = [](uint32_t tile, uint32_t extent) { return tile <= 32 || tile / 2 < extent; };
  struct Shape {
    uint32_t rows, cols, thread;
  };
  for (Shape shape : {Shape{128, 128, 8}, Shape{128, 64, 8}, Shape{64, 128, 8}, Shape{64, 64, 8}, Shape{64, 64, 4},
                      Shape{32, 32, 4}}) {
    if (!fits(shape.rows, rows) || !fits(shape.cols, cols)) continue;
    MatmulTiling candidate = base;
    candidate.tile_rows = shape.rows;
    candidate.tile_cols = shape.cols;
    candidate.thread_rows = candidate.thread_cols = shape.thread;
    add(candidate);
  }
  return candidates;
}

void matmul_nt(Recorder& recorder, const BufferRange& a, DType a_type, const WeightRef& w, const BufferRange& c,
               DType c_type, uint32_t m, uint32_t n, uint32_t k, float alpha, float beta, const BufferRange* bias,
               MatmulBatch batch) {
  Operands operands = nt_operands(a, a_type, w, m, n, k, batch);
  record(recorder, "matmul_nt", operands.left, operands.right, c, c_type, m, n, k, alpha, beta, bias, batch);
}

void matmul_nt_swiglu(Recorder& recorder, const BufferRange& a, DType a_type, const WeightRef& w, const BufferRange& c,
                      DType c_type, uint32_t m, uint32_t n, uint32_t k, float alpha, float beta,
                      const SwigluEpilogue& swiglu) {
  Operands operands = nt_operands(a, a_type, w, m, n, k);
  record(recorder, "matmul_nt_swiglu", operands.left, operands.right, c, c_type, m, n, k, alpha, beta, nullptr,
         MatmulBatch{}, &swiglu);
}

void matmul_nt_lora_a(Recorder& recorder, const BufferRange& a, DType a_type, const WeightRef& w, const BufferRange& c,
                      DType c_type, uint32_t m, uint32_t n, uint32_t k, const BufferRange* bias,
                      const SecondProduct& lora_a) {
  Operands operands = nt_operands(a, a_type, w, m, n, k);
  record(recorder, "matmul_nt_lora_a", operands.left, operands.right, c, c_type, m, n, k, 1.0f, 0.0f, bias,
         MatmulBatch{}, nullptr, &lora_a);
}

void matmul_nn_lora_b(Recorder& recorder, const BufferRange& a, DType a_type, const WeightRef& w, const BufferRange& c,
                      DType c_type, uint32_t m, uint32_t n, uint32_t k, float beta, const SecondProduct& lora_b) {
  Operands operands = nn_operands(a, a_type, w, m, n, k);
  record(recorder, "matmul_nn_lora_b", operands.left, operands.right, c, c_type, m, k, n, 1.0f, beta, nullptr,
         MatmulBatch{}, nullptr, &lora_b);
}

void matmul_nn(Recorder& recorder, const BufferRange& a, DType a_type, const WeightRef& w, const BufferRange& c,
               DType c_type, uint32_t m, uint32_t n, uint32_t k, float alpha, float beta, MatmulBatch batch) {
  Operands operands = nn_operands(a, a_type, w, m, n, k, batch);
  record(recorder, "matmul_nn", operands.left, operands.right, c, c_type, m, k, n, alpha, beta, nullptr, batch);
}

void matmul_tn(Recorder& recorder, const BufferRange& a, DType a_type, const BufferRange& b, DType b_type,
               const BufferRange& c, uint32_t m, uint32_t n, uint32_t k, float alpha, float beta, MatmulBatch batch) {
  Operand left{&a, a_type, false, n, n, batch.stride_a, "A"};
  Operand right{&b, b_type, false, k, k, batch.stride_b, "B"};
  record(recorder, "matmul_tn", left, right, c, DType::f32, n, k, m, alpha, beta, nullptr, batch);
}

}  // namespace vkt::kernels

namespace vkt::ref {

void matmul_nt(const float* a, const float* w, float* c, uint32_t m, uint32_t n, uint32_t k, float alpha, float beta,
               const float* bias) {
  for (uint32_t i = 0; i < m; i++)
    for (uint32_t j = 0; j < n; j++) {
      double sum = 0;
      for (uint32_t p = 0; p < k; p++) sum += double(a[size_t(i) * k + p]) * w[size_t(j) * k + p];
      double value = double(alpha) * sum + (beta == 0 ? 0.0 : double(beta) * c[size_t(i) * n + j]);
      if (bias) value += bias[j];
      c[size_t(i) * n + j] = static_cast<float>(value);
    }
}

void matmul_nn(const float* a, const float* w, float* c, uint32_t m, uint32_t n, uint32_t k, float alpha, float beta) {
  std::vector<double> row(k);
  for (uint32_t i = 0; i < m; i++) {
    std::fill(row.begin(), row.end(), 0.0);
    for (uint32_t p = 0; p < n; p++) {
      double a_ip = a[size_t(i) * n + p];
      const float* w_row = w + size_t(p) * k;
      for (uint32_t j = 0; j < k; j++) row[j] += a_ip * w_row[j];
    }
    for (uint32_t j = 0; j < k; j++) {
      float& out = c[size_t(i) * k + j];
      out = static_cast<float>(double(alpha) * row[j] + (beta == 0 ? 0.0 : double(beta) * out));
    }
  }
}

void matmul_tn(const float* a, const float* b, float* c, uint32_t m, uint32_t n, uint32_t k, float alpha, float beta) {
  std::vector<double> sums(size_t(n) * k, 0.0);
  for (uint32_t p = 0; p < m; p++)
    for (uint32_t i = 0; i < n; i++) {
      double a_pi = a[size_t(p) * n + i];
      const float* b_row = b + size_t(p) * k;
      double* out = sums.data() + size_t(i) * k;
      for (uint32_t j = 0; j < k; j++) out[j] += a_pi * b_row[j];
    }
  for (size_t e = 0; e < sums.size(); e++)
    c[e] = static_cast<float>(double(alpha) * sums[e] + (beta == 0 ? 0.0 : double(beta) * c[e]));
}

}  // namespace vkt::ref
