// Gemma's sliding window and score soft-capping, shared by the tiled (attention.glsl) and the
// direct (attention_direct.glsl) attention shaders. The push block `p` has, besides q_offset,
//   uint window;         // 0: no window; else query at position P sees keys j > P - window
//   float softcap_log2;  // 0: no capping; else softcap * log2(e), scores being in base 2

// The first key query i of this sequence sees under the window (causal limit aside).
uint window_start(uint i) {
  uint position = p.q_offset + i;
  return (p.window != 0u && position >= p.window) ? position + 1u - p.window : 0u;
}

// A base-2 score s soft-capped: c * tanh(s / c) with c = softcap_log2, which is the base-2 form of
// softcap * tanh(score / softcap) (Gemma 2's attn_logit_softcapping). |s / c| > 15 gives +-1 in
// fp32; the clamp keeps an exp-based tanh finite.
float cap_score(float s) {
  return p.softcap_log2 > 0.0 ? p.softcap_log2 * tanh(clamp(s / p.softcap_log2, -15.0, 15.0)) : s;
}

// d cap_score(s) / ds = 1 - tanh^2, from the capped score.
float cap_slope(float capped) {
  float t = p.softcap_log2 > 0.0 ? capped / p.softcap_log2 : 0.0;
  return 1.0 - t * t;
}
