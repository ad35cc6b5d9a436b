#include "engine/train/distributed.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "engine/base/error.hpp"

#ifdef VKT_HAVE_MPI
#include <mpi.h>
#endif

namespace vkt::train {

namespace {

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  void sum(float*, size_t, bool) override {}
  void sum(double*, size_t, bool) override {}
  void all_gather(const float* mine, float* all, const std::vector<size_t>& counts) override {
    std::copy(mine, mine + counts.at(0), all);
  }
  bool any(bool value) override { return value; }
  std::vector<double> gather(double value) override { return {value}; }
  void barrier() override {}
  void abort_all(const std::exception&) override {}
};

#ifdef VKT_HAVE_MPI
std::string describe(const std::exception& error) {
  std::string text = error.what();
  if (const auto* user = dynamic_cast<const UserError*>(&error); user && !user->hint().empty())
    text += "\n---> HINT: " + user->hint();
  return text;
}

void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw UserError(std::string(call) + " failed: " + std::string(text, static_cast<size_t>(length)),
                  "another rank probably died; mpirun's output names it");
}

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}

class MpiWorld final : public Communicator {
 public:
  MpiWorld() {
    int provided = 0;
    // SERIALIZED: with a dashboard window the run (and its MPI calls) lives on a worker thread.
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
    serialized_threads_ = provided >= MPI_THREAD_SERIALIZED;
    std::atexit([] {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized) MPI_Finalize();
    });
    // Errors come back as codes (check() turns them into messages) instead of aborting silently.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm local;
    check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local),
          "MPI_Comm_split_type");
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_free(&local);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  void sum(float* data, size_t count, bool deterministic) override { sum_buckets(data, count, deterministic); }
  void sum(double* data, size_t count, bool deterministic) override { sum_buckets(data, count, deterministic); }
  void all_gather(const float* mine, float* all, const std::vector<size_t>& counts) override {
    std::vector<size_t> starts(counts.size(), 0);
    for (size_t r = 1; r < counts.size(); r++) starts[r] = starts[r - 1] + counts[r - 1];
    const size_t longest = *std::max_element(counts.begin(), counts.end());
    std::vector<float> received;
    std::vector<int> round_counts(counts.size()), displacements(counts.size());
    // Round k moves elements [k B, (k + 1) B) of every slice (MPI counts are ints).
    for (size_t first = 0; first < longest; first += all_reduce_bucket_elements) {
      int total = 0;
      for (size_t r = 0; r < counts.size(); r++) {
        round_counts[r] =
            static_cast<int>(std::min(all_reduce_bucket_elements, counts[r] - std::min(counts[r], first)));
        displacements[r] = total;
        total += round_counts[r];
      }
      received.resize(static_cast<size_t>(total));
      const size_t mine_first = std::min(first, counts[static_cast<size_t>(rank_)]);
      check(MPI_Allgatherv(mine + mine_first, round_counts[static_cast<size_t>(rank_)], MPI_FLOAT, received.data(),
                           round_counts.data(), displacements.data(), MPI_FLOAT, MPI_COMM_WORLD),
            "MPI_Allgatherv");
      for (size_t r = 0; r < counts.size(); r++)
        if (round_counts[r] > 0)
          std::copy_n(received.data() + displacements[r], round_counts[r], all + starts[r] + first);
    }
  }
  bool any(bool value) override {
    int in = value ? 1 : 0, out = 0;
    check(MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD), "MPI_Allreduce");
    return out != 0;
  }
  std::vector<double> gather(double value) override {
    std::vector<double> values(rank_ == 0 ? static_cast<size_t>(size_) : 0);
    check(MPI_Gather(&value, 1, MPI_DOUBLE, values.data(), 1, MPI_DOUBLE, 0, MPI_COMM_WORLD), "MPI_Gather");
    return values;
  }
  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
  bool serialized_threads() const override { return serialized_threads_; }
  void abort_all(const std::exception& error) override {
    if (size_ == 1) return;
    std::fprintf(stderr, "error: rank %d of %d: %s\n---> every rank stops (MPI_Abort)\n", rank_, size_,
                 describe(error).c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

 private:
  template <class T>
  void sum_buckets(T* data, size_t count, bool deterministic) {
    if (size_ == 1) return;
    for (size_t first = 0; first < count; first += all_reduce_bucket_elements) {
      const int n = static_cast<int>(std::min(all_reduce_bucket_elements, count - first));
      T* bucket = data + first;
      if (!deterministic) {
        check(MPI_Allreduce(MPI_IN_PLACE, bucket, n, mpi_type<T>(), MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
        continue;
      }
      std::vector<T> gathered(rank_ == 0 ? static_cast<size_t>(n) * size_ : 0);
      check(MPI_Gather(bucket, n, mpi_type<T>(), gathered.data(), n, mpi_type<T>(), 0, MPI_COMM_WORLD), "MPI_Gather");
      if (rank_ == 0) {
        for (int r = 1; r < size_; r++) {
          const T* theirs = gathered.data() + static_cast<size_t>(r) * n;
          for (int i = 0; i < n; i++) bucket[i] += theirs[i];  // rank order: ((r0 + r1) + r2) ...
        }
      }
      check(MPI_Bcast(bucket, n, mpi_type<T>(), 0, MPI_COMM_WORLD), "MPI_Bcast");
    }
  }
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  bool serialized_threads_ = false;
};
#endif

}  // namespace

bool mpi_built() {
#ifdef VKT_HAVE_MPI
  return true;
#else
  return false;
#endif
}

int launcher_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"}) {
    const char* value = std::getenv(name);
    if (value && std::atoi(value) > 0) return std::atoi(value);
  }
  return 1;
}

Communicator& single_process() {
  static SingleProcess alone;
  return alone;
}

Communicator& world() {
  static std::unique_ptr<Communicator> communicator;
  if (communicator) return *communicator;
  const int launched = launcher_size();
#ifdef VKT_HAVE_MPI
  if (launched > 1) communicator = std::make_unique<MpiWorld>();
#else
  if (launched > 1)
    throw UserError("this vktune was built without MPI, but mpirun started it as one of " + std::to_string(launched) +
                        " processes: each would train alone and write the same output folder",
                    "install libopenmpi-dev (scripts/setup-debian.sh) and rebuild, so that CMake finds MPI; or run "
                    "vktune train without mpirun");
#endif
  if (!communicator) communicator = std::make_unique<SingleProcess>();
  return *communicator;
}

int64_t device_for_rank(int64_t requested, int ranks, int local_rank, size_t device_count) {
  if (requested >= 0) return requested;
  if (ranks == 1 || device_count == 0) return -1;
  return local_rank % static_cast<int64_t>(device_count);
}

}  // namespace vkt::train
