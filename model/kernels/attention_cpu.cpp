// Causal attention on the CPU (fp32, or bf16 through MKL's bf16 products), forward and
// backward, with grouped-query heads.
//
// Why not at::scaled_dot_product_attention: on training shapes (d = 64, T = 512) its CPU flash
// kernel runs far below the matmul rate, and takes a larger share of the step than of its FLOPs
// (README, "Speed on CPU", has the comparison). Here each (batch, head) is cut into
// blocks of kRows query rows; a block's scores against the keys it can see (causal: keys up to
// its last row, so the work is (n + 1) / 2n of the full square for n blocks) are one BLAS call,
// the softmax runs over those rows while they are in cache, and P.V is a second BLAS call.
// The log-sum-exp per row is saved; the backward recomputes P from it (as flash attention
// does) and needs five BLAS calls per block:
//   S = scale Q K^T;  P = exp(S - lse);  dV += P^T dO;  dP = dO V^T;
//   dS = P (dP - rowsum(dO O));  dQ = scale dS K;  dK += scale dS^T Q.
// The backward runs one work item per (batch, kv head) so the query heads sharing a kv head
// accumulate dK and dV without races.
//
// The BLAS is the one inside LibTorch, reached through the standard Fortran symbol sgemm_
// (MKL in the x86-64 wheels, OpenBLAS in others): declared weak, so a LibTorch without it
// still links and attention_blas_available() reports false (the model then keeps SDPA). bf16
// inputs use MKL's cblas_gemm_bf16bf16f32 (AMX where present), which beats widening them to
// fp32 for the same loops; against fp64, with the self-test's metric, the bf16 results are no
// further off than LibTorch's bf16 flash kernel on the same shapes.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/kernels/cpu_launch.h"
#include "model/kernels/cpu_vector.h"

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc) __attribute__((weak));
// MKL only: bf16 products with fp32 results (AMX or AVX512-BF16 where the CPU has them).
void cblas_gemm_bf16bf16f32(int layout, int transa, int transb, int m, int n, int k, float alpha,
                            const uint16_t* a, int lda, const uint16_t* b, int ldb, float beta,
                            float* c, int ldc) __attribute__((weak));
// MKL only (the C name; lower-case mkl_set_num_threads_local is the Fortran one, by pointer):
// the BLAS threads of the calling thread, returning the previous value (0 = the global one).
int MKL_Set_Num_Threads_Local(int n) __attribute__((weak));
}

namespace dus::kernels::cpu {
namespace {

// Query rows per block: 64 keeps the causal waste small ((n + 1) / 2n: 56% of the square at
// T = 512) while the BLAS calls stay large enough; of 32, 64, 128 and 256 rows it was the
// fastest forward + backward on training shapes (T = 512, d = 64), 128 and 256 clearly slower.
constexpr int64_t kRows = 64;

// Row-major C (M x N, row stride ldc) = alpha op(A) op(B) + beta C, where op(A) is M x K (A is
// stored K x M when trans_a) and op(B) is K x N. Column-major BLAS computes C^T = op(B)^T op(A)^T.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
  const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
  const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
  sgemm_(&tb, &ta, &m, &n, &k, &alpha, B, &la, A, &lb, &beta, C, &lc);
}

// The same with bf16 A and B (fp32 C): MKL's row-major CBLAS call.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C,
          int64_t ldc) {
  constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
  cblas_gemm_bf16bf16f32(kRowMajor, trans_a ? kTrans : kNoTrans, trans_b ? kTrans : kNoTrans,
                         static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
                         static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
                         static_cast<int>(ldc));
}

// Inside at::parallel_for each thread calls the BLAS on its own block: one BLAS thread each.
struct OneBlasThread {
  int previous = 0;
  OneBlasThread() {
    if (MKL_Set_Num_Threads_Local) previous = MKL_Set_Num_Threads_Local(1);
  }
  ~OneBlasThread() {
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(previous);
  }
};

// x <- exp(x - shift) over n entries; returns their sum.
DUS_CPU_CLONES float exp_in_place(float* x, float shift, int64_t n) {
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    const float e = exp_approx(x[j] - shift);
    x[j] = e;
    sum += e;
  }
  return sum;
}

DUS_CPU_CLONES void scale_in_place(float* x, float s, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) x[j] *= s;
}

template <typename T>
DUS_CPU_INLINE float dot_body(const T* a, const float* b, int64_t n) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) acc += load(a[j]) * b[j];
  return acc;
}
DUS_CPU_CLONES float dot(const float* a, const float* b, int64_t n) {
  return dot_body(a, b, n);
}
DUS_CPU_CLONES float dot(const uint16_t* a, const float* b, int64_t n) {
  return dot_body(a, b, n);
}

// bf16 copy of n floats (the probabilities or their gradient, for the next bf16 products).
DUS_CPU_CLONES void round_to_bf16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = float_to_bf16(x[j]);
}

// The operand of a product: the fp32 block itself, or its bf16 copy when the inputs are bf16.
const float* operand(const float* x, std::vector<uint16_t>&, int64_t, float) {
  return x;
}
const uint16_t* operand(const float* x, std::vector<uint16_t>& scratch, int64_t n, uint16_t) {
  round_to_bf16(x, scratch.data(), n);
  return scratch.data();
}

// dP <- P (dP - delta), the softmax backward of one row.
DUS_CPU_CLONES void softmax_grad_in_place(float* dp, const float* p, float delta, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dp[j] = p[j] * (dp[j] - delta);
}

// A (B, heads, T, d) tensor of T (float, or uint16_t holding bf16) as a base pointer and its
// strides (the last one is 1).
template <typename T>
struct Heads {
  T* data;
  int64_t sb, sh, st;
  explicit Heads(const at::Tensor& t)
      : data(data_of<T>(t)), sb(t.stride(0)), sh(t.stride(1)), st(t.stride(2)) {}
  T* at(int64_t b, int64_t h) const { return data + b * sb + h * sh; }
};

// (B, heads, T, d) fp32 view of a new (B, T, heads, d) buffer: the layout the projections
// produce and read, so the model's transpose + reshape around attention are free.
at::Tensor new_heads(const at::Tensor& like, int64_t heads, bool zero) {
  const auto o = like.options().dtype(at::kFloat);
  const int64_t B = like.size(0), T = like.size(2), d = like.size(3);
  auto t = zero ? at::zeros({B, T, heads, d}, o) : at::empty({B, T, heads, d}, o);
  return t.transpose(1, 2);
}

template <typename In>
std::tuple<at::Tensor, at::Tensor> forward_as(const at::Tensor& q, const at::Tensor& k,
                                              const at::Tensor& v, double scale) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), d = q.size(3);
  const int64_t group = H / k.size(1);
  const auto f32 = q.options().dtype(at::kFloat);
  auto out = new_heads(q, H, /*zero=*/false);
  auto lse = at::empty({B, H, T}, f32);
  const Heads<In> Q(q), K(k), V(v);
  const Heads<float> O(out);
  float* L = lse.data_ptr<float>();
  const float s = static_cast<float>(scale);
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    OneBlasThread one;
    std::vector<float> S(kRows * T), inv_sum(kRows);
    std::vector<uint16_t> scratch(std::is_same_v<In, float> ? 0 : kRows * T);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const In *q_h = Q.at(b, h), *k_h = K.at(b, h / group), *v_h = V.at(b, h / group);
      float* o_h = O.at(b, h);
      float* lse_h = L + bh * T;
      for (int64_t r0 = 0; r0 < T; r0 += kRows) {
        const int64_t rows = std::min(kRows, T - r0), n = r0 + rows;  // keys 0..n-1 visible
        gemm(false, true, rows, n, d, s, q_h + r0 * Q.st, Q.st, k_h, K.st, 0.0f, S.data(), n);
        for (int64_t r = 0; r < rows; ++r) {
          float* row = S.data() + r * n;
          const int64_t seen = r0 + r + 1;  // causal: keys 0..r0+r
          const float m = row_max(row, seen);
          const float sum = exp_in_place(row, m, seen);
          std::fill(row + seen, row + n, 0.0f);
          lse_h[r0 + r] = m + std::log(sum);
          inv_sum[r] = 1.0f / sum;
        }
        gemm(false, false, rows, d, n, 1.0f, operand(S.data(), scratch, rows * n, In{}), n, v_h,
             V.st, 0.0f, o_h + r0 * O.st, O.st);
        for (int64_t r = 0; r < rows; ++r) scale_in_place(o_h + (r0 + r) * O.st, inv_sum[r], d);
      }
    }
  });
  return {out, lse};
}

template <typename In>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_as(const at::Tensor& dout,
                                                           const at::Tensor& q, const at::Tensor& k,
                                                           const at::Tensor& v,
                                                           const at::Tensor& out,
                                                           const at::Tensor& lse, double scale) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), d = q.size(3), Hkv = k.size(1);
  const int64_t group = H / Hkv;
  auto dq = new_heads(q, H, /*zero=*/false);
  auto dk = new_heads(k, Hkv, /*zero=*/true), dv = new_heads(v, Hkv, /*zero=*/true);
  const Heads<In> Q(q), K(k), V(v), dO(dout);
  const Heads<float> O(out), dQ(dq), dK(dk), dV(dv);
  const float* L = lse.data_ptr<float>();
  const float s = static_cast<float>(scale);
  at::parallel_for(0, B * Hkv, 1, [&](int64_t begin, int64_t end) {
    OneBlasThread one;
    std::vector<float> P(kRows * T), dP(kRows * T), delta(kRows);
    std::vector<uint16_t> scratch(std::is_same_v<In, float> ? 0 : kRows * T);
    for (int64_t bg = begin; bg < end; ++bg) {
      const int64_t b = bg / Hkv, g = bg % Hkv;
      const In *k_g = K.at(b, g), *v_g = V.at(b, g);
      float *dk_g = dK.at(b, g), *dv_g = dV.at(b, g);
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        const In *q_h = Q.at(b, h), *do_h = dO.at(b, h);
        const float* o_h = O.at(b, h);
        float* dq_h = dQ.at(b, h);
        const float* lse_h = L + (b * H + h) * T;
        for (int64_t r0 = 0; r0 < T; r0 += kRows) {
          const int64_t rows = std::min(kRows, T - r0), n = r0 + rows;
          const In *q_blk = q_h + r0 * Q.st, *do_blk = do_h + r0 * dO.st;
          gemm(false, true, rows, n, d, s, q_blk, Q.st, k_g, K.st, 0.0f, P.data(), n);
          for (int64_t r = 0; r < rows; ++r) {
            float* row = P.data() + r * n;
            const int64_t seen = r0 + r + 1;
            exp_in_place(row, lse_h[r0 + r], seen);
            std::fill(row + seen, row + n, 0.0f);
            delta[r] = dot(do_blk + r * dO.st, o_h + (r0 + r) * O.st, d);
          }
          gemm(true, false, n, d, rows, 1.0f, operand(P.data(), scratch, rows * n, In{}), n, do_blk,
               dO.st, 1.0f, dv_g, dV.st);
          gemm(false, true, rows, n, d, 1.0f, do_blk, dO.st, v_g, V.st, 0.0f, dP.data(), n);
          for (int64_t r = 0; r < rows; ++r)
            softmax_grad_in_place(dP.data() + r * n, P.data() + r * n, delta[r], n);
          const auto* dS = operand(dP.data(), scratch, rows * n, In{});
          gemm(false, false, rows, d, n, s, dS, n, k_g, K.st, 0.0f, dq_h + r0 * dQ.st, dQ.st);
          gemm(true, false, n, d, rows, s, dS, n, q_blk, Q.st, 1.0f, dk_g, dK.st);
        }
      }
    }
  });
  return {dq, dk, dv};
}

}  // namespace

bool attention_blas_available() {
  return sgemm_ != nullptr;
}
bool attention_bf16_blas_available() {
  return cblas_gemm_bf16bf16f32 != nullptr;
}

std::tuple<at::Tensor, at::Tensor> attention_forward(const at::Tensor& q, const at::Tensor& k,
                                                     const at::Tensor& v, double scale) {
  return q.scalar_type() == at::kBFloat16 ? forward_as<uint16_t>(q, k, v, scale)
                                          : forward_as<float>(q, k, v, scale);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_backward(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, const at::Tensor& lse, double scale) {
  return q.scalar_type() == at::kBFloat16 ? backward_as<uint16_t>(dout, q, k, v, out, lse, scale)
                                          : backward_as<float>(dout, q, k, v, out, lse, scale);
}

}  // namespace dus::kernels::cpu
