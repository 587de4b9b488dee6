#include "model/kernels/kernel_set.h"

#include <iostream>
#include <sstream>

#include "core/error.h"
#include "model/kernels/cpu_launch.h"

namespace dus::kernels {

KernelMode parse_kernel_mode(const std::string& text, const std::string& where) {
  if (text == "auto") return KernelMode::kAuto;
  if (text == "on") return KernelMode::kOn;
  if (text == "off") return KernelMode::kOff;
  throw dus::Error(where, "unknown kernel mode '" + text + "'", "use auto, on or off");
}

std::string to_string(KernelMode mode) {
  switch (mode) {
    case KernelMode::kAuto:
      return "auto";
    case KernelMode::kOn:
      return "on";
    case KernelMode::kOff:
      return "off";
  }
  return "?";
}

std::string KernelSet::describe() const {
  std::string out;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!out.empty()) out += ' ';
    out += name;
  };
  add(rmsnorm, "rmsnorm");
  add(rope, "rope");
  add(swiglu, "swiglu");
  add(cross_entropy, "cross_entropy");
  add(attention, "attention");
  add(adamw, "adamw");
  add(chunked_loss, "chunked_loss");
  return out.empty() ? "none" : out;
}

std::string KernelSelfTestReport::describe() const {
  std::ostringstream out;
  for (const auto& op : ops) {
    if (!op.passed && op.note.rfind("skipped", 0) == 0) {  // nothing ran: no errors to show
      out << "  " << op.op << ": " << op.note << "\n";
      continue;
    }
    out << "  " << op.op << ": " << (op.passed ? "pass" : "FAIL") << " (forward err "
        << op.max_error_forward << ", |d| " << op.max_abs_forward << "; backward err "
        << op.max_error_backward << ", |d| " << op.max_abs_backward << ")";
    if (!op.note.empty()) out << " " << op.note;
    out << "\n";
  }
  return out.str();
}

bool cuda_kernels_built() {
#ifdef DUS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

KernelSet resolve_kernels(const KernelOptions& options, c10::Device device,
                          KernelSelfTestReport* report) {
  KernelSet set;
  set.chunked_loss = options.chunked_loss;
  set.loss_chunk_rows = options.loss_chunk_rows;
  if (report) report->ops.clear();
  std::string why;  // how the set was chosen
  if (options.mode == KernelMode::kOff) {
    why = "kernels: off";
  } else if (device.is_cpu() && options.mode == KernelMode::kOn) {
    set.rmsnorm = set.rope = set.swiglu = set.cross_entropy = true;  // the ops with CPU loops
    set.attention = cpu::attention_blas_available();
    why = "kernels: on (CPU loops, no self-test)";
  } else if (!device.is_cuda() && !device.is_cpu()) {
    why = "no kernels on " + device.str() + ": references";
  } else if (device.is_cuda() && !cuda_kernels_built()) {
    if (options.mode == KernelMode::kOn)
      throw dus::Error("kernels", "`on` asked for fused CUDA kernels, but this build has none",
                       "build with the CUDA toolkit present (-DDUS_CUDA=ON), or use auto/off");
    why = "this build has no CUDA kernels: references";
  } else if (options.mode == KernelMode::kOn) {
    set.rmsnorm = set.rope = set.swiglu = set.cross_entropy = set.adamw = true;
    why = "kernels: on (no self-test)";
  } else {
    auto result = run_kernel_self_test(device);
    for (const auto& op : result.ops) {
      if (!op.passed) continue;
      if (op.op == "rmsnorm") set.rmsnorm = true;
      if (op.op == "rope") set.rope = true;
      if (op.op == "swiglu") set.swiglu = true;
      if (op.op == "cross_entropy") set.cross_entropy = true;
      if (op.op == "attention") set.attention = true;
      if (op.op == "adamw") set.adamw = true;
    }
    if (options.log)
      std::cerr << "kernels: self-test on " << device.str() << "\n" << result.describe();
    if (report) *report = result;
    why = "kernels: auto";
  }
  if (options.log) std::cerr << why << "; active: " << set.describe() << "\n";
  return set;
}

}  // namespace dus::kernels
