#version 460
#extension GL_GOOGLE_include_directive : require
// RoPE forward; the body is in rope.glsl, shared with rope_backward.
#include "rope.glsl"
