#pragma once
// Data-parallel training: one process (rank) per device, launched by `mpirun -np N vktune train`.
// Every rank holds the whole model, trains on its share of each step's micro-batches and sums the
// gradients of the trainable tensors with the others before the optimizer runs, so all ranks take
// the same step. MPI is the transport (Open MPI or MPICH: shared memory, TCP, InfiniBand); without
// it (not found at configure time) the single-process communicator below is all there is.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

namespace vkt::train {

// Elements summed per MPI call: MPI counts are ints, and buckets bound the staging memory of the
// deterministic gather (size x bucket floats on rank 0).
constexpr size_t all_reduce_bucket_elements = size_t{1} << 22;  // 16 MiB of fp32

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The rank among the processes of this machine (picks the device).
  virtual int local_rank() const = 0;
  // Sums `data` element-wise over all ranks, in place, on every rank, in buckets. deterministic:
  // gathered to rank 0, summed in rank order (((r0 + r1) + r2) ...) and broadcast: the same bits
  // whatever algorithm the MPI library picks; otherwise MPI_Allreduce.
  virtual void sum(float* data, size_t count, bool deterministic) = 0;
  virtual void sum(double* data, size_t count, bool deterministic) = 0;
  // Concatenates every rank's slice, in rank order, into `all` on every rank: rank r contributes
  // counts[r] elements (`mine`), `all` holds Σ counts (--shard-optimizer's weight all-gather:
  // MPI_Allgatherv in rounds of at most all_reduce_bucket_elements per rank). Exact copies.
  virtual void all_gather(const float* mine, float* all, const std::vector<size_t>& counts) = 0;
  // True on every rank when `value` is true on any (a collective stop decision).
  virtual bool any(bool value) = 0;
  // Every rank's `value`, in rank order, on rank 0 (empty elsewhere).
  virtual std::vector<double> gather(double value) = 0;
  virtual void barrier() = 0;
  // Whether a helper thread may make the calls while this one does not (MPI_THREAD_SERIALIZED).
  virtual bool serialized_threads() const { return true; }
  // A rank failed: prints `error` (with its hint) naming this rank and stops every rank
  // (MPI_Abort), since the others would wait forever in the next all-reduce. One process: returns.
  virtual void abort_all(const std::exception& error) = 0;
  // Rank 0 alone writes the output folder (metrics, checkpoints, adapter, run.json).
  bool writer() const { return rank() == 0; }
};

// The process's communicator, created on first use: MPI's world under mpirun (MPI initialised
// then, finalised at exit), else one process. UserError when mpirun started several processes but
// this vktune was built without MPI (each would otherwise train alone into the same folder).
Communicator& world();
// A one-process communicator: what a run uses that trains alone although mpirun started several
// processes (each rank of `mpirun vktune sweep` trains its own trials).
Communicator& single_process();
// Whether this build has MPI (CMake found it).
bool mpi_built();
// The number of processes the launcher started, from its environment (Open MPI's
// OMPI_COMM_WORLD_SIZE, MPICH/Hydra's PMI_SIZE); 1 when not launched by one.
int launcher_size();
// The Vulkan device index of this rank: `requested` (--device) when >= 0; otherwise, with
// several ranks, the local rank modulo the device count; -1 (the best device) for one process.
int64_t device_for_rank(int64_t requested, int ranks, int local_rank, size_t device_count);

}  // namespace vkt::train
