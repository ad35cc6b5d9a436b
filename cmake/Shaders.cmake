# Compiles every shaders/*.comp with glslangValidator and embeds the SPIR-V in a static library
# with a lookup by name (engine/vk/shader_registry.hpp).
#
# A shader declares extra variants in its first lines as
#   //! variant f16: -DSTORAGE_F16
# which builds "<stem>" (no defines) and "<stem>_f16" (with them). A compile error fails the
# build with glslang's "file:line: message".
function(vktune_compile_shaders target shader_dir)
  file(GLOB shader_sources CONFIGURE_DEPENDS ${shader_dir}/*.comp)
  # Cooperative-matrix shaders (shaders/coopmat/*.comp): only with a glslang that knows
  # GL_KHR_cooperative_matrix (cmake/Coopmat.cmake), for Vulkan 1.3; without one they are skipped.
  if(VKT_COOPMAT_COMPILER)
    file(GLOB coopmat_sources CONFIGURE_DEPENDS ${shader_dir}/coopmat/*.comp)
    list(APPEND shader_sources ${coopmat_sources})
  endif()
  set(out_dir ${CMAKE_BINARY_DIR}/shaders)
  file(MAKE_DIRECTORY ${out_dir})
  set(embedded_sources "")
  set(shader_names "")
  foreach(source ${shader_sources})
    get_filename_component(stem ${source} NAME_WE)
    set(compiler ${GLSLANG_VALIDATOR})
    set(target_env vulkan1.2)
    if(source MATCHES "/coopmat/[^/]*$")
      set(compiler ${VKT_COOPMAT_COMPILER})
      set(target_env vulkan1.3)
    endif()
    # The variant lines are read here, at configure time: an edit to a shader re-runs the
    # configure step so that a new or changed variant is built without a manual re-configure.
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${source})
    file(STRINGS ${source} variant_lines REGEX "^//! variant [a-z0-9_]+:")
    set(variants "${stem}|")
    foreach(line ${variant_lines})
      string(REGEX REPLACE "^//! variant ([a-z0-9_]+):(.*)$" "\\1" suffix "${line}")
      string(REGEX REPLACE "^//! variant ([a-z0-9_]+):(.*)$" "\\2" defines "${line}")
      string(STRIP "${defines}" defines)
      list(APPEND variants "${stem}_${suffix}|${defines}")
    endforeach()
    foreach(variant ${variants})
      string(REPLACE "|" ";" parts "${variant}")
      list(GET parts 0 name)
      list(LENGTH parts part_count)
      set(define_list "")
      if(part_count GREATER 1)
        list(GET parts 1 defines)
        separate_arguments(define_list UNIX_COMMAND "${defines}")
      endif()
      set(spv ${out_dir}/${name}.spv)
      set(cpp ${out_dir}/${name}.spv.cpp)
      add_custom_command(
        OUTPUT ${spv}
        COMMAND ${compiler} -V --target-env ${target_env} --quiet -I${shader_dir}
                ${define_list} --depfile ${spv}.d -o ${spv} ${source}
        DEPENDS ${source}
        DEPFILE ${spv}.d
        COMMENT "glslang ${name}"
        VERBATIM)
      add_custom_command(
        OUTPUT ${cpp}
        COMMAND ${CMAKE_COMMAND} -DSPV=${spv} -DCPP=${cpp} -DNAME=${name}
                -P ${CMAKE_SOURCE_DIR}/cmake/EmbedSpirv.cmake
        DEPENDS ${spv} ${CMAKE_SOURCE_DIR}/cmake/EmbedSpirv.cmake
        VERBATIM)
      list(APPEND embedded_sources ${cpp})
      list(APPEND shader_names ${name})
    endforeach()
  endforeach()
  # The registry: one table of (name, words, word count) over all embedded shaders.
  set(registry ${out_dir}/shader_registry.cpp)
  set(content "#include \"engine/vk/shader_registry.hpp\"\n#include <cstdint>\n#include <cstddef>\n")
  foreach(name ${shader_names})
    string(APPEND content "extern const uint32_t vkt_spirv_${name}[]; extern const size_t vkt_spirv_${name}_words;\n")
  endforeach()
  string(APPEND content "namespace vkt::vk {\nconst EmbeddedShader embedded_shaders[] = {\n")
  foreach(name ${shader_names})
    string(APPEND content "  {\"${name}\", vkt_spirv_${name}, vkt_spirv_${name}_words},\n")
  endforeach()
  list(LENGTH shader_names shader_count)
  string(APPEND content "};\nconst size_t embedded_shader_count = ${shader_count};\n}\n")
  file(CONFIGURE OUTPUT ${registry}.in CONTENT "${content}")
  file(GENERATE OUTPUT ${registry} INPUT ${registry}.in)
  add_library(${target} STATIC ${embedded_sources} ${registry})
  target_include_directories(${target} PUBLIC ${CMAKE_SOURCE_DIR})
endfunction()
