#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// RoPE forward; the body is in rope.glsl, shared with rope_backward.
#include "rope.glsl"
