// What the CPU loops of the fused ops (model/kernels/*_cpu.cpp) need to vectorise: a
// function-multiversioning attribute, an exp the compiler can vectorise, bf16 loads and stores,
// and the row reductions they share.
//
// The project is compiled for baseline x86-64 (SSE2), because the binary must run on every CPU
// here. DUS_CPU_CLONES makes GCC/Clang compile a loop three times (AVX-512, AVX2 + FMA, baseline)
// and pick one at load time by cpuid (an ifunc), so a hot loop uses the widest vectors the CPU
// has. The files that use it are compiled with -fno-trapping-math -fno-math-errno (CMake),
// without which GCC will not if-convert or vectorise floor/min/max; nothing here reads the
// floating-point exception flags or errno.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <type_traits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DUS_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DUS_CPU_CLONES
#endif

// A loop body templated on the storage type, inlined into each DUS_CPU_CLONES entry point.
#define DUS_CPU_INLINE inline __attribute__((always_inline))

namespace dus::kernels::cpu {

/// e^x for x in float range, branch-free so loops calling it vectorise: Cody-Waite reduction
/// x = k ln2 + r (|r| <= ln2 / 2, ln2 split in two so k ln2 is exact), Cephes' degree-6
/// polynomial for e^r, and 2^k built in the exponent bits. x is clamped to [-87, 88], where
/// 2^k stays a normal float: e^-87 = 1.6e-38 stands in for smaller values, e^88 = 1.65e38 for
/// larger ones. Relative error about 2 ulp (tests/test_kernels.cpp checks it against std::exp).
inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float k = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  const float r = x - k * 0.693359375f + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

/// bf16 -> float: exact (the bf16 bits are the float's upper half).
inline float bf16_to_float(uint16_t bits) {
  return __builtin_bit_cast(float, static_cast<uint32_t>(bits) << 16);
}

/// float -> bf16, rounded to nearest even, NaN kept NaN: c10::BFloat16's rounding, written
/// branch-free so loops calling it vectorise.
inline uint16_t float_to_bf16(float x) {
  const uint32_t bits = __builtin_bit_cast(uint32_t, x);
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return x != x ? static_cast<uint16_t>(0x7FC0) : static_cast<uint16_t>(rounded);
}

/// Element loads and stores for loops templated on the storage type (float, or uint16_t
/// holding bf16): fp32 math either way, rounded once on store.
inline float load(float x) {
  return x;
}
inline float load(uint16_t x) {
  return bf16_to_float(x);
}
inline void store(float* p, float x) {
  *p = x;
}
inline void store(uint16_t* p, float x) {
  *p = float_to_bf16(x);
}

/// Row reductions shared by several loops (cpu_rows.cpp): the maximum and the sum of squares
/// of n values, fp32 or bf16 bits widened in registers, in fp32 lanes.
float row_max(const float* x, int64_t n);
float row_max(const uint16_t* x, int64_t n);
float row_sum_of_squares(const float* x, int64_t n);
float row_sum_of_squares(const uint16_t* x, int64_t n);

/// The storage type of a CPU loop's fp32 or bf16 tensor data.
template <typename T>
T* data_of(const at::Tensor& t) {
  if constexpr (std::is_same_v<T, float>)
    return t.data_ptr<float>();
  else
    return reinterpret_cast<T*>(t.data_ptr<at::BFloat16>());
}

}  // namespace dus::kernels::cpu
