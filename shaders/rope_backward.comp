#version 460
#extension GL_GOOGLE_include_directive : require
// RoPE backward: the inverse rotation (rope.glsl with sin negated).
#define BACKWARD
#include "rope.glsl"
