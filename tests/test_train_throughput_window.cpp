// LoggingWindow (engine/train/monitor.hpp): tokens/s and step time over a logging window leave out
// the profiled logging step unless it is the window's only one. Suite train.
#include <doctest/doctest.h>

#include "engine/train/monitor.hpp"

using namespace vkt;

TEST_SUITE("train") {

TEST_CASE("throughput window: a profiled logging step after others is left out of tokens/s and step time") {
  train::LoggingWindow window;
  window.add(0.10, 1000, false);
  window.add(0.30, 1000, false);
  window.add(5.00, 1000, true);  // the logging step, slowed by its timestamp queries
  CHECK(window.steps == 3);
  CHECK(window.counted == 2);
  CHECK(window.tokens == 2000);
  CHECK(window.step_seconds() == doctest::Approx(0.20));
  CHECK(window.tokens_per_second() == doctest::Approx(5000.0));
}

TEST_CASE("throughput window: a window of one profiled step (the first step, --logging-steps 1) counts it") {
  train::LoggingWindow window;
  window.add(0.25, 500, true);
  CHECK(window.counted == 1);
  CHECK(window.step_seconds() == doctest::Approx(0.25));
  CHECK(window.tokens_per_second() == doctest::Approx(2000.0));
  train::LoggingWindow empty;
  CHECK(empty.step_seconds() == 0);
  CHECK(empty.tokens_per_second() == 0);
}

}  // TEST_SUITE
