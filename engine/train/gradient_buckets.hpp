#pragma once
// Data parallelism's gradient sum overlapped with the backward, as torch's DDP: the trainable
// gradients are grouped into buckets of about --ddp-bucket-cap-mb in reverse layer order (the
// order the backward finishes them). The last micro-batch's backward is recorded once as one
// command buffer per bucket, each ending with a copy of its bucket into host-visible staging;
// all are submitted at once, and while the device runs the earlier layers' backward a helper
// thread sums the finished buckets over the ranks (Communicator::sum, in place in the staging).
// The optimizer's command buffer starts by copying the summed staging back into the gradients.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/vk/context.hpp"
#include "engine/vk/memory.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::train {

class Communicator;

// The decoder layer whose backward finishes the gradient of parameter `name` ("model.layers.3.
// ..." -> 3), or -1 when it is written after every layer (embedding) or outside them (norm, head).
int gradient_layer(const std::string& name);

class GradientBuckets {
 public:
  struct Group {
    uint32_t layer_begin = 0, layer_end = 0;  // backward of layers [begin, end), in reverse
    std::vector<size_t> gradients;            // indices into the gradients whose bucket this is
    uint64_t staging_offset = 0, bytes = 0;   // the bucket's place in the staging buffer
  };

  // gradients/names: the trainable tensors' grad.* ranges and parameter names (optimizer order);
  // loss_step (4 bytes) joins the last bucket. cap_bytes <= 0: one bucket after the whole backward.
  GradientBuckets(vk::Context& context, Communicator& ranks, bool deterministic,
                  const std::vector<vk::BufferRange>& gradients, const std::vector<std::string>& names,
                  const vk::BufferRange& loss_step, uint32_t layers, double cap_bytes);
  ~GradientBuckets();
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  const std::vector<Group>& groups() const { return groups_; }
  // Records (once) one command buffer per group: `body(recorder, group)` then its bucket's copy
  // into the staging. The caller's body records the forward in group 0 and the group's backward.
  void record(const std::function<void(vk::Recorder&, const Group&)>& body);
  // Records the copies of the summed staging back into the gradients (before the optimizer).
  void record_copy_back(vk::Recorder& recorder) const;
  // Submits every group's command buffer, hands each bucket to the helper thread as its fence
  // signals and returns once every bucket is summed on every rank (rethrows its error).
  void run();
  // The same for a backward recorded whole (a profiled micro-batch): submits `backward` and the
  // copy of every bucket, then sums them all here, not overlapped.
  void run_whole(vk::Sequence& backward);
  // Seconds the ranks spent summing (the helper thread's busy time, each bucket from its hand-over)
  // and the part of it the backward did not hide (from the last bucket's fence to the end of the
  // sums), since the last take.
  double take_busy_seconds();
  double take_exposed_seconds();

 private:
  void work();
  vk::Context& context_;
  Communicator& ranks_;
  bool deterministic_;
  std::vector<vk::BufferRange> gradients_;  // grad.* ranges, then loss.step
  std::vector<Group> groups_;
  vk::Buffer staging_;  // (Σ gradient elements + 1) fp32, host-visible: the buckets, group after group
  std::vector<std::unique_ptr<vk::Sequence>> sequences_;
  std::unique_ptr<vk::Sequence> copy_all_;  // every bucket's copy into the staging (run_whole)
  std::vector<VkFence> fences_;
  // The helper thread's queue: groups handed over, groups summed.
  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::pair<size_t, std::chrono::steady_clock::time_point>> pending_;  // group, handed over at
  std::chrono::steady_clock::time_point last_finish_{};  // the helper's last sum ended (under mutex_)
  size_t handed_ = 0, finished_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
  double busy_seconds_ = 0, exposed_seconds_ = 0;
};

}  // namespace vkt::train
