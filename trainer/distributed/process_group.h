// Process groups from LibTorch's c10d: the rendezvous environment torchrun sets (RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; SLURM's variables as a fallback), a
// TCPStore hosted by rank 0, ProcessGroupNCCL on CUDA and ProcessGroupGloo on CPU, every
// collective bounded by a timeout. No c10d type leaks out of this header: c10d's headers are
// heavy and only trainer/distributed/*.cpp include them.
//
// Faults: a failed or timed-out collective throws dus::Error naming the rank(s) at fault. A
// heartbeat thread per rank writes "hb/RANK" = "beats:step" into the store every second, so a
// survivor can tell a dead rank (its beats stop) from a hung one (beats go on, step behind).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>

namespace dus::dist {

/// Where this process sits in the job, read from the environment.
struct DistEnv {
  int rank = 0;                           ///< global rank
  int world_size = 1;                     ///< number of ranks
  int local_rank = 0;                     ///< rank on this node (the CUDA device index)
  std::string master_addr = "127.0.0.1";  ///< host of rank 0 (TCPStore server)
  int master_port = 29500;                ///< TCPStore port
  std::string source = "none";            ///< "torchrun" (incl. dus launch), "slurm" or "none"
};

/// torchrun's variables when WORLD_SIZE is set, else SLURM's (SLURM_PROCID, SLURM_NTASKS,
/// SLURM_LOCALID; MASTER_ADDR/MASTER_PORT still from the environment, defaulting to
/// SLURM_LAUNCH_NODE_IPADDR and 29500), else a single process. Throws on inconsistent values.
DistEnv dist_env_from_environment();

struct ProcessGroupOptions {
  double timeout_s = 300;  ///< seconds any collective (and the rendezvous) may take
  bool cuda = false;       ///< NCCL on CUDA device local_rank; else Gloo on CPU
};

/// A handle on an asynchronous collective.
class PendingWork {
 public:
  virtual ~PendingWork() = default;
  /// Blocks until done; throws dus::Error naming the ranks at fault on failure or timeout.
  virtual void wait() = 0;
};

class ProcessGroup {
 public:
  /// Rendezvous through the TCPStore at env.master_addr:master_port, then the backend.
  static std::shared_ptr<ProcessGroup> create(const DistEnv& env,
                                              const ProcessGroupOptions& options);
  virtual ~ProcessGroup() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend() const = 0;

  /// In-place sum over ranks.
  virtual void all_reduce_sum(at::Tensor& t) = 0;
  virtual std::unique_ptr<PendingWork> all_reduce_sum_async(at::Tensor t) = 0;
  /// Sum over ranks into rank `root`'s t (the other ranks' t is left undefined).
  virtual std::unique_ptr<PendingWork> reduce_sum_async(at::Tensor t, int root) = 0;
  /// out (n) = sum over ranks of in (n * size) narrowed to this rank's n.
  virtual void reduce_scatter_sum(at::Tensor& out, at::Tensor& in) = 0;
  /// out (n * size) = every rank's in (n), in rank order.
  virtual void all_gather(at::Tensor& out, at::Tensor& in) = 0;
  virtual void broadcast(at::Tensor& t, int root) = 0;
  virtual void barrier() = 0;
  /// Records this rank's progress (the step it is in) for fault diagnosis.
  virtual void mark_progress(int64_t step) = 0;
};

}  // namespace dus::dist
