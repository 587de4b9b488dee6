// The process group on the CPU (Gloo): the device it owns, the float64 scalar all-reduce, the
// device / dtype / size checks of every collective, shutdown, and a genuinely two-rank sum run
// by two processes of this executable (the NCCL path needs GPUs: see the [gpu] notes in
// process_group.cpp).
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "test_util.h"
#include "train/distributed/process_group.h"

extern char** environ;

namespace {

using dus::dist::DistEnv;
using dus::dist::ProcessGroup;
using dus::dist::ProcessGroupOptions;

// A TCP port nobody listens on now (the kernel's pick for an ephemeral bind).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

DistEnv env_of(int rank, int world_size, int port) {
  DistEnv e;
  e.rank = rank;
  e.world_size = world_size;
  e.local_rank = rank;
  e.master_addr = "127.0.0.1";
  e.master_port = port;
  e.source = "test";
  return e;
}

std::shared_ptr<ProcessGroup> one_rank_gloo() {
  ProcessGroupOptions o;
  o.timeout_s = 30;
  return ProcessGroup::create(env_of(0, 1, free_port()), o);
}

// The message of the dus::Error `f` throws ("" when it throws none).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const dus::Error& e) {
    return e.what();
  }
  return "";
}

at::Tensor meta(int64_t n) {
  return at::empty({n}, at::TensorOptions().device(c10::DeviceType::Meta).dtype(at::kFloat));
}

at::Tensor cpu(int64_t n, at::ScalarType dtype = at::kFloat) {
  return at::zeros({n}, at::TensorOptions().dtype(dtype));
}

}  // namespace

TEST_CASE("process group: a Gloo group owns the CPU and sums scalars in float64", "[unit]") {
  auto pg = one_rank_gloo();
  CHECK(std::string(pg->backend()) == "gloo");
  CHECK(pg->device() == c10::Device(c10::DeviceType::CPU));
  CHECK(pg->all_reduce_scalars({1.5, 2.0}) == std::vector<double>{1.5, 2.0});
  // float64 end to end: a value float32 would round (1 + 2^-40) comes back exactly.
  const double fine = 1.0 + std::ldexp(1.0, -40);
  CHECK(pg->all_reduce_scalars({fine}) == std::vector<double>{fine});
  CHECK(pg->all_reduce_scalars({}).empty());
  pg->shutdown();
}

TEST_CASE("process group: a tensor on another device is refused, naming call and devices",
          "[unit]") {
  auto pg = one_rank_gloo();
  auto names_both = [](const std::string& msg, const std::string& call) {
    INFO(msg);
    CHECK(msg.find(call) != std::string::npos);
    CHECK(msg.find("meta") != std::string::npos);
    CHECK(msg.find("cpu") != std::string::npos);
    CHECK(msg.find("gloo") != std::string::npos);
  };
  at::Tensor m = meta(4);
  names_both(error_of([&] { pg->all_reduce_sum(m); }), "all_reduce");
  names_both(error_of([&] { pg->all_reduce_sum_async(m); }), "all_reduce");
  at::Tensor ok1 = cpu(4), ok2 = cpu(4), m1 = meta(4);
  names_both(error_of([&] { pg->reduce_scatter_sum(m1, ok1); }), "reduce_scatter");
  names_both(error_of([&] { pg->reduce_scatter_sum(ok1, m1); }), "reduce_scatter");
  names_both(error_of([&] { pg->all_gather(m1, ok2); }), "all_gather");
  names_both(error_of([&] { pg->all_gather(ok2, m1); }), "all_gather");
  names_both(error_of([&] { pg->broadcast(m1, 0); }), "broadcast");
  // The group still works after refusals: nothing was issued.
  CHECK(pg->all_reduce_scalars({3.0}) == std::vector<double>{3.0});
  pg->shutdown();
}

TEST_CASE("process group: mismatched dtypes, sizes and non-contiguous tensors are refused",
          "[unit]") {
  auto pg = one_rank_gloo();
  at::Tensor f = cpu(4, at::kFloat), d = cpu(4, at::kDouble);
  const std::string dtype_msg = error_of([&] { pg->all_gather(f, d); });
  INFO(dtype_msg);
  CHECK(dtype_msg.find("all_gather") != std::string::npos);
  CHECK(dtype_msg.find("Float") != std::string::npos);
  CHECK(dtype_msg.find("Double") != std::string::npos);
  CHECK(error_of([&] { pg->reduce_scatter_sum(f, d); }).find("reduce_scatter") !=
        std::string::npos);
  at::Tensor f3 = cpu(3);
  CHECK(error_of([&] { pg->all_gather(f3, f); }).find("sizes do not match") != std::string::npos);
  at::Tensor strided = at::zeros({4, 4}).t();
  CHECK(error_of([&] { pg->all_reduce_sum(strided); }).find("not contiguous") != std::string::npos);
  at::Tensor undefined;
  CHECK(error_of([&] { pg->broadcast(undefined, 0); }).find("undefined") != std::string::npos);
  // Well-formed calls of a world of one are identities.
  at::Tensor out = cpu(4), in = at::full({4}, 2.5f);
  pg->all_gather(out, in);
  CHECK(out.equal(in));
  pg->shutdown();
}

TEST_CASE("process group: shutdown is idempotent and ends the group", "[unit]") {
  auto pg = one_rank_gloo();
  pg->shutdown();
  pg->shutdown();
  const std::string msg = error_of([&] { pg->all_reduce_scalars({1.0}); });
  CHECK(msg.find("shut down") != std::string::npos);
}

// One rank of the two-rank test below, run in a process of its own (hidden: run by name).
TEST_CASE("process group two-rank child", "[.]") {
  const char* rank = std::getenv("DUS_PG_CHILD_RANK");
  const char* port = std::getenv("DUS_PG_CHILD_PORT");
  const char* out = std::getenv("DUS_PG_CHILD_OUT");
  if (!rank || !port || !out) return;  // only meaningful as a child of the test below
  const int r = std::atoi(rank);
  ProcessGroupOptions o;
  o.timeout_s = 30;
  auto pg = ProcessGroup::create(env_of(r, 2, std::atoi(port)), o);
  const std::vector<double> sums = pg->all_reduce_scalars({r + 1.0, 10.0});
  at::Tensor t = at::full({3}, static_cast<float>(r + 1));
  pg->all_reduce_sum(t);
  pg->barrier();
  pg->shutdown();
  std::ofstream f(out);
  f << sums.at(0) << " " << sums.at(1) << " " << t[0].item<float>() << " " << t[2].item<float>()
    << "\n";
}

TEST_CASE("process group: two Gloo ranks in two processes sum scalars and tensors", "[unit]") {
  dus::testing::TempDir dir;
  const std::string port = std::to_string(free_port());
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    // Environment and argv built before fork(): the child only calls execve.
    std::vector<std::string> vars{"DUS_PG_CHILD_RANK=" + std::to_string(r),
                                  "DUS_PG_CHILD_PORT=" + port,
                                  "DUS_PG_CHILD_OUT=" + dir.file("rank" + std::to_string(r))};
    std::vector<char*> envp;
    for (char** e = environ; *e; ++e) envp.push_back(*e);
    for (auto& v : vars) envp.push_back(v.data());
    envp.push_back(nullptr);
    std::string exe = "/proc/self/exe", name = "process group two-rank child";
    char* argv[] = {exe.data(), name.data(), nullptr};
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::execve(exe.c_str(), argv, envp.data());
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  // Both must finish within the group's timeout and a margin; a hang is a failure, not a stall.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  std::vector<int> status(2, -1);
  for (int done = 0; done < 2;) {
    for (int r = 0; r < 2; ++r) {
      if (status[r] != -1) continue;
      int st = 0;
      if (::waitpid(pids[r], &st, WNOHANG) == pids[r]) {
        status[r] = st;
        ++done;
      }
    }
    if (std::chrono::steady_clock::now() > deadline) {
      for (int r = 0; r < 2; ++r)
        if (status[r] == -1) ::kill(pids[r], SIGKILL), ::waitpid(pids[r], &status[r], 0);
      FAIL("the two ranks did not finish within 90 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (int r = 0; r < 2; ++r) {
    INFO("rank " << r);
    REQUIRE(WIFEXITED(status[r]));
    CHECK(WEXITSTATUS(status[r]) == 0);
    std::ifstream f(dir.file("rank" + std::to_string(r)));
    REQUIRE(f.good());
    double s0 = 0, s1 = 0, t0 = 0, t2 = 0;
    f >> s0 >> s1 >> t0 >> t2;
    CHECK(s0 == 3.0);   // (0 + 1) + (1 + 1)
    CHECK(s1 == 20.0);  // 10 + 10
    CHECK(t0 == 3.0);
    CHECK(t2 == 3.0);
  }
}
