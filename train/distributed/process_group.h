// Process groups from LibTorch's c10d: the rendezvous environment torchrun sets (RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; SLURM's variables as a fallback), a
// TCPStore hosted by rank 0, ProcessGroupNCCL on CUDA and ProcessGroupGloo on CPU, every
// collective bounded by a timeout. No c10d type leaks out of this header: c10d's headers are
// heavy and only train/distributed/*.cpp include them.
//
// Device: a group owns one device, device(): the CPU under Gloo, cuda:<options.cuda_device>
// under NCCL. Every tensor handed to a collective must live there (checked, with an error that
// names the call and both devices); scalars (losses, norms, flags) are reduced through
// all_reduce_scalars(), which moves them to the group's device and back.
//
// Faults: a failed or timed-out collective throws dus::Error naming the rank(s) at fault, under
// Gloo and NCCL alike (NCCL runs in blocking-wait mode: see process_group.cpp). A heartbeat
// thread per rank writes "hb/RANK" = "beats:collective:step" into the store every second, so a
// survivor can tell a dead rank (its beats stop) from a hung one (beats go on, behind).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dus::dist {

/// Where this process sits in the job, read from the environment.
struct DistEnv {
  int rank = 0;                           ///< global rank
  int world_size = 1;                     ///< number of ranks
  int local_rank = 0;                     ///< rank on this node (informational: the trainer
                                          ///< picks the CUDA device, ProcessGroupOptions says it)
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
  int cuda_device = -1;    ///< CUDA device index of this rank: NCCL on it; -1: Gloo on the CPU
};

/// A handle on an asynchronous collective.
class PendingWork {
 public:
  virtual ~PendingWork() = default;
  /// Blocks the calling thread until done (under NCCL too); throws dus::Error naming the ranks
  /// at fault on failure or timeout.
  virtual void wait() = 0;
};

class ProcessGroup {
 public:
  /// Rendezvous through the TCPStore at env.master_addr:master_port, then the backend.
  static std::shared_ptr<ProcessGroup> create(const DistEnv& env,
                                              const ProcessGroupOptions& options);
  /// Calls shutdown() (which does nothing if already called).
  virtual ~ProcessGroup() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend() const = 0;
  /// The device every collective's tensors must be on: CPU (gloo) or cuda:N (nccl).
  virtual c10::Device device() const = 0;

  // Every tensor argument must be on device(), contiguous, and (where two are given) of one
  // dtype and of matching sizes; otherwise dus::Error naming the call, the tensor's device and
  // the group's.

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

  /// Sum over ranks of each value, in float64: one tensor on device(), one all-reduce, one
  /// copy back to the host. Every scalar reduction of the trainer (loss, eval loss, grad norm,
  /// stop flags) goes through here, so none builds a tensor on the wrong device.
  std::vector<double> all_reduce_scalars(std::vector<double> values);

  /// Stops the heartbeat, then ends the backend: a clean shutdown (NCCL flushes and destroys
  /// its communicators) after success, an abort after a failed collective, so that a dead peer
  /// cannot hang the exit. Idempotent; no collective may follow. Never throws.
  virtual void shutdown() = 0;
};

}  // namespace dus::dist
