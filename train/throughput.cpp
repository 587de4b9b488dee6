#include "train/throughput.h"

#include <cctype>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

namespace {

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool alnum(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}

// `word` occurs in `name` with no letter or digit right before or after it.
bool has_word(const std::string& name, const std::string& word) {
  for (size_t at = name.find(word); at != std::string::npos; at = name.find(word, at + 1)) {
    const bool start_ok = at == 0 || !alnum(name[at - 1]);
    const size_t end = at + word.size();
    const bool end_ok = end == name.size() || !alnum(name[end]);
    if (start_ok && end_ok) return true;
  }
  return false;
}

}  // namespace

std::optional<double> datasheet_bf16_peak_tflops(const std::string& device_name) {
  const std::string name = upper(device_name);
  if (name.find("NVL") != std::string::npos) return std::nullopt;
  if (has_word(name, "A100")) return 312.0;
  if (has_word(name, "H100")) return has_word(name, "PCIE") ? 756.0 : 989.0;
  if (has_word(name, "H200") || has_word(name, "GH200")) return 989.0;
  if (has_word(name, "L40S")) return 362.0;
  return std::nullopt;
}

Throughput compute_throughput(const ThroughputInput& in) {
  if (!(in.seconds > 0) || in.world_size < 1 || in.tokens < 0)
    throw Error("throughput", fmt::format("needs seconds > 0, world_size >= 1 and tokens >= 0 (got "
                                          "{:f} s, world {}, {:f} tokens)",
                                          in.seconds, in.world_size, in.tokens));
  Throughput t;
  t.tokens_per_s = in.tokens / in.seconds;
  t.tokens_per_s_per_device = t.tokens_per_s / in.world_size;
  t.achieved_tflops = t.tokens_per_s_per_device * in.flops_per_token / 1e12;
  if (in.datasheet_tflops && *in.datasheet_tflops > 0)
    t.mfu_datasheet = t.achieved_tflops / *in.datasheet_tflops;
  if (in.measured_gflops > 0) t.mfu_measured = t.achieved_tflops * 1e3 / in.measured_gflops;
  return t;
}

std::string format_throughput(const ThroughputInput& in, const Throughput& t) {
  std::string s = fmt::format("{:.0f} tok/s", t.tokens_per_s_per_device);
  if (in.world_size > 1 || in.gpu) s += in.gpu ? "/GPU" : "/rank";
  if (in.world_size > 1) s += fmt::format(" ({:.0f} all)", t.tokens_per_s);
  s += " | MFU ";
  if (in.gpu) {
    std::string parts;
    if (t.mfu_datasheet)
      parts = fmt::format("{:.1f}% of {:.0f} TF datasheet", 100.0 * *t.mfu_datasheet,
                          *in.datasheet_tflops);
    if (t.mfu_measured) {
      if (!parts.empty()) parts += ", ";
      fmt::format_to(std::back_inserter(parts), "{:.1f}% of {:.0f} TF measured",
                     100.0 * *t.mfu_measured, in.measured_gflops / 1e3);
    }
    s += parts.empty() ? std::string("n/a") : parts;
    if (!t.mfu_datasheet) s += " (no datasheet peak for " + in.device_name + ")";
  } else if (t.mfu_measured) {
    fmt::format_to(std::back_inserter(s), "{:.0f}% of measured {:.0f} GFLOP/s",
                   100.0 * *t.mfu_measured, in.measured_gflops);
  } else {
    s += "n/a (no measured matmul rate)";
  }
  return s;
}

}  // namespace dus
