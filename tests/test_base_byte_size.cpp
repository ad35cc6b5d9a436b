// parse_byte_size (engine/base/files.hpp): --device-memory, --max-shard-size and sweep YAML's
// device_memory. Sizes beyond uint64_t, inf and nan are user errors, not undefined conversions (the
// sweep YAML fuzzer found "1e34" reaching the cast; tests/fuzz/corpus/sweep_yaml keeps its input).
// Suite model_io.
#include <doctest/doctest.h>

#include <string>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"

using namespace vkt;

TEST_SUITE("model_io") {

TEST_CASE("byte sizes: units, and what no uint64_t holds is a user error naming the text") {
  CHECK(parse_byte_size("24GiB") == 24ull << 30);
  CHECK(parse_byte_size("16 GB") == 16000000000ull);
  CHECK(parse_byte_size("8000MiB") == 8000ull << 20);
  CHECK(parse_byte_size("1.5T") == 1500000000000ull);
  CHECK(parse_byte_size("512") == 512);
  CHECK(parse_byte_size("16777215TiB") == 16777215ull << 40);  // the largest whole TiB below 2^64
  for (const std::string text : {"1e34", "20000000000000000000", "16777216TiB", "inf", "infGB", "nan", "nanMiB"}) {
    INFO(text);
    try {
      parse_byte_size(text);
      FAIL("accepted");
    } catch (const UserError& error) {
      CHECK(std::string(error.what()).find("'" + text + "'") != std::string::npos);
    }
  }
  for (const std::string text : {"", "GiB", "-1GiB", "0", "12 parsecs"}) {
    INFO(text);
    CHECK_THROWS_AS(parse_byte_size(text), UserError);
  }
}

}  // TEST_SUITE
