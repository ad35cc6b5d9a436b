// Shared by the "direct" attention shaders (attention_*_direct.comp), the bodies for CPU drivers
// such as lavapipe; the tiled shaders (attention.glsl) stay the GPU path.
//
// Why a second body: llvmpipe runs a subgroup as one SIMD vector but turns every load, from
// shared memory as from global memory, into one scalar access per lane, while arithmetic and
// shuffles stay SIMD (see matmul_direct.glsl). So here a workgroup is ONE subgroup, there is no
// shared memory and no barrier, every operand lives in registers, and lanes trade values by
// subgroup shuffles. Two layouts meet:
// - head vectors (q, k, v, d_o and the o/dq/dk/dv accumulators) are split over the lanes by
//   dimension: lane l holds the SLOTS dimension pairs ("words") l * SLOTS .. l * SLOTS + SLOTS - 1,
//   read as 64-bit words (llvmpipe moves a uint64 for the cost of one float), several per load;
// - scores are held one query row per lane: a q·k product is summed over this lane's
//   dimensions for SG rows at once, and one transposing butterfly (sum_across_lanes) leaves row
//   r's full score in lane r. Per-row softmax state (running max, sum, lse, delta, mask limits)
//   then needs no cross-lane reduction, and a probability reaches the dimension-split
//   accumulators by one shuffle per (row, key).
// Rows of a (sequence, kv head) are taken query-major over the q heads that share the kv head,
// as in attention.glsl: row R = i * group + g is query i of q head kv_head * group + g, so one
// K/V load serves the whole group.
//
// Every loop over registers is [[unroll]]ed: llvmpipe keeps constant-indexed arrays in registers
// but turns a dynamically indexed one into per-lane memory accesses. Masks and edge cases are
// arithmetic selects, not branches (llvmpipe runs both sides of a branch). The only rolled loops
// are the walks over keys (forward, dQ: KEYS at a time) or rows (dK/dV: SG at a time); the host
// keeps them below the ~65535 loop iterations llvmpipe allows one invocation. The unrolled body
// grows with BLOCK * KEYS * head_dim, and so does llvmpipe's compile time (seconds per shader).
//
// Before including this file a shader declares its push block `p` with at least
//   uint64_t q_segments, kv_segments; uint seq_q, seq_kv, q_heads, kv_heads, q_offset, window;
//   float softcap_log2; (attention_mask.glsl)
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "attention_mask.glsl"
#include "act_storage.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint SG = 8;            // subgroup size = workgroup size (fixed on the device)
layout(constant_id = 1) const uint HEAD_DIM = 64;     // a multiple of 4
layout(constant_id = 2) const uint BLOCK = 16;        // forward, dQ: query rows per workgroup; dK/dV: keys
layout(constant_id = 3) const uint WORDS = 1;         // 64-bit words per load: 1, 2 or 4
layout(constant_id = 4) const uint KEYS = 8;          // forward, dQ: keys per loop iteration, at most SG

const uint PAIRS = HEAD_DIM / 2;                // 64-bit words per head vector
const uint SLOTS = (PAIRS + SG - 1) / SG;       // words per lane
const bool ALL_SLOTS_FULL = PAIRS % SG == 0;    // no lane holds padding
const uint LOG2_SG = SG <= 1 ? 0 : SG <= 2 ? 1 : SG <= 4 ? 2 : SG <= 8 ? 3 : SG <= 16 ? 4 : SG <= 32 ? 5 : SG <= 64 ? 6 : 7;
const uint ROW_GROUPS = BLOCK / SG;             // forward, dQ: rows per lane

const float INF = 1.0 / 0.0;
const float LOG2E = 1.4426950408889634;
const float LN2 = 0.6931471805599453;

layout(buffer_reference, std430, buffer_reference_align = 8) buffer Words1 { uint64_t data[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer Words2 { u64vec2 data[]; };
layout(buffer_reference, std430, buffer_reference_align = 32) buffer Words4 { u64vec4 data[]; };

// Set by main from the workgroup id.
uint g_lane;
uint g_batch;    // sequence
uint g_kv_head;
uint g_group;    // q heads per kv head
uint g_rows;     // group * seq_q: rows of this (sequence, kv head)

// Word offset of row R's head vector in a (batch*seq_q, q_heads*HEAD_DIM) tensor.
uint query_word(uint R) {
  uint i = R / g_group;
  uint g = R - i * g_group;
  return ((g_batch * p.seq_q + i) * p.q_heads + g_kv_head * g_group + g) * PAIRS;
}

// Index of row R in a (batch, q_heads, seq_q) tensor (lse, delta).
uint row_stat_index(uint R) {
  uint i = R / g_group;
  uint g = R - i * g_group;
  return (g_batch * p.q_heads + g_kv_head * g_group + g) * p.seq_q + i;
}

// Word offset of key j's head vector in a (batch*seq_kv, kv_heads*HEAD_DIM) tensor.
uint key_word(uint j) { return ((g_batch * p.seq_kv + j) * p.kv_heads + g_kv_head) * PAIRS; }

// Segment ids of query i and key j of this sequence; 0 without segments (then all ids match).
// An `if`, not a select: with no segment buffer the load must not run (llvmpipe masks it off).
uint query_segment(uint i) {
  uint id = 0;
  if (p.q_segments != 0) id = UintBuffer(p.q_segments).data[g_batch * p.seq_q + i];
  return id;
}
uint key_segment(uint j) {
  uint id = 0;
  if (p.q_segments != 0) id = UintBuffer(p.kv_segments).data[g_batch * p.seq_kv + j];
  return id;
}

// This lane's words [s, s + WORDS) of the head vector at word offset `base`, read by one load of
// WORDS 64-bit components (llvmpipe loops over the lanes once per load, then reads each
// component: wider loads save that loop). Padding words read as zero, from a clamped address.
// The host picks WORDS so that it divides SLOTS and PAIRS and keeps every load aligned.
void load_words(uint64_t address, uint base, uint s, out vec2 words[4]) {
  uint first = g_lane * SLOTS + s;
  uint word = base + (ALL_SLOTS_FULL ? first : min(first, PAIRS - WORDS));
#ifdef ACT_16BIT
  // 16-bit activations: a word is one uint (two values), read one at a time.
  [[unroll]] for (uint e = 0; e < 4; e++) {
    words[e] = vec2(0.0);
    if (e < WORDS) words[e] = act_load2(address, word + e);
  }
#else
  if (WORDS == 4) {
    u64vec4 w = Words4(address).data[word / 4];
    words[0] = uintBitsToFloat(unpackUint2x32(w.x));
    words[1] = uintBitsToFloat(unpackUint2x32(w.y));
    words[2] = uintBitsToFloat(unpackUint2x32(w.z));
    words[3] = uintBitsToFloat(unpackUint2x32(w.w));
  } else if (WORDS == 2) {
    u64vec2 w = Words2(address).data[word / 2];
    words[0] = uintBitsToFloat(unpackUint2x32(w.x));
    words[1] = uintBitsToFloat(unpackUint2x32(w.y));
    words[2] = words[3] = vec2(0.0);
  } else {
    words[0] = uintBitsToFloat(unpackUint2x32(Words1(address).data[word]));
    words[1] = words[2] = words[3] = vec2(0.0);
  }
#endif
  // A chunk of WORDS words is all real or all padding (PAIRS is a multiple of WORDS).
  if (!ALL_SLOTS_FULL && first >= PAIRS) words[0] = words[1] = words[2] = words[3] = vec2(0.0);
}

void store_words(uint64_t address, uint base, uint s, vec2 words[4]) {
  uint first = g_lane * SLOTS + s;
  if (!ALL_SLOTS_FULL && first >= PAIRS) return;
  uint word = base + first;
#ifdef ACT_16BIT
  [[unroll]] for (uint e = 0; e < 4; e++)
    if (e < WORDS) act_store2(address, word + e, words[e]);
#else
  if (WORDS == 4) {
    Words4(address).data[word / 4] = u64vec4(packUint2x32(floatBitsToUint(words[0])), packUint2x32(floatBitsToUint(words[1])),
                                             packUint2x32(floatBitsToUint(words[2])), packUint2x32(floatBitsToUint(words[3])));
  } else if (WORDS == 2) {
    Words2(address).data[word / 2] = u64vec2(packUint2x32(floatBitsToUint(words[0])), packUint2x32(floatBitsToUint(words[1])));
  } else {
    Words1(address).data[word] = packUint2x32(floatBitsToUint(words[0]));
  }
#endif
}

// array[at + s] = this lane's slot s of the head vector at word offset `base`, for every s.
#define LOAD_SLOTS(array, at, address, base)                                  \
  [[unroll]] for (uint s_ = 0; s_ < SLOTS; s_ += WORDS) {                     \
    vec2 words_[4];                                                           \
    load_words(address, base, s_, words_);                                    \
    [[unroll]] for (uint e_ = 0; e_ < WORDS; e_++) array[(at) + s_ + e_] = words_[e_]; \
  }

// Stores array[at + s] * factor as this lane's slots of the head vector at word offset `base`.
#define STORE_SLOTS(array, at, factor, address, base)                         \
  [[unroll]] for (uint s_ = 0; s_ < SLOTS; s_ += WORDS) {                     \
    vec2 words_[4];                                                           \
    [[unroll]] for (uint e_ = 0; e_ < 4; e_++) words_[e_] = vec2(0.0);       \
    [[unroll]] for (uint e_ = 0; e_ < WORDS; e_++) words_[e_] = array[(at) + s_ + e_] * (factor); \
    store_words(address, base, s_, words_);                                   \
  }

// parts[j] holds this lane's share of item j (j < SG). Returns the full sum of item `lane` over
// all lanes: a butterfly that halves the items at each of log2(SG) steps, one shuffle per pair
// (SG - 1 shuffles for SG sums), the lanes keeping one half and sending the other.
float parts[SG];
float sum_across_lanes() {
  [[unroll]] for (uint step = 0; step < LOG2_SG; step++) {
    uint half_items = SG >> (step + 1);
    bool upper = (g_lane & half_items) != 0;
    [[unroll]] for (uint j = 0; j < SG / 2; j++) {
      if (j < half_items) {  // constant after unrolling
        float keep = mix(parts[j], parts[j + half_items], upper);
        float send = mix(parts[j + half_items], parts[j], upper);
        parts[j] = keep + subgroupShuffleXor(send, half_items);
      }
    }
  }
  return parts[0];
}
