// The child-process supervisor of dus launch and dus sweep, on real /bin/sh children: exit codes,
// deaths by signal, exec failures, environment, prefixed and logged output, SIGTERM to this
// process reported and forwarded, and the SIGTERM -> SIGKILL escalation.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/subprocess.h"

namespace {

dus::ChildSpec sh(const std::string& script) {
  dus::ChildSpec s;
  s.program = "/bin/sh";
  s.argv = {"sh", "-c", script};
  return s;
}

// Waits until every child has ended and its output is read; returns the exits in order.
std::vector<dus::ChildExit> wait_all(dus::Supervisor& sup, double limit_s = 20) {
  std::vector<dus::ChildExit> out;
  const auto t0 = std::chrono::steady_clock::now();
  while (sup.busy()) {
    REQUIRE(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < limit_s);
    for (const auto& e : sup.wait(50).exited) out.push_back(e);
  }
  return out;
}

std::string read_all(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string text;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
  return text;
}

// Reads `f` (a child's prefixed stdout) until it holds `what`, serving the supervisor meanwhile.
void wait_for_output(dus::Supervisor& sup, FILE* f, const std::string& what) {
  const auto t0 = std::chrono::steady_clock::now();
  while (read_all(f).find(what) == std::string::npos) {
    REQUIRE(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 20);
    sup.wait(20);
  }
}

}  // namespace

TEST_CASE("supervisor: exit codes, deaths by signal and exec failures", "[unit]") {
  dus::Supervisor sup;
  const size_t ok = sup.spawn(sh("exit 0"));
  const size_t three = sup.spawn(sh("exit 3"));
  const size_t killed = sup.spawn(sh("kill -9 $$"));
  dus::ChildSpec missing;
  missing.program = "/nonexistent/dus-test-program";
  missing.argv = {"x"};
  FILE* err = std::tmpfile();
  missing.output = dus::ChildOutput::kPrefixed;
  missing.err = err;
  const size_t absent = sup.spawn(missing);
  CHECK(sup.running() == 4);

  std::vector<dus::ChildExit> exits = wait_all(sup);
  REQUIRE(exits.size() == 4);
  CHECK(sup.running() == 0);
  std::vector<dus::ChildExit> by_id(4);
  for (const auto& e : exits) by_id.at(e.id) = e;
  CHECK(by_id[ok].pid == sup.pid(ok));
  CHECK_FALSE(by_id[ok].lost);
  CHECK(dus::exit_code_of(by_id[ok]) == 0);
  CHECK(dus::exit_code_of(by_id[three]) == 3);
  CHECK(dus::describe_exit(by_id[three]) == "exited with code 3");
  CHECK(dus::exit_code_of(by_id[killed]) == 128 + 9);
  CHECK_THAT(dus::describe_exit(by_id[killed]), Catch::StartsWith("was killed by signal 9 ("));
  CHECK(dus::exit_code_of(by_id[absent]) == 127);
  CHECK_THAT(read_all(err),
             Catch::Contains("exec /nonexistent/dus-test-program failed: No such file"));
  std::fclose(err);

  dus::ChildExit lost;
  lost.lost = true;
  CHECK(dus::exit_code_of(lost) == 1);
  CHECK(dus::describe_exit(lost) == "was lost");
}

TEST_CASE("supervisor: environment, prefixed lines and log files", "[unit]") {
  FILE* out = std::tmpfile();
  FILE* err = std::tmpfile();
  const std::string log = (std::filesystem::temp_directory_path() /
                           ("dus_subprocess_" + std::to_string(::getpid()) + ".log"))
                              .string();
  std::remove(log.c_str());
  {
    std::ofstream(log) << "earlier\n";  // appended to, not truncated
    dus::Supervisor sup;
    dus::ChildSpec a = sh("echo \"rank=$RANK port=$MASTER_PORT\"; printf 'x\\ny'; echo oops >&2");
    a.env = {{"RANK", "1"}, {"MASTER_PORT", "29500"}};
    a.output = dus::ChildOutput::kPrefixed;
    a.line_prefix = "[rank 1] ";
    a.out = out;
    a.err = err;
    sup.spawn(a);
    dus::ChildSpec b = sh("echo to-log; echo err-to-log >&2");
    b.output = dus::ChildOutput::kLogFile;
    b.log_file = log;
    sup.spawn(b);
    for (const auto& e : wait_all(sup)) CHECK(dus::exit_code_of(e) == 0);
  }
  // A last line without a newline is still printed, prefixed, when the stream ends.
  CHECK(read_all(out) == "[rank 1] rank=1 port=29500\n[rank 1] x\n[rank 1] y\n");
  CHECK(read_all(err) == "[rank 1] oops\n");
  std::ifstream f(log);
  std::stringstream text;
  text << f.rdbuf();
  CHECK(text.str() == "earlier\nto-log\nerr-to-log\n");
  std::remove(log.c_str());
  std::fclose(out);
  std::fclose(err);
}

TEST_CASE("supervisor: SIGTERM to this process is reported, forwarded, and leaves it running",
          "[unit]") {
  FILE* out = std::tmpfile();
  dus::Supervisor sup;
  dus::ChildSpec c =
      sh("trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done");
  c.output = dus::ChildOutput::kPrefixed;
  c.out = out;
  sup.spawn(c);
  wait_for_output(sup, out, "ready\n");

  REQUIRE(::raise(SIGTERM) == 0);  // the supervisor's handler records it: this test goes on
  int seen = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (seen == 0) {
    REQUIRE(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 20);
    seen = sup.wait(50).signal;
  }
  CHECK(seen == SIGTERM);
  CHECK(sup.wait(0).signal == 0);  // reported once
  CHECK(sup.running() == 1);       // not forwarded by itself: the caller decides

  sup.signal_all(seen);
  std::vector<dus::ChildExit> exits = wait_all(sup);
  REQUIRE(exits.size() == 1);
  CHECK(dus::exit_code_of(exits[0]) == 7);
  CHECK_THAT(read_all(out), Catch::Contains("got-term"));
  std::fclose(out);
}

TEST_CASE("supervisor: stop_all escalates to SIGKILL after the grace period", "[unit]") {
  FILE* out = std::tmpfile();
  dus::Supervisor sup;
  dus::ChildSpec stubborn = sh("trap '' TERM; echo ready; exec sleep 30");  // ignores SIGTERM
  stubborn.output = dus::ChildOutput::kPrefixed;
  stubborn.out = out;
  const size_t s = sup.spawn(stubborn);
  const size_t polite = sup.spawn(sh("exec sleep 30"));  // SIGTERM's default: dies at once
  wait_for_output(sup, out, "ready\n");

  const auto t0 = std::chrono::steady_clock::now();
  sup.stop_all(0.5);
  std::vector<dus::ChildExit> by_id(2);
  int escalated = 0;
  while (sup.busy()) {
    REQUIRE(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 20);
    const dus::SupervisorEvents ev = sup.wait(50);
    escalated += ev.escalated;
    for (const auto& e : ev.exited) by_id.at(e.id) = e;
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(escalated == 1);
  CHECK(dus::exit_code_of(by_id[polite]) == 128 + SIGTERM);
  CHECK(dus::exit_code_of(by_id[s]) == 128 + SIGKILL);
  CHECK(took >= 0.5);
  CHECK(took < 10);
  std::fclose(out);
}

TEST_CASE("supervisor: children still running when it is destroyed are killed", "[unit]") {
  pid_t pid = -1;
  {
    dus::Supervisor sup;
    pid = sup.pid(sup.spawn(sh("exec sleep 30")));
    CHECK(::kill(pid, 0) == 0);
  }
  CHECK(::kill(pid, 0) != 0);  // killed and reaped: no such process any more
}

TEST_CASE("supervisor: one at a time", "[unit]") {
  dus::Supervisor sup;
  CHECK_THROWS_WITH(dus::Supervisor(), Catch::Contains("already have an owner"));
}
