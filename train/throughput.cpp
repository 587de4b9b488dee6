#include "train/throughput.h"

#include <cctype>
#include <cstdio>

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

std::string printf_string(const char* format, double a) {
  char b[64];
  std::snprintf(b, sizeof b, format, a);
  return b;
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
    throw Error("throughput", "needs seconds > 0, world_size >= 1 and tokens >= 0 (got " +
                                  std::to_string(in.seconds) + " s, world " +
                                  std::to_string(in.world_size) + ", " + std::to_string(in.tokens) +
                                  " tokens)");
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
  std::string s = printf_string("%.0f tok/s", t.tokens_per_s_per_device);
  if (in.world_size > 1 || in.gpu) s += in.gpu ? "/GPU" : "/rank";
  if (in.world_size > 1) s += printf_string(" (%.0f all)", t.tokens_per_s);
  s += " | MFU ";
  if (in.gpu) {
    std::string parts;
    if (t.mfu_datasheet)
      parts = printf_string("%.1f%%", 100.0 * *t.mfu_datasheet) +
              printf_string(" of %.0f TF datasheet", *in.datasheet_tflops);
    if (t.mfu_measured) {
      if (!parts.empty()) parts += ", ";
      parts += printf_string("%.1f%%", 100.0 * *t.mfu_measured) +
               printf_string(" of %.0f TF measured", in.measured_gflops / 1e3);
    }
    s += parts.empty() ? std::string("n/a") : parts;
    if (!t.mfu_datasheet) s += " (no datasheet peak for " + in.device_name + ")";
  } else if (t.mfu_measured) {
    s += printf_string("%.0f%%", 100.0 * *t.mfu_measured) +
         printf_string(" of measured %.0f GFLOP/s", in.measured_gflops);
  } else {
    s += "n/a (no measured matmul rate)";
  }
  return s;
}

}  // namespace dus
