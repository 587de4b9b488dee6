#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <thread>

#include "core/clock.h"

TEST_CASE("fmt_eta: minutes and seconds below an hour, hours and minutes from an hour", "[unit]") {
  CHECK(dus::fmt_eta(0) == "0m00s");
  CHECK(dus::fmt_eta(59.9) == "0m59s");  // truncated, not rounded up to a minute
  CHECK(dus::fmt_eta(75) == "1m15s");
  CHECK(dus::fmt_eta(3599) == "59m59s");
  CHECK(dus::fmt_eta(3600) == "1h00m");
  CHECK(dus::fmt_eta(7260) == "2h01m");
  CHECK(dus::fmt_eta(90061) == "25h01m");  // 25 h 1 min 1 s: no day unit
}

TEST_CASE("fmt_eta: no estimate yet reads '?'", "[unit]") {
  CHECK(dus::fmt_eta(-1) == "?");
  CHECK(dus::fmt_eta(std::nan("")) == "?");
  CHECK(dus::fmt_eta(std::numeric_limits<double>::infinity()) == "?");
  CHECK(dus::fmt_eta(1e7) == "2777h46m");
  CHECK(dus::fmt_eta(1e7 + 1) == "?");
}

TEST_CASE("seconds_since measures steady-clock time in seconds", "[unit]") {
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const double s = dus::seconds_since(t0);
  CHECK(s >= 0.05);
  CHECK(s < 5.0);  // seconds, not milliseconds or nanoseconds
}
