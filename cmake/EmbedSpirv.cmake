# Turns one .spv file into a C++ source with a uint32_t array (SPIR-V is a stream of words).
file(READ ${SPV} hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR word_count "${hex_length} / 8")
# Bytes are little-endian words: regroup every 4 bytes "aabbccdd" as 0xddccbbaa.
string(REGEX REPLACE "(..)(..)(..)(..)" "0x\\4\\3\\2\\1u," words "${hex}")
file(WRITE ${CPP} "#include <cstdint>\n#include <cstddef>\nextern const uint32_t vkt_spirv_${NAME}[] = {${words}};\nextern const size_t vkt_spirv_${NAME}_words = ${word_count};\n")
