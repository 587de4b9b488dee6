#include "train/distributed/process_group.h"

#include <ATen/ops/from_blob.h>
#include <c10/util/env.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace dus::dist {

namespace {

const char* env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, const char* value, int lo, int hi) {
  char* end = nullptr;
  long x = std::strtol(value, &end, 10);
  if (*end != '\0' || x < lo || x > hi)
    throw Error(std::string("environment ") + name,
                fmt::format("\"{}\" is not an integer in [{}, {}]", value, lo, hi));
  return static_cast<int>(x);
}

using Clock = std::chrono::steady_clock;

}  // namespace

DistEnv dist_env_from_environment() {
  DistEnv e;
  if (const char* ws = env_or_null("WORLD_SIZE")) {
    e.source = "torchrun";
    e.world_size = env_int("WORLD_SIZE", ws, 1, 1 << 20);
    const char* rank = env_or_null("RANK");
    if (!rank)
      throw Error("environment RANK", "WORLD_SIZE is set but RANK is not",
                  "set both, as torchrun does");
    e.rank = env_int("RANK", rank, 0, e.world_size - 1);
    e.local_rank = env_or_null("LOCAL_RANK")
                       ? env_int("LOCAL_RANK", env_or_null("LOCAL_RANK"), 0, 1 << 20)
                       : e.rank;
  } else if (const char* ntasks = env_or_null("SLURM_NTASKS")) {
    e.source = "slurm";
    e.world_size = env_int("SLURM_NTASKS", ntasks, 1, 1 << 20);
    const char* procid = env_or_null("SLURM_PROCID");
    if (!procid)
      throw Error("environment SLURM_PROCID", "SLURM_NTASKS is set but SLURM_PROCID is not");
    e.rank = env_int("SLURM_PROCID", procid, 0, e.world_size - 1);
    e.local_rank = env_or_null("SLURM_LOCALID")
                       ? env_int("SLURM_LOCALID", env_or_null("SLURM_LOCALID"), 0, 1 << 20)
                       : 0;
    if (const char* ip = env_or_null("SLURM_LAUNCH_NODE_IPADDR")) e.master_addr = ip;
  } else {
    return e;
  }
  if (const char* addr = env_or_null("MASTER_ADDR"))
    e.master_addr = addr;
  else if (e.world_size > 1 && e.source == "torchrun")
    throw Error("environment MASTER_ADDR", "WORLD_SIZE > 1 but MASTER_ADDR is not set",
                "use dus launch or torchrun, or export MASTER_ADDR and MASTER_PORT");
  if (const char* port = env_or_null("MASTER_PORT"))
    e.master_port = env_int("MASTER_PORT", port, 1, 65535);
  return e;
}

namespace {

// Throws unless tensor `name` can take part in collective `call` of a group on `device`: c10d
// would reject a tensor on another device with a message that names neither the call nor the
// group (ProcessGroupNCCL accepts CUDA tensors only, Gloo CPU ones only).
void check_tensor(const std::string& call, const char* name, const at::Tensor& t,
                  c10::Device device, const char* backend) {
  if (!t.defined()) throw Error(call, std::string("tensor `") + name + "` is undefined");
  if (t.device() != device)
    throw Error(call,
                std::string("tensor `") + name + "` is on " + t.device().str() + ", but this " +
                    backend + " process group works on " + device.str(),
                "create the tensor on ProcessGroup::device() (or .to() it); reduce host scalars "
                "with ProcessGroup::all_reduce_scalars");
  if (!t.is_contiguous(t.suggest_memory_format()))
    throw Error(call, std::string("tensor `") + name + "` is not contiguous",
                "pass .contiguous() (and copy the result back if it must land in place)");
}

// out and in of reduce_scatter / all_gather: one dtype, and element counts that agree with the
// world size (the caller passes both sides of its equation: out * size == in for
// reduce_scatter, out == in * size for all_gather).
void check_pair(const std::string& call, const at::Tensor& out, const at::Tensor& in,
                int64_t out_numel, int64_t in_numel) {
  if (out.scalar_type() != in.scalar_type())
    throw Error(call,
                std::string("out is ") + c10::toString(out.scalar_type()) + " but in is " +
                    c10::toString(in.scalar_type()),
                "give both tensors one dtype");
  if (out_numel != in_numel)
    throw Error(call,
                fmt::format("out has {} elements and in {}: sizes do not match the world size",
                            out.numel(), in.numel()));
}

std::string first_line(const std::string& s) {
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

// The c10d implementation. Every collective goes through issue(): check its tensors, count it
// (for diagnosis), issue it, and turn any failure into a dus::Error that names the ranks at
// fault.
class C10dProcessGroup;

class C10dWork : public PendingWork {
 public:
  C10dWork(C10dProcessGroup* pg, c10::intrusive_ptr<c10d::Work> work, std::string what)
      : pg_(pg), work_(std::move(work)), what_(std::move(what)) {}
  void wait() override;

 private:
  C10dProcessGroup* pg_;
  c10::intrusive_ptr<c10d::Work> work_;
  std::string what_;
};

class C10dProcessGroup : public ProcessGroup {
 public:
  C10dProcessGroup(const DistEnv& env, const ProcessGroupOptions& o) : env_(env) {
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
    const int cuda_device = o.cuda_device;
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = env.world_size;
    so.waitWorkers = true;
    so.timeout = timeout;
    try {
      store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    } catch (const std::exception& e) {
      throw Error(
          fmt::format("rank {}: rendezvous at {}:{}", env.rank, env.master_addr, env.master_port),
          std::string("the TCPStore did not come up: ") + first_line(e.what()),
          "all ranks must start within the timeout (distributed.timeout_s) with the same "
          "MASTER_ADDR/PORT");
    }
    try {
      if (cuda_device >= 0) {
#ifdef USE_C10D_NCCL
        const int count = c10::cuda::device_count();
        if (cuda_device >= count)
          throw Error(fmt::format("rank {}: process group", env.rank),
                      fmt::format("CUDA device {} requested, but {} visible", cuda_device, count),
                      "check CUDA_VISIBLE_DEVICES and the number of ranks per node");
        device_ = c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(cuda_device));
        c10::cuda::set_device(device_.index());
        // Fault handling under NCCL (ProcessGroupNCCL.hpp and .cpp of LibTorch 2.11):
        // - By default WorkNCCL::wait() only makes the current stream wait ("Same as calling
        //   synchronize() for NCCL work if timeout is not set"), and failures are found by a
        //   watchdog thread, which on a timeout or NCCL error sleeps, then with the default
        //   TORCH_NCCL_ASYNC_ERROR_HANDLING=3 (SkipCleanUp, "tear down process") rethrows on its
        //   own thread: std::terminate, before any rank could be named.
        // - TORCH_NCCL_BLOCKING_WAIT=1, read in the constructor, creates no watchdog thread at
        //   all ("TORCH_NCCL_BLOCKING_WAIT is enabled, NO watchdog thread is created": the main
        //   thread throws and "it is the user's responsibility to handle the exception"; the
        //   heartbeat monitor that could std::abort is started by the watchdog, so neither
        //   runs). wait(timeout) then blocks the host until the work completes, an NCCL error
        //   is seen (isCompleted() checks the communicator), or `timeout` has passed since the
        //   collective was issued; it then aborts the communicator and rethrows the work's
        //   DistBackendError ("Watchdog caught collective operation timeout: ..." or "NCCL
        //   error: ...") on the calling thread, where C10dWork::wait turns it into the same
        //   dus::Error naming the rank(s) as under Gloo.
        // So blocking wait is forced (our fault semantics depend on it; a job-wide value of 0
        // is overridden), every wait passes our timeout explicitly, and the backend's own
        // timeout (used only where no explicit one is passed) is a minute longer as a backstop.
        // The cost: each wait blocks the host until the collective is done; the trainer needs
        // the result on the host (scalars) or right after (gradients) anyway.
        c10::utils::set_env("TORCH_NCCL_BLOCKING_WAIT", "1", /*overwrite=*/true);
        auto opts = c10d::ProcessGroupNCCL::Options::create();
        opts->timeout = timeout + std::chrono::minutes(1);
        backend_ =
            c10::make_intrusive<c10d::ProcessGroupNCCL>(store_, env.rank, env.world_size, opts);
        // barrier() and communicator creation use the bound device instead of guessing one.
        backend_->setBoundDeviceId(device_);
        backend_name_ = "nccl";
        wait_timeout_ = timeout;
#else
        throw Error("process group", "this build has no NCCL support (USE_C10D_NCCL)",
                    "rebuild with CUDA and nccl.h");
#endif
      } else {
#ifdef USE_C10D_GLOO
        auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
        // Loopback when the job is on one host; otherwise the address this host resolves to.
        const bool local = env.master_addr == "127.0.0.1" || env.master_addr == "localhost";
        if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"))
          opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
        else if (local)
          opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
        else
          opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        opts->threads = 2;
        backend_ =
            c10::make_intrusive<c10d::ProcessGroupGloo>(store_, env.rank, env.world_size, opts);
        backend_name_ = "gloo";
        // Gloo bounds each collective itself (opts timeout) and completes the work with an
        // exception, so wait() needs no timeout of its own.
        wait_timeout_ = ::kNoTimeout;
#else
        throw Error("process group", "this build has no Gloo support (USE_C10D_GLOO)");
#endif
      }
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(fmt::format("rank {}: process group", env.rank), first_line(e.what()));
    }
    start_heartbeat();
  }

  // Without an explicit shutdown() the run did not end normally (an exception is unwinding, or
  // the caller forgot): abort rather than flush, as ProcessGroupNCCL's own destructor does.
  ~C10dProcessGroup() override {
    end(/*clean=*/false);
  }

  int rank() const override {
    return env_.rank;
  }
  int size() const override {
    return env_.world_size;
  }
  const char* backend() const override {
    return backend_name_;
  }
  c10::Device device() const override {
    return device_;
  }

  void all_reduce_sum(at::Tensor& t) override {
    all_reduce_sum_async(t)->wait();
  }

  std::unique_ptr<PendingWork> all_reduce_sum_async(at::Tensor t) override {
    check("all_reduce", "t", t);
    std::vector<at::Tensor> v{std::move(t)};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    return issue("all_reduce", [&] { return backend_->allreduce(v, o); });
  }

  std::unique_ptr<PendingWork> reduce_sum_async(at::Tensor t, int root) override {
    check("reduce", "t", t);
    if (root < 0 || root >= env_.world_size)
      throw Error(where("reduce"),
                  fmt::format("root rank {} is not in [0, {})", root, env_.world_size));
    std::vector<at::Tensor> v{std::move(t)};
    c10d::ReduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.rootRank = root;
    return issue("reduce", [&] { return backend_->reduce(v, o); });
  }

  void reduce_scatter_sum(at::Tensor& out, at::Tensor& in) override {
    check("reduce_scatter", "out", out);
    check("reduce_scatter", "in", in);
    check_pair(where("reduce_scatter"), out, in, out.numel() * env_.world_size, in.numel());
    c10d::ReduceScatterOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    issue("reduce_scatter", [&] { return backend_->_reduce_scatter_base(out, in, o); })->wait();
  }

  void all_gather(at::Tensor& out, at::Tensor& in) override {
    check("all_gather", "out", out);
    check("all_gather", "in", in);
    check_pair(where("all_gather"), out, in, out.numel(), in.numel() * env_.world_size);
    issue("all_gather", [&] {
      return backend_->_allgather_base(out, in, c10d::AllgatherOptions());
    })->wait();
  }

  void broadcast(at::Tensor& t, int root) override {
    check("broadcast", "t", t);
    std::vector<at::Tensor> v{t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    issue("broadcast", [&] { return backend_->broadcast(v, o); })->wait();
  }

  void barrier() override {
    issue("barrier", [&] { return backend_->barrier(c10d::BarrierOptions()); })->wait();
  }

  void mark_progress(int64_t step) override {
    step_.store(step);
  }

  void shutdown() override {
    end(/*clean=*/true);
  }

  std::chrono::milliseconds wait_timeout() const {
    return wait_timeout_;
  }

  // Turns a failure of collective `what` into an error naming the ranks at fault.
  [[noreturn]] void fail(const std::string& what, const std::string& cause) {
    failed_.store(true);
    throw Error(fmt::format("rank {}: {} (collective #{}, step {})", env_.rank, what, seq_.load(),
                            step_.load() + 1),
                diagnose() + " [" + first_line(cause) + "]",
                "the run stopped; see the failing rank's output, then continue with dus resume");
  }

 private:
  std::string where(const char* call) const {
    return fmt::format("rank {}: {}", env_.rank, call);
  }

  void check(const char* call, const char* name, const at::Tensor& t) const {
    check_tensor(where(call), name, t, device_, backend_name_);
  }

  template <typename F>
  std::unique_ptr<PendingWork> issue(const char* what, F&& f) {
    if (!backend_)
      throw Error(where(what), "the process group was shut down",
                  "no collective may follow ProcessGroup::shutdown()");
    ++seq_;
    try {
      return std::make_unique<C10dWork>(this, f(), what);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail(what, e.what());
    }
  }

  // Heartbeat first (it reads seq_/step_ of this object), then the backend. After a failed
  // collective a peer may be dead: ProcessGroupNCCL::shutdown() would flush (ncclCommFinalize)
  // and could wait for it forever, while abort() is bounded (ncclCommAbort, run under the
  // group's timeout). Gloo has neither (c10d::Backend's no-ops): its destructor joins its
  // worker threads once their collectives have completed or timed out.
  void end(bool clean) noexcept {
    stop_.store(true);
    if (heartbeat_.joinable()) heartbeat_.join();
    if (!backend_) return;
    try {
      if (clean && !failed_.load())
        backend_->shutdown();
      else
        backend_->abort();
    } catch (const std::exception& e) {
      fmt::print(stderr, "rank {}: {} process group {}: {}\n", env_.rank, backend_name_,
                 clean ? "shutdown" : "abort", first_line(e.what()));
    }
    try {
      backend_.reset();
    } catch (...) {
    }
  }

  // Heartbeats on a store connection of their own (the main thread's may be inside a call).
  void start_heartbeat() {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env_.master_port);
    so.isServer = false;
    so.waitWorkers = false;
    so.timeout = std::chrono::milliseconds(5000);
    auto hb_store = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, so);
    heartbeat_ = std::thread([this, hb_store] {
      int64_t beats = 0;
      const std::string key = "hb/" + std::to_string(env_.rank);
      while (!stop_.load()) {
        try {
          const std::string v = std::to_string(++beats) + ":" + std::to_string(seq_.load()) + ":" +
                                std::to_string(step_.load());
          hb_store->set(key, std::vector<uint8_t>(v.begin(), v.end()));
        } catch (const std::exception&) {
          return;  // the store (rank 0) is gone; diagnose() will say so
        }
        for (int i = 0; i < 10 && !stop_.load(); ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }

  struct Beat {
    int64_t beats = -1, seq = -1, step = -1;
  };

  std::map<int, Beat> read_beats() {
    std::map<int, Beat> out;
    for (int r = 0; r < env_.world_size; ++r) {
      const std::string key = "hb/" + std::to_string(r);
      if (!store_->check({key})) continue;
      auto raw = store_->get(key);
      Beat b;
      std::sscanf(std::string(raw.begin(), raw.end()).c_str(), "%ld:%ld:%ld", &b.beats, &b.seq,
                  &b.step);
      out[r] = b;
    }
    return out;
  }

  std::string diagnose() {
    try {
      auto a = read_beats();
      std::this_thread::sleep_for(std::chrono::milliseconds(2500));
      auto b = read_beats();
      std::string dead, hung;
      const int64_t my_seq = seq_.load();
      for (int r = 0; r < env_.world_size; ++r) {
        if (r == env_.rank) continue;
        const bool beating = a.count(r) && b.count(r) && b[r].beats > a[r].beats;
        if (!beating)
          dead += fmt::format("{}{}", dead.empty() ? "" : ", ", r);
        else if (b[r].seq < my_seq)
          hung += fmt::format("{}{}", hung.empty() ? "" : ", ", r);
      }
      if (!dead.empty()) return "rank " + dead + " stopped responding (process dead or killed)";
      if (!hung.empty())
        return "rank " + hung + " is alive but has not reached this collective (hung or slow)";
      return "every rank is alive; the collective itself failed";
    } catch (const std::exception&) {
      return fmt::format(
          "rank 0 is unreachable (it hosts the rendezvous store at {}:{}): process dead or killed",
          env_.master_addr, env_.master_port);
    }
  }

  DistEnv env_;
  c10::Device device_{c10::DeviceType::CPU};
  std::chrono::milliseconds wait_timeout_{::kNoTimeout};
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  const char* backend_name_ = "none";
  std::atomic<int64_t> seq_{0}, step_{0};
  std::atomic<bool> stop_{false}, failed_{false};
  std::thread heartbeat_;
};

void C10dWork::wait() {
  try {
    // Under NCCL (blocking wait) this blocks the host and throws on timeout or NCCL error;
    // under Gloo the work itself completes with an exception when its timeout passes.
    if (!work_->wait(pg_->wait_timeout())) pg_->fail(what_, "aborted");
    if (work_->exception()) std::rethrow_exception(work_->exception());
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    pg_->fail(what_, e.what());
  }
}

}  // namespace

std::shared_ptr<ProcessGroup> ProcessGroup::create(const DistEnv& env,
                                                   const ProcessGroupOptions& options) {
  return std::make_shared<C10dProcessGroup>(env, options);
}

std::vector<double> ProcessGroup::all_reduce_scalars(std::vector<double> values) {
  if (values.empty()) return values;
  const auto n = static_cast<int64_t>(values.size());
  // (n) float64 copied from the host to the group's device (copy=true: the collective never
  // writes into `values` behind our back; a pageable host->device copy is synchronous).
  at::Tensor t = at::from_blob(values.data(), {n}, at::TensorOptions().dtype(at::kDouble))
                     .to(device(), at::kDouble, /*non_blocking=*/false, /*copy=*/true);
  all_reduce_sum(t);
  // Back to the host: the one device->host sync of the call (a no-op on the CPU).
  const at::Tensor host = t.to(at::kCPU);
  std::memcpy(values.data(), host.const_data_ptr<double>(), sizeof(double) * values.size());
  return values;
}

}  // namespace dus::dist
