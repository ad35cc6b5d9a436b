#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// RoPE backward: the inverse rotation (rope.glsl with sin negated).
#define BACKWARD
#include "rope.glsl"
