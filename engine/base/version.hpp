#pragma once
// vktune's version: `vktune --version`, and part of the autotune cache key (engine/kernels/autotune.hpp).
namespace vkt {
inline constexpr const char* vktune_version = "0.1.0";
}  // namespace vkt
