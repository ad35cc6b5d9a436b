#include "engine/model/lora_init.hpp"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"
#include "engine/kernels/random.hpp"
#include "engine/model/adapter.hpp"
#include "engine/quant/quantize.hpp"

namespace vkt::model {

using kernels::WeightFormat;
using spec::Module;

namespace {

// Row-major double matrices: (rows, cols).
struct Matrix {
  uint64_t rows = 0, cols = 0;
  std::vector<double> v;
  Matrix(uint64_t r, uint64_t c) : rows(r), cols(c), v(r * c, 0.0) {}
  double& at(uint64_t i, uint64_t j) { return v[i * cols + j]; }
  double at(uint64_t i, uint64_t j) const { return v[i * cols + j]; }
};

Matrix transpose(const Matrix& m) {
  Matrix t(m.cols, m.rows);
  for (uint64_t i = 0; i < m.rows; i++)
    for (uint64_t j = 0; j < m.cols; j++) t.at(j, i) = m.at(i, j);
  return t;
}

// op(x) · op(y) in double through BLAS (OpenBLAS where Debian's alternatives choose it), op = transpose
// where asked, so no transposed copy is made.
Matrix multiply(const Matrix& x, bool transpose_x, const Matrix& y, bool transpose_y) {
  const uint64_t rows = transpose_x ? x.cols : x.rows, inner = transpose_x ? x.rows : x.cols;
  const uint64_t cols = transpose_y ? y.rows : y.cols;
  VKT_ASSERT(inner == (transpose_y ? y.cols : y.rows), "lora_init multiply: inner sizes differ");
  Matrix z(rows, cols);
  cblas_dgemm(CblasRowMajor, transpose_x ? CblasTrans : CblasNoTrans, transpose_y ? CblasTrans : CblasNoTrans,
              static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(inner), 1.0, x.v.data(),
              static_cast<int>(x.cols), y.v.data(), static_cast<int>(y.cols), 0.0, z.v.data(),
              static_cast<int>(z.cols));
  return z;
}

// Thin QR of x (rows, cols): Q (rows, k), R (k, cols) with k = min(rows, cols), LAPACK's Householder
// signs (torch.linalg.qr's too).
std::pair<Matrix, Matrix> thin_qr(Matrix x) {
  const uint64_t k = std::min(x.rows, x.cols);
  std::vector<double> tau(k);
  lapack_int info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, static_cast<lapack_int>(x.rows), static_cast<lapack_int>(x.cols),
                                   x.v.data(), static_cast<lapack_int>(x.cols), tau.data());
  VKT_ASSERT(info == 0, "dgeqrf failed: " + std::to_string(info));
  Matrix r(k, x.cols), q(x.rows, k);
  for (uint64_t i = 0; i < k; i++)
    for (uint64_t j = i; j < x.cols; j++) r.at(i, j) = x.at(i, j);
  for (uint64_t i = 0; i < x.rows; i++)
    for (uint64_t j = 0; j < k; j++) q.at(i, j) = x.at(i, j);
  info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, static_cast<lapack_int>(x.rows), static_cast<lapack_int>(k),
                        static_cast<lapack_int>(k), q.v.data(), static_cast<lapack_int>(k), tau.data());
  VKT_ASSERT(info == 0, "dorgqr failed: " + std::to_string(info));
  return {std::move(q), std::move(r)};
}

// Thin SVD x = U diag(S) Vᵀ: U (rows, k), S (k) descending, Vᵀ (k, cols).
struct Svd {
  Matrix u, vt;
  std::vector<double> s;
};
Svd thin_svd(Matrix x) {
  const uint64_t k = std::min(x.rows, x.cols);
  Svd svd{Matrix(x.rows, k), Matrix(k, x.cols), std::vector<double>(k)};
  lapack_int info =
      LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', static_cast<lapack_int>(x.rows), static_cast<lapack_int>(x.cols),
                     x.v.data(), static_cast<lapack_int>(x.cols), svd.s.data(), svd.u.v.data(),
                     static_cast<lapack_int>(k), svd.vt.v.data(), static_cast<lapack_int>(x.cols));
  VKT_ASSERT(info == 0, "dgesdd did not converge: " + std::to_string(info));
  return svd;
}

// N(0, 1) values by Box-Muller from the counter-based generator, keyed by (seed, step, key).
std::vector<double> standard_normals(uint64_t count, uint64_t seed, uint32_t step, uint32_t key) {
  std::vector<float> uniform(count + (count & 1));
  ref::random_uniform(uniform.data(), uniform.size(), static_cast<uint32_t>(seed), random::stream_init, step, key);
  std::vector<double> normals(uniform.size());
  for (uint64_t i = 0; i < uniform.size(); i += 2) {
    const double radius = std::sqrt(-2.0 * std::log(1.0 - double(uniform[i])));  // 1 - u > 0
    normals[i] = radius * std::cos(2 * M_PI * double(uniform[i + 1]));
    normals[i + 1] = radius * std::sin(2 * M_PI * double(uniform[i + 1]));
  }
  normals.resize(count);
  return normals;
}

// torch.svd_lowrank(x, q, niter) (torch/_lowrank.py): Halko et al.'s randomized range finder with
// niter power iterations, on a = xᵀ when x is wide; U (rows, q), S (q), Vᵀ (q, cols).
Svd randomized_svd(const Matrix& x, uint64_t q, uint32_t niter, uint64_t seed, uint32_t key) {
  const bool wide = x.rows < x.cols;  // a = op(x): x itself, or xᵀ when wide
  Matrix draws(wide ? x.rows : x.cols, q);
  draws.v = standard_normals(draws.v.size(), seed, 3, key);
  Matrix basis = thin_qr(multiply(x, wide, draws, false)).first;  // (a.rows, q)
  for (uint32_t i = 0; i < niter; i++) {
    basis = thin_qr(multiply(x, !wide, basis, false)).first;  // aᵀ · basis
    basis = thin_qr(multiply(x, wide, basis, false)).first;   // a · basis
  }
  Svd small = thin_svd(multiply(basis, true, x, wide));  // basisᵀ · a: (q, a.cols)
  Matrix u = multiply(basis, false, small.u, false);     // (a.rows, q)
  if (!wide) return {std::move(u), std::move(small.vt), std::move(small.s)};
  return {transpose(small.vt), transpose(u), std::move(small.s)};  // x = aᵀ: swap the factors
}

// The top r singular triplets of x, as PEFT's exact pissa keeps them from torch.linalg.svd: the
// eigenvectors of the smaller Gram matrix (x xᵀ or xᵀ x, dsyrk) for its r largest eigenvalues only
// (dsyevr), the other side as xᵀu/σ (or xv/σ) with σ = that vector's norm. In double this is far
// cheaper than a full dgesdd (which computes every triplet) and accurate for the top r: a vector's
// error is about 1e-16·σ₁²/(σ_k² - σ_{k+1}²), where any SVD's (PEFT's fp32 one's too) is about
// 1e-7·σ₁/(σ_k - σ_{k+1}).
Svd top_svd(const Matrix& x, uint64_t rank) {
  const bool wide = x.rows <= x.cols;  // the Gram matrix of the smaller side: x xᵀ, or xᵀ x
  const uint64_t side = wide ? x.rows : x.cols, other = wide ? x.cols : x.rows;
  Matrix gram(side, side);
  cblas_dsyrk(CblasRowMajor, CblasUpper, wide ? CblasNoTrans : CblasTrans, static_cast<int>(side),
              static_cast<int>(other), 1.0, x.v.data(), static_cast<int>(x.cols), 0.0, gram.v.data(),
              static_cast<int>(side));
  std::vector<double> eigenvalues(side);
  Matrix vectors(side, rank);  // ascending eigenvalues: column 0 is the r-th largest
  std::vector<lapack_int> support(2 * rank);
  lapack_int found = 0;
  const lapack_int info = LAPACKE_dsyevr(
      LAPACK_ROW_MAJOR, 'V', 'I', 'U', static_cast<lapack_int>(side), gram.v.data(), static_cast<lapack_int>(side), 0.0,
      0.0, static_cast<lapack_int>(side - rank + 1), static_cast<lapack_int>(side), 0.0, &found, eigenvalues.data(),
      vectors.v.data(), static_cast<lapack_int>(rank), support.data());
  VKT_ASSERT(info == 0 && found == static_cast<lapack_int>(rank), "dsyevr failed: " + std::to_string(info));
  Matrix near(side, rank);  // the Gram side's vectors, descending
  for (uint64_t i = 0; i < side; i++)
    for (uint64_t k = 0; k < rank; k++) near.at(i, k) = vectors.at(i, rank - 1 - k);
  Matrix far = multiply(x, wide, near, false);  // (other, r): σ_k times the other side's vector k
  std::vector<double> s(rank);
  for (uint64_t k = 0; k < rank; k++) {
    double sum = 0;
    for (uint64_t i = 0; i < other; i++) sum += far.at(i, k) * far.at(i, k);
    s[k] = std::sqrt(sum);
    const double inverse = s[k] > 0 ? 1.0 / s[k] : 0.0;  // a zero σ (r > rank of x): no direction
    for (uint64_t i = 0; i < other; i++) far.at(i, k) *= inverse;
  }
  if (wide) return {std::move(near), transpose(far), std::move(s)};
  return {std::move(far), transpose(near), std::move(s)};
}

Matrix to_matrix(const std::vector<float>& values, uint64_t rows, uint64_t cols) {
  Matrix m(rows, cols);
  for (uint64_t i = 0; i < m.v.size(); i++) m.v[i] = values[i];
  return m;
}

// weight -= scale · B · A, the product of the fp32 A and B (as PEFT subtracts its fp32 factors) in double.
void subtract_product(std::vector<float>& weight, uint64_t out, uint64_t in, const LoraPair& pair, uint32_t rank,
                      float scale) {
  Matrix residual = to_matrix(weight, out, in), b = to_matrix(pair.b, out, rank), a = to_matrix(pair.a, rank, in);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(out), static_cast<int>(in),
              static_cast<int>(rank), -double(scale), b.v.data(), static_cast<int>(rank), a.v.data(),
              static_cast<int>(in), 1.0, residual.v.data(), static_cast<int>(in));
  for (uint64_t i = 0; i < weight.size(); i++) weight[i] = static_cast<float>(residual.v[i]);
}

void check_rank(uint64_t out, uint64_t in, uint32_t rank, const char* method) {
  if (rank > std::min(out, in))
    throw UserError(std::string("--init-lora-weights ") + method + ": r=" + std::to_string(rank) +
                        " exceeds a weight's smaller side (" + std::to_string(out) + " x " + std::to_string(in) + ")",
                    "lower --lora-r");
}

}  // namespace

std::string LoraInit::name() const {
  if (kind == LoraInitKind::pissa) return randomized ? "pissa_niter_" + std::to_string(niter) : "pissa";
  return kind == LoraInitKind::gaussian ? "gaussian" : kind == LoraInitKind::olora ? "olora" : "true";
}

LoraInit parse_lora_init(const std::string& text) {
  LoraInit init;
  if (text == "true" || text == "True") return init;
  if (text == "gaussian") {
    init.kind = LoraInitKind::gaussian;
    return init;
  }
  if (text == "pissa" || text == "olora") {
    init.kind = text == "pissa" ? LoraInitKind::pissa : LoraInitKind::olora;
    return init;
  }
  const std::string prefix = "pissa_niter_";
  if (text.rfind(prefix, 0) == 0 && text.size() > prefix.size() && text.size() <= prefix.size() + 4 &&
      std::all_of(text.begin() + prefix.size(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    init.kind = LoraInitKind::pissa;
    init.randomized = true;
    init.niter = static_cast<uint32_t>(std::stoul(text.substr(prefix.size())));
    return init;
  }
  throw UserError("--init-lora-weights " + text + " is not one of PEFT's initialisations vktune builds",
                  "true (kaiming A, zero B), gaussian, pissa, pissa_niter_K (e.g. pissa_niter_4) or olora");
}

LoraPair pissa_init(std::vector<float>& weight, uint64_t out, uint64_t in, uint32_t rank, float scale,
                    const RandomizedSvd* randomized) {
  check_rank(out, in, rank, "pissa");
  const Matrix w = to_matrix(weight, out, in);
  const Svd svd =
      randomized ? randomized_svd(w, rank, randomized->niter, randomized->seed, randomized->key) : top_svd(w, rank);
  LoraPair pair{std::vector<float>(uint64_t(rank) * in), std::vector<float>(out * rank)};
  for (uint32_t k = 0; k < rank; k++) {
    // PEFT: Sr /= scaling in fp32, then √Sr on both sides.
    const double root = std::sqrt(double(static_cast<float>(svd.s[k]) / scale));
    for (uint64_t j = 0; j < in; j++) pair.a[uint64_t(k) * in + j] = static_cast<float>(root * svd.vt.at(k, j));
    for (uint64_t i = 0; i < out; i++) pair.b[i * rank + k] = static_cast<float>(svd.u.at(i, k) * root);
  }
  subtract_product(weight, out, in, pair, rank, scale);
  return pair;
}

LoraPair olora_init(std::vector<float>& weight, uint64_t out, uint64_t in, uint32_t rank, float scale) {
  check_rank(out, in, rank, "olora");
  // Householder QR's first r reflectors come from the first r columns alone and later ones leave
  // Q's first r columns alone, so Q_r is the QR of W[:, :r] and R_r = Q_rᵀ W (its first r columns the
  // panel's own triangle): the same as torch.linalg.qr's Q[:, :r], R[:r] at O(out·in·r), not O(out·in·min).
  const Matrix w = to_matrix(weight, out, in);
  Matrix panel(out, rank);
  for (uint64_t i = 0; i < out; i++)
    for (uint32_t k = 0; k < rank; k++) panel.at(i, k) = w.at(i, k);
  auto [q, triangle] = thin_qr(std::move(panel));
  Matrix r = multiply(q, true, w, false);  // (r, in)
  for (uint32_t i = 0; i < rank; i++)
    for (uint32_t k = 0; k < rank; k++) r.at(i, k) = triangle.at(i, k);
  LoraPair pair{std::vector<float>(uint64_t(rank) * in), std::vector<float>(out * rank)};
  for (uint32_t k = 0; k < rank; k++) {
    for (uint64_t j = 0; j < in; j++) pair.a[uint64_t(k) * in + j] = static_cast<float>(r.at(k, j));
    for (uint64_t i = 0; i < out; i++) pair.b[i * rank + k] = static_cast<float>(q.at(i, k));
  }
  subtract_product(weight, out, in, pair, rank, scale);
  return pair;
}

std::vector<float> gaussian_lora_a(uint32_t rank, uint64_t in, uint64_t seed, uint32_t key) {
  const std::vector<double> normals = standard_normals(uint64_t(rank) * in, seed, 4, key);
  std::vector<float> a(normals.size());
  for (size_t i = 0; i < a.size(); i++) a[i] = static_cast<float>(normals[i] / rank);
  return a;
}

namespace {

// The pieces of a (possibly fused) owner's weight: (module, first row, rows).
struct Piece {
  Module module;
  uint64_t row, rows;
};
std::vector<Piece> owner_pieces(const spec::ModelShape& shape, Module owner) {
  std::vector<Piece> pieces;
  for (size_t m = 0; m < spec::module_count; m++) {
    const auto module = static_cast<Module>(m);
    if (spec::fused_owner(shape, module) == owner)
      pieces.push_back({module, spec::fused_row_offset(shape, module), spec::module_out_features(shape, module)});
  }
  return pieces;
}

// An NF4 weight of the device as the host layout (quant::QuantizedWeight) of (rows, cols).
quant::QuantizedWeight download_nf4(vk::Context& context, const ModelSession& session, const std::string& name,
                                    uint64_t rows, uint64_t cols) {
  const auto& s = session.plan.settings;
  quant::QuantizedWeight w;
  w.format = WeightFormat::nf4;
  w.rows = static_cast<uint32_t>(rows);
  w.cols = static_cast<uint32_t>(cols);
  w.block_size = s.quant_block;
  w.double_quant = s.double_quant;
  const BufferSet& buffers = *session.buffers;
  w.data.resize(w.padded_elements() / 2);
  context.download(buffers.buffer(name), w.data.data(), 0, w.data.size());
  if (w.double_quant) {
    w.absmax_codes.resize(w.blocks());
    w.absmax_scales.resize(w.groups());
    context.download(buffers.buffer(name + ".absmax_codes"), w.absmax_codes.data(), 0, w.absmax_codes.size());
    context.download(buffers.buffer(name + ".absmax_scales"), w.absmax_scales.data(), 0, w.absmax_scales.size() * 4);
    w.absmax_offset = session.loaded.absmax_offsets.at(name);
  } else {
    w.scales.resize(w.blocks());
    context.download(buffers.buffer(name + ".scales"), w.scales.data(), 0, w.scales.size() * 4);
  }
  return w;
}

void upload_nf4(vk::Context& context, ModelSession& session, const std::string& name, const quant::QuantizedWeight& w) {
  BufferSet& buffers = *session.buffers;
  context.upload(buffers.buffer(name), w.data.data(), 0, w.data.size());
  if (w.double_quant) {
    context.upload(buffers.buffer(name + ".absmax_codes"), w.absmax_codes.data(), 0, w.absmax_codes.size());
    context.upload(buffers.buffer(name + ".absmax_scales"), w.absmax_scales.data(), 0, w.absmax_scales.size() * 4);
    session.loaded.absmax_offsets[name] = w.absmax_offset;
  } else {
    context.upload(buffers.buffer(name + ".scales"), w.scales.data(), 0, w.scales.size() * 4);
  }
}

// The stored format of one piece, refused unless the init can read and write it back.
WeightFormat piece_format(const ModelSession& session, uint32_t layer, Module module) {
  const WeightFormat format = spec::linear_weight_format(session.plan.settings, layer, module);
  if (format == WeightFormat::f32 || format == WeightFormat::bf16 || format == WeightFormat::f16 ||
      format == WeightFormat::nf4)
    return format;
  throw UserError("--init-lora-weights pissa/olora changes the base weights, and " + layer_tensor_name(layer, module) +
                      " is stored as " + kernels::weight_format_name(format) +
                      " (not built: only fp32/bf16/fp16 and NF4 bases are rewritten)",
                  "load the unquantized model (QLoRA's NF4 is fine for olora), or use --init-lora-weights true");
}

}  // namespace

std::vector<float> read_base_weight(vk::Context& context, ModelSession& session, uint32_t layer, Module owner) {
  const spec::ModelShape& shape = session.plan.shape;
  const uint64_t in = spec::module_in_features(shape, owner);
  std::vector<float> values(spec::fused_out_features(shape, owner) * in);
  for (const Piece& piece : owner_pieces(shape, owner)) {
    const std::string name = layer_tensor_name(layer, piece.module);
    float* target = &values[piece.row * in];
    const uint64_t count = piece.rows * in;
    switch (piece_format(session, layer, piece.module)) {
      case WeightFormat::f32:
        context.download(session.buffers->buffer(name), target, 0, count * 4);
        break;
      case WeightFormat::nf4:
        quant::dequantize(download_nf4(context, session, name, piece.rows, in), target);
        break;
      default: {  // bf16 / fp16: widened exactly, as PEFT's weight.to(float32)
        const bool bf16 = piece_format(session, layer, piece.module) == WeightFormat::bf16;
        std::vector<uint16_t> packed(count);
        context.download(session.buffers->buffer(name), packed.data(), 0, count * 2);
        for (uint64_t i = 0; i < count; i++) target[i] = bf16 ? bf16_to_float(packed[i]) : half_to_float(packed[i]);
      }
    }
  }
  return values;
}

void write_base_weight(vk::Context& context, ModelSession& session, uint32_t layer, Module owner,
                       const std::vector<float>& values) {
  const spec::ModelShape& shape = session.plan.shape;
  const uint64_t in = spec::module_in_features(shape, owner);
  for (const Piece& piece : owner_pieces(shape, owner)) {
    const std::string name = layer_tensor_name(layer, piece.module);
    const float* source = &values[piece.row * in];
    const uint64_t count = piece.rows * in;
    const WeightFormat format = piece_format(session, layer, piece.module);
    if (format == WeightFormat::f32) {
      context.upload(session.buffers->buffer(name), source, 0, count * 4);
    } else if (format == WeightFormat::nf4) {  // PEFT's olora on bitsandbytes: the residual quantized again
      quant::QuantOptions options;
      options.block_size = session.plan.settings.quant_block;
      options.double_quant = session.plan.settings.double_quant;
      upload_nf4(context, session, name,
                 quant::quantize(source, static_cast<uint32_t>(piece.rows), static_cast<uint32_t>(in),
                                 WeightFormat::nf4, options, name));
    } else {
      std::vector<uint16_t> packed(count);
      for (uint64_t i = 0; i < count; i++)
        packed[i] = format == WeightFormat::bf16 ? float_to_bf16(source[i]) : float_to_half(source[i]);
      context.upload(session.buffers->buffer(name), packed.data(), 0, count * 2);
    }
  }
}

void record_lora_init(nlohmann::json& config, const LoraSettings& lora, const InitialLora& initial, bool convert) {
  if (initial.init.kind == LoraInitKind::kaiming) return;  // peft_lora_config's true; other families have no such key
  if (!convert || !initial.init.changes_base()) {          // gaussian: nothing to convert, PEFT records its name
    config["init_lora_weights"] = initial.init.name();
    return;
  }
  config["init_lora_weights"] = true;
  config["r"] = 2 * lora.rank;
  config["lora_alpha"] = lora.rslora ? double(lora.alpha) * std::sqrt(2.0) : 2.0 * double(lora.alpha);
}

TensorToWrite converted_lora_tensor(vk::Context& context, const BufferSet& buffers, const spec::ModelShape& shape,
                                    const LoraSettings& lora, const InitialLora& initial, uint32_t layer, Module module,
                                    bool a) {
  const uint64_t in = spec::module_in_features(shape, module), out = spec::fused_out_features(shape, module);
  const uint64_t rank = lora.rank;
  const std::string name = lora_buffer_name(shape, layer, module, a);
  const vk::Buffer* buffer = &buffers.buffer(name);
  const std::vector<float>* start = &initial.initial.at(name);
  std::vector<uint64_t> dims = a ? std::vector<uint64_t>{2 * rank, in} : std::vector<uint64_t>{out, 2 * rank};
  return {peft_tensor_name(shape, layer, module, a), FileDtype::F32, dims,
          [&context, buffer, start, a, rank, in, out](TensorSink& sink) {
            std::vector<float> trained(buffer->size() / 4);
            context.download(*buffer, trained.data());
            std::vector<float> joined(2 * rank * (a ? in : out));
            if (a) {  // rows: the trained A, then A0
              std::copy(trained.begin(), trained.begin() + rank * in, joined.begin());
              std::copy(start->begin(), start->end(), joined.begin() + rank * in);
            } else {  // per row of B: the trained B's r values, then -B0's
              for (uint64_t i = 0; i < out; i++)
                for (uint64_t k = 0; k < rank; k++) {
                  joined[i * 2 * rank + k] = trained[i * rank + k];
                  joined[i * 2 * rank + rank + k] = -(*start)[i * rank + k];
                }
            }
            sink.write(joined.data(), joined.size() * 4);
          }};
}

InitialLora apply_lora_init(vk::Context& context, ModelSession& session, const LoraSettings& lora, const LoraInit& init,
                            uint64_t seed) {
  InitialLora result{init, {}};
  if (init.kind == LoraInitKind::kaiming) return result;
  const spec::ModelShape& shape = session.plan.shape;
  if (init.kind == LoraInitKind::pissa && session.plan.settings.base_format == WeightFormat::nf4)
    throw UserError("--init-lora-weights " + init.name() +
                        " on an NF4 base: PEFT refuses it too (\"Please "
                        "initialize PiSSA under float32, float16, or bfloat16\")",
                    "train PiSSA on the unquantized model, or use --init-lora-weights olora on NF4");
  std::vector<std::pair<uint32_t, Module>> modules;
  for (uint32_t layer = 0; layer < shape.layers; layer++)
    if (lora.adapts_layer(layer))
      for (Module module : lora_owners(shape, lora.targets)) modules.emplace_back(layer, module);
  ProgressBar progress("lora init " + init.name(), static_cast<int64_t>(modules.size()));
  int64_t done = 0;
  for (const auto& [layer, module] : modules) {
    const uint64_t in = spec::module_in_features(shape, module), out = spec::fused_out_features(shape, module);
    const uint32_t key = layer * static_cast<uint32_t>(spec::module_count) + static_cast<uint32_t>(module);
    const std::string a_name = lora_buffer_name(shape, layer, module, true);
    const std::string b_name = lora_buffer_name(shape, layer, module, false);
    if (init.kind == LoraInitKind::gaussian) {  // B stays init_adapter's zeros
      const std::vector<float> a = gaussian_lora_a(lora.rank, in, seed, key);
      context.upload(session.buffers->buffer(a_name), a.data());
    } else {
      std::vector<float> weight = read_base_weight(context, session, layer, module);
      const RandomizedSvd randomized{init.niter, seed, key};
      const LoraPair pair = init.kind == LoraInitKind::olora ? olora_init(weight, out, in, lora.rank, lora.scale())
                                                             : pissa_init(weight, out, in, lora.rank, lora.scale(),
                                                                          init.randomized ? &randomized : nullptr);
      write_base_weight(context, session, layer, module, weight);
      context.upload(session.buffers->buffer(a_name), pair.a.data());
      context.upload(session.buffers->buffer(b_name), pair.b.data());
      result.initial[a_name] = pair.a;
      result.initial[b_name] = pair.b;
    }
    progress.update(++done, layer_tensor_name(layer, module));
  }
  progress.finish();
  session.transformer->set_absmax_offsets(session.loaded.absmax_offsets);  // NF4 weights quantized again
  return result;
}

}  // namespace vkt::model
