// Engine foundation: device creation, buffers, the memory ledger, dispatches and batching,
// the pipeline cache, and the validation check itself.
#include <doctest/doctest.h>

#include <cstring>
#include <numeric>

#include "engine/kernels/elementwise.hpp"
#include "engine/vk/check.hpp"
#include "engine/vk/shader_registry.hpp"
#include "tests/support.hpp"

namespace vkt::test {
extern uint32_t expected_validation_errors;
}

using namespace vkt;
using vkt::test::context;

TEST_SUITE("vk") {

TEST_CASE("device creation reports usable capabilities") {
  auto& caps = context().caps();
  CHECK(caps.usable());
  CHECK(!caps.name.empty());
  CHECK(caps.subgroup_size > 0);
  CHECK(caps.max_shared_memory >= 16384);
  CHECK(caps.max_storage_buffer_range > 0);
  CHECK(caps.max_memory_allocation_size > 0);
  CHECK(!caps.heaps.empty());
  CHECK(caps.summary_line().find(caps.name) != std::string::npos);
  auto devices = vk::list_devices();
  REQUIRE(!devices.empty());
  CHECK(devices[caps.index].name == caps.name);
}

TEST_CASE("validation layers are on under ctest and count errors") {
  // ctest sets VKT_VALIDATION=1 for every suite; a run without it would not check anything.
  if (std::getenv("VKT_VALIDATION")) CHECK(context().validation_enabled());
  vk::ContextOptions options;
  options.validation = 1;
  options.log_capabilities = false;
  vk::Context probe(options);
  // Reserved fence flag bits are invalid usage that the validation layer must report.
  VkFenceCreateInfo info{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  info.flags = 0x40;
  VkFence fence = VK_NULL_HANDLE;
  uint32_t before = probe.validation_errors();
  vkCreateFence(probe.device(), &info, nullptr, &fence);
  if (fence) vkDestroyFence(probe.device(), fence, nullptr);
  uint32_t provoked = probe.validation_errors() - before;
  CHECK(provoked >= 1);
  test::expected_validation_errors += provoked;
}

TEST_CASE("buffer round trips from 1 byte to more than maxStorageBufferRange") {
  auto& ctx = context();
  for (size_t bytes : {size_t{1}, size_t{3}, size_t{255}, size_t{4096}, size_t{1} << 20}) {
    CAPTURE(bytes);
    std::vector<uint8_t> data(bytes);
    for (size_t i = 0; i < bytes; i++) data[i] = static_cast<uint8_t>(i * 7 + 3);
    vk::Buffer buffer = ctx.allocate(bytes, vk::Category::workspace, "roundtrip");
    ctx.upload(buffer.range(), data.data());  // through staging + copy commands
    std::vector<uint8_t> back(bytes);
    ctx.download(buffer.range(), back.data());
    CHECK(std::memcmp(back.data(), data.data(), bytes) == 0);
  }
  // A tensor larger than the 128 MiB storage-buffer range: round trip, then a shader reads and
  // writes its far end through its device address.
  size_t count = (ctx.caps().max_storage_buffer_range / 4) + (1 << 20) + 13;
  std::vector<float> data(count);
  for (size_t i = 0; i < count; i++) data[i] = static_cast<float>(i % 100003);
  vk::Buffer big = ctx.allocate(count * 4, vk::Category::activations, "big");
  vk::Buffer other = ctx.allocate(count * 4, vk::Category::activations, "big-other");
  ctx.upload(big.range(), data.data());
  ctx.upload(other.range(), data.data());
  ctx.run([&](vk::Recorder& r) {
    kernels::axpby(r, other.range(), big.range(), static_cast<uint32_t>(count), 2.0f, 1.0f);
  });
  std::vector<float> back(count);
  ctx.download(big.range(), back.data());
  size_t mismatches = 0;
  for (size_t i = 0; i < count; i++)
    if (back[i] != 3.0f * data[i]) mismatches++;
  CHECK(mismatches == 0);
  CHECK(back[count - 1] == 3.0f * data[count - 1]);
}

TEST_CASE("a dispatch matches its CPU reference") {
  auto x = test::random_floats(1000, 1), y = test::random_floats(1000, 2);
  vk::Buffer x_buffer = test::upload(x), y_buffer = test::upload(y);
  context().run([&](vk::Recorder& r) { kernels::axpby(r, x_buffer.range(), y_buffer.range(), 1000, 0.5f, -2.0f); });
  ref::axpby(x.data(), y.data(), y.size(), 0.5f, -2.0f);
  auto result = test::compare(test::download(y_buffer), y);
  CHECK(result.max_abs == 0.0);
}

TEST_CASE("1000 dispatches in one submission, barriers only where needed") {
  auto& ctx = context();
  constexpr uint32_t n = 64;
  std::vector<float> ones(n, 1.0f);
  vk::Buffer x = test::upload(ones, "x");
  // Dependent chain: each dispatch accumulates into the same y -> a barrier between each pair.
  vk::Buffer y = test::upload(std::vector<float>(n, 0.0f), "y");
  vk::Sequence chain(ctx);
  chain.record([&](vk::Recorder& r) {
    for (int i = 0; i < 1000; i++) kernels::axpby(r, x.range(), y.range(), n, 1.0f, 1.0f);
  });
  CHECK(chain.dispatch_count() == 1000);
  CHECK(chain.barrier_count() == 999);
  ctx.submit({&chain});
  CHECK(test::download(y)[n - 1] == 1000.0f);
  // Replaying the recorded sequence repeats the work without recording again.
  ctx.submit({&chain});
  CHECK(test::download(y)[0] == 2000.0f);

  // Independent work: 1000 dispatches on disjoint slices of one buffer need no barrier.
  vk::Buffer slices = test::upload(std::vector<float>(n * 1000, 0.0f), "slices");
  vk::Sequence independent(ctx);
  independent.record([&](vk::Recorder& r) {
    for (uint32_t i = 0; i < 1000; i++) kernels::axpby(r, x.range(), slices.range(i * n * 4, n * 4), n, float(i), 0.0f);
  });
  CHECK(independent.barrier_count() == 0);
  ctx.submit({&independent});
  auto values = test::download(slices);
  CHECK(values[5 * n] == 5.0f);
  CHECK(values[999 * n + n - 1] == 999.0f);
}

TEST_CASE("memory ledger: totals equal live allocations, return to zero, peaks are right") {
  auto& ctx = context();
  auto before = ctx.ledger().snapshot();
  ctx.ledger().reset_peaks();
  {
    vk::Buffer a = ctx.allocate(1000, vk::Category::adapter_params, "a");
    vk::Buffer b = ctx.allocate(3000, vk::Category::gradients, "b");
    vk::Buffer c = ctx.allocate(5000, vk::Category::optimizer_state, "c", vk::MemoryKind::offload);
    auto during = ctx.ledger().snapshot();
    CHECK(during.category_current(vk::Category::adapter_params) ==
          before.category_current(vk::Category::adapter_params) + 1000);
    CHECK(during.current[size_t(vk::Category::optimizer_state)][size_t(vk::MemoryKind::offload)] ==
          before.current[size_t(vk::Category::optimizer_state)][size_t(vk::MemoryKind::offload)] + 5000);
    CHECK(during.total_current == before.total_current + 9000);
    CHECK(during.allocation_count == before.allocation_count + 3);
    b = vk::Buffer();  // free b, then a bigger one: the peak keeps the high-water mark
    vk::Buffer d = ctx.allocate(2000, vk::Category::gradients, "d");
    auto later = ctx.ledger().snapshot();
    CHECK(later.total_current == before.total_current + 8000);
    CHECK(later.total_peak == before.total_current + 9000);
    CHECK(later.category_peak(vk::Category::gradients) >= before.category_current(vk::Category::gradients) + 3000);
    // Offload memory is host-visible: the CPU can read and write it directly.
    CHECK(c.mapped() != nullptr);
  }
  auto after = ctx.ledger().snapshot();
  CHECK(after.total_current == before.total_current);
  CHECK(after.allocation_count == before.allocation_count);
  for (size_t c = 0; c < vk::category_count; c++)
    CHECK(after.category_current(vk::Category(c)) == before.category_current(vk::Category(c)));
}

TEST_CASE("allocator sub-allocates many tensors from few blocks and frees blocks") {
  auto& ctx = context();
  size_t blocks_before = ctx.allocator().block_count();
  auto driver_before = ctx.ledger().snapshot().driver_current;
  {
    std::vector<vk::Buffer> tensors;
    for (int i = 0; i < 2000; i++) tensors.push_back(ctx.allocate(1024 + i, vk::Category::workspace, "t"));
    CHECK(ctx.allocator().block_count() <= blocks_before + 1);
    // Addresses are distinct and aligned.
    for (size_t i = 1; i < tensors.size(); i++) CHECK(tensors[i].address() % vk::Allocator::alignment == 0);
    // Free every other tensor and allocate again: freed ranges are reused.
    for (size_t i = 0; i < tensors.size(); i += 2) tensors[i] = vk::Buffer();
    for (int i = 0; i < 500; i++) tensors.push_back(ctx.allocate(512, vk::Category::workspace, "t2"));
    CHECK(ctx.allocator().block_count() <= blocks_before + 1);
  }
  CHECK(ctx.allocator().block_count() == blocks_before);
  CHECK(ctx.ledger().snapshot().driver_current == driver_before);
}

TEST_CASE("pipeline cache hits on the same shader and specialization") {
  auto& pipelines = context().pipelines();
  const vk::Pipeline& first = pipelines.get("axpby");
  uint64_t hits = pipelines.hits();
  size_t size = pipelines.size();
  const vk::Pipeline& second = pipelines.get("axpby");
  CHECK(&first == &second);
  CHECK(pipelines.hits() == hits + 1);
  CHECK(pipelines.size() == size);
  CHECK(vk::find_shader("axpby") != nullptr);
  CHECK(vk::find_shader("no_such_shader") == nullptr);
}

TEST_CASE("timestamps name each dispatch") {
  auto& ctx = context();
  if (!ctx.caps().timestamps) return;
  vk::Buffer x = test::upload(std::vector<float>(4096, 1.0f)), y = test::upload(std::vector<float>(4096, 0.0f));
  vk::Sequence profiled(ctx, true);
  profiled.record([&](vk::Recorder& r) {
    kernels::axpby(r, x.range(), y.range(), 4096, 1, 1);
    kernels::axpby(r, x.range(), y.range(), 4096, 1, 1);
  });
  ctx.submit({&profiled});
  auto timings = profiled.timings();
  REQUIRE(timings.size() == 2);
  CHECK(timings[0].label == "axpby");
  CHECK(timings[1].milliseconds >= 0.0);
}

TEST_CASE("VK_CHECK names the expression, the result and the place") {
  try {
    VK_CHECK(VK_ERROR_OUT_OF_DEVICE_MEMORY);
    FAIL("VK_CHECK did not throw");
  } catch (const vk::VulkanError& error) {
    std::string what = error.what();
    CHECK(what.find("VK_ERROR_OUT_OF_DEVICE_MEMORY") != std::string::npos);
    CHECK(what.find("test_vk.cpp") != std::string::npos);
    CHECK(what.find("HINT") != std::string::npos);
  }
}

}  // TEST_SUITE
