#include "engine/train/gradient_buckets.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <regex>

#include "engine/base/error.hpp"
#include "engine/train/distributed.hpp"
#include "engine/vk/check.hpp"

namespace vkt::train {

namespace {
double seconds_between(std::chrono::steady_clock::time_point start, std::chrono::steady_clock::time_point end) {
  return std::chrono::duration<double>(end - start).count();
}
double seconds_since(std::chrono::steady_clock::time_point start) {
  return seconds_between(start, std::chrono::steady_clock::now());
}
}  // namespace

int gradient_layer(const std::string& name) {
  static const std::regex layer(R"(^model\.layers\.(\d+)\.)");
  std::smatch match;
  return std::regex_search(name, match, layer) ? std::atoi(match[1].str().c_str()) : -1;
}

GradientBuckets::GradientBuckets(vk::Context& context, Communicator& ranks, bool deterministic,
                                 const std::vector<vk::BufferRange>& gradients, const std::vector<std::string>& names,
                                 const vk::BufferRange& loss_step, uint32_t layers, double cap_bytes)
    : context_(context), ranks_(ranks), deterministic_(deterministic), gradients_(gradients) {
  gradients_.push_back(loss_step);
  // Each layer's gradients (and the rest: after every layer), walking the backward's order.
  std::vector<std::vector<size_t>> by_layer(layers);
  std::vector<uint64_t> layer_bytes(layers, 0);
  std::vector<size_t> rest;
  for (size_t i = 0; i < gradients.size(); i++) {
    const int layer = gradient_layer(names[i]);
    if (layer >= 0 && static_cast<uint32_t>(layer) < layers) {
      by_layer[static_cast<size_t>(layer)].push_back(i);
      layer_bytes[static_cast<size_t>(layer)] += gradients[i].bytes;
    } else {
      rest.push_back(i);
    }
  }
  rest.push_back(gradients.size());  // loss.step
  Group group;
  group.layer_end = layers;
  for (uint32_t layer = layers; layer-- > 0;) {
    group.gradients.insert(group.gradients.end(), by_layer[layer].begin(), by_layer[layer].end());
    group.bytes += layer_bytes[layer];
    // A full bucket closes after this layer's backward, unless nothing is left to run after it.
    if (cap_bytes > 0 && static_cast<double>(group.bytes) >= cap_bytes && layer > 0) {
      group.layer_begin = layer;
      groups_.push_back(group);
      group = Group{};
      group.layer_end = layer;
    }
  }
  group.layer_begin = 0;
  for (size_t i : rest) {
    group.gradients.push_back(i);
    group.bytes += gradients_[i].bytes;
  }
  groups_.push_back(group);
  uint64_t offset = 0;
  for (Group& g : groups_) {
    g.staging_offset = offset;
    offset += g.bytes;
  }
  staging_ = context.allocate(offset, vk::Category::staging, "ddp.buckets", vk::MemoryKind::staging);
  VkFenceCreateInfo fence_info{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  fences_.resize(groups_.size(), VK_NULL_HANDLE);
  for (VkFence& fence : fences_) VK_CHECK(vkCreateFence(context.device(), &fence_info, nullptr, &fence));
  if (ranks_.serialized_threads()) worker_ = std::thread([this] { work(); });
}

GradientBuckets::~GradientBuckets() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (worker_.joinable()) worker_.join();
  for (VkFence fence : fences_) vkDestroyFence(context_.device(), fence, nullptr);
}

void GradientBuckets::record(const std::function<void(vk::Recorder&, const Group&)>& body) {
  sequences_.clear();
  for (size_t g = 0; g < groups_.size(); g++) {
    auto sequence = std::make_unique<vk::Sequence>(context_);
    sequence->record([&](vk::Recorder& r) {
      if (g > 0) r.barrier();  // the previous group's writes (activations, gradients) come first
      body(r, groups_[g]);
      uint64_t offset = groups_[g].staging_offset;
      for (size_t i : groups_[g].gradients) {
        r.copy(gradients_[i], staging_.range(offset, gradients_[i].bytes));
        offset += gradients_[i].bytes;
      }
    });
    sequences_.push_back(std::move(sequence));
  }
  copy_all_ = std::make_unique<vk::Sequence>(context_);
  copy_all_->record([&](vk::Recorder& r) {
    r.barrier();
    for (const Group& group : groups_) {
      uint64_t offset = group.staging_offset;
      for (size_t i : group.gradients) {
        r.copy(gradients_[i], staging_.range(offset, gradients_[i].bytes));
        offset += gradients_[i].bytes;
      }
    }
  });
}

void GradientBuckets::run_whole(vk::Sequence& backward) {
  context_.submit({&backward, copy_all_.get()});
  const auto start = std::chrono::steady_clock::now();
  const uint64_t bytes = groups_.back().staging_offset + groups_.back().bytes;
  ranks_.sum(static_cast<float*>(staging_.mapped()), bytes / 4, deterministic_);
  const double seconds = seconds_since(start);  // nothing hides these sums: all exposed
  busy_seconds_ += seconds;
  exposed_seconds_ += seconds;
}

void GradientBuckets::record_copy_back(vk::Recorder& r) const {
  for (const Group& group : groups_) {
    uint64_t offset = group.staging_offset;
    for (size_t i : group.gradients) {
      r.copy(staging_.range(offset, gradients_[i].bytes), gradients_[i]);
      offset += gradients_[i].bytes;
    }
  }
}

void GradientBuckets::run() {
  // Every group's command buffer in one go: the device runs them back to back, one fence each.
  for (size_t g = 0; g < groups_.size(); g++) {
    VkCommandBuffer command_buffer = sequences_[g]->command_buffer();
    VkSubmitInfo submit{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    submit.commandBufferCount = 1;
    submit.pCommandBuffers = &command_buffer;
    VK_CHECK(vkQueueSubmit(context_.queue(), 1, &submit, fences_[g]));
  }
  auto* floats = static_cast<float*>(staging_.mapped());
  for (size_t g = 0; g < groups_.size(); g++) {
    VK_CHECK(vkWaitForFences(context_.device(), 1, &fences_[g], VK_TRUE, UINT64_MAX));
    VK_CHECK(vkResetFences(context_.device(), 1, &fences_[g]));
    if (!worker_.joinable()) {  // the MPI library allows no helper thread: sum here, not overlapped
      const auto start = std::chrono::steady_clock::now();
      ranks_.sum(floats + groups_[g].staging_offset / 4, groups_[g].bytes / 4, deterministic_);
      const double seconds = seconds_since(start);
      busy_seconds_ += seconds;
      exposed_seconds_ += seconds;
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pending_.push_back({g, std::chrono::steady_clock::now()});
      handed_++;
    }
    changed_.notify_all();
  }
  const auto backward_done = std::chrono::steady_clock::now();
  std::exception_ptr error;
  std::chrono::steady_clock::time_point sums_done;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return finished_ == handed_; });
    error = error_;
    error_ = nullptr;
    sums_done = last_finish_;
  }
  // Up to the helper's last sum, not to this thread's wake-up after it: that way the exposed time is
  // always part of the busy one, however loaded the machine (busy counts from each hand-over).
  if (sums_done > backward_done) exposed_seconds_ += seconds_between(backward_done, sums_done);
  if (error) std::rethrow_exception(error);
}

void GradientBuckets::work() {
  auto* floats = static_cast<float*>(staging_.mapped());
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    changed_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
    if (pending_.empty()) return;
    const auto [g, handed_at] = pending_.front();
    pending_.erase(pending_.begin());
    const bool failed = error_ != nullptr;
    // Busy from the hand-over (or the previous sum's end, if later), not from this thread's wake-up:
    // waking the helper is part of what the all-reduce costs a step (on a loaded 2-core machine,
    // ~0.1 ms per bucket), and the exposed time, which waits for it, then stays within the busy time.
    const auto start = std::max(handed_at, last_finish_);
    lock.unlock();
    // Buckets in order on every rank: the collectives match up. After an error, skip the rest.
    std::exception_ptr error;
    if (!failed) try {
        ranks_.sum(floats + groups_[g].staging_offset / 4, groups_[g].bytes / 4, deterministic_);
      } catch (...) {
        error = std::current_exception();
      }
    const auto finish = std::chrono::steady_clock::now();
    const double busy = seconds_between(start, finish);
    lock.lock();
    last_finish_ = finish;
    busy_seconds_ += busy;
    if (error) error_ = error;
    finished_++;
    changed_.notify_all();
  }
}

double GradientBuckets::take_busy_seconds() {
  std::lock_guard<std::mutex> lock(mutex_);
  const double seconds = busy_seconds_;
  busy_seconds_ = 0;
  return seconds;
}

double GradientBuckets::take_exposed_seconds() {
  const double seconds = exposed_seconds_;
  exposed_seconds_ = 0;
  return seconds;
}

}  // namespace vkt::train
