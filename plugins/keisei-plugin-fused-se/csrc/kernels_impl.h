// The fused SE kernels. Included once per ISA by kernels_<isa>.cpp, which defines
// CPU_CAPABILITY (DEFAULT, AVX2, AVX512) and CPU_CAPABILITY_<ISA> first; the build gives
// each of those files its -m flags. Everything here lives in an anonymous namespace
// inside keisei_fused_se::<ISA> (CPU_CAPABILITY expands to the ISA); each kernels_<isa>.cpp
// exports only its kernel_table().
//
// Per sample b (the dispatcher runs ranges of samples in parallel):
//   forward:  pass 1 pools y[b] (accumulate type), the tiny MLP gives gate and shift,
//             pass 2 writes relu(y * gate + shift + residual) while y[b] is still in cache.
//   backward: pass 1 reads grad, out, y once: grad_residual = grad * (out > 0) and the
//             per-channel sums of go*y, go and y; the MLP is recomputed and back-propagated
//             per sample; pass 2 writes grad_y = go * gate + d_pooled / HW.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>

#include "kernels.h"

namespace keisei_fused_se {
namespace CPU_CAPABILITY {
// Internal linkage: each ISA's translation unit keeps its own copies, so the linker can
// never hand an AVX512-compiled helper to the default-ISA code (and calls stay direct).
namespace {

using at::vec::Vectorized;

template <typename scalar_t>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};
template <typename scalar_t>
using acc_t = typename AccType<scalar_t>::type;

// Full-width loads and stores between scalar_t memory and accumulate-type vectors.
// Tails (fewer than a vector) are handled with scalar code by the callers.
template <typename scalar_t>
struct VecIO {
  using Vec = Vectorized<scalar_t>;
  static Vec load(const scalar_t* p) { return Vec::loadu(p); }
  static void store(scalar_t* p, const Vec& v) { v.store(p); }
};

template <>
struct VecIO<c10::BFloat16> {
  using Vec = Vectorized<float>;
  static Vec load(const c10::BFloat16* p) {
    Vec out;
    at::vec::load_fp32_from_bf16(p, out);
    return out;
  }
  static void store(c10::BFloat16* p, const Vec& v) {
    at::vec::convert_float_bfloat16(v, v).store(p, Vec::size());
  }
};

template <>
struct VecIO<c10::Half> {
  using Vec = Vectorized<float>;
  static Vec load(const c10::Half* p) {
    Vec out;
    at::vec::load_fp32_from_fp16(p, out);
    return out;
  }
  static void store(c10::Half* p, const Vec& v) {
    at::vec::convert_float_half(v, v).store(p, Vec::size());
  }
};

template <typename T>
inline T relu_scalar(T v) {
  // NaN propagates like torch.relu
  return v > T(0) || v != v ? v : T(0);
}

template <typename T>
inline T sigmoid_scalar(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

template <typename T>
inline T hsum(const Vectorized<T>& v) {
  return at::vec::vec_reduce_all<T>([](Vectorized<T>& a, Vectorized<T>& b) { return a + b; }, v);
}

template <typename T>
inline void fill(T* dst, T value, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = value;
  }
}

// pooled[c] = mean over the board of y[c] (per-sample block of C*HW elements).
template <typename scalar_t>
inline void pool_sample(const scalar_t* y, bool channels_last, int64_t C, int64_t HW,
                        acc_t<scalar_t>* pooled) {
  using T = acc_t<scalar_t>;
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t V = Vec::size();
  const T inv_hw = T(1) / T(HW);
  if (!channels_last) {
    for (int64_t c = 0; c < C; ++c) {
      const scalar_t* row = y + c * HW;
      Vec acc(T(0));
      int64_t i = 0;
      for (; i + V <= HW; i += V) {
        acc = acc + IO::load(row + i);
      }
      T total = hsum<T>(acc);
      for (; i < HW; ++i) {
        total += T(row[i]);
      }
      pooled[c] = total * inv_hw;
    }
    return;
  }
  fill<T>(pooled, T(0), C);
  for (int64_t p = 0; p < HW; ++p) {
    const scalar_t* row = y + p * C;
    int64_t c = 0;
    for (; c + V <= C; c += V) {
      (Vec::loadu(pooled + c) + IO::load(row + c)).store(pooled + c);
    }
    for (; c < C; ++c) {
      pooled[c] += T(row[c]);
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    pooled[c] *= inv_hw;
  }
}

// v[i] = 1 / (1 + exp(-v[i]))
template <typename T>
inline void sigmoid_inplace(T* v, int64_t n) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  const Vec one(T(1));
  int64_t i = 0;
  for (; i + V <= n; i += V) {
    (one / (one + Vec::loadu(v + i).neg().exp())).store(v + i);
  }
  for (; i < n; ++i) {
    v[i] = sigmoid_scalar<T>(v[i]);
  }
}

// dst[i] = bias[i] + sum_r coef[r] * rows[r * stride + i] for i < n (bias may be null:
// zero). Four vectors of dst stay in registers while the rows stream past, so each row
// costs one load and one FMA per vector; rows with a zero coefficient are skipped when
// skip_zero (the ReLU zeroes about half the hidden units).
template <typename T>
inline void combine_rows(T* dst, const T* bias, const T* rows, int64_t stride, const T* coef,
                         int64_t nrows, int64_t n, bool skip_zero) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  const auto start = [&](int64_t i) { return bias != nullptr ? Vec::loadu(bias + i) : Vec(T(0)); };
  int64_t i = 0;
  for (; i + 4 * V <= n; i += 4 * V) {
    Vec a0 = start(i);
    Vec a1 = start(i + V);
    Vec a2 = start(i + 2 * V);
    Vec a3 = start(i + 3 * V);
    for (int64_t r = 0; r < nrows; ++r) {
      const T k = coef[r];
      if (skip_zero && k == T(0)) {
        continue;
      }
      const Vec vk(k);
      const T* row = rows + r * stride + i;
      a0 = at::vec::fmadd(vk, Vec::loadu(row), a0);
      a1 = at::vec::fmadd(vk, Vec::loadu(row + V), a1);
      a2 = at::vec::fmadd(vk, Vec::loadu(row + 2 * V), a2);
      a3 = at::vec::fmadd(vk, Vec::loadu(row + 3 * V), a3);
    }
    a0.store(dst + i);
    a1.store(dst + i + V);
    a2.store(dst + i + 2 * V);
    a3.store(dst + i + 3 * V);
  }
  for (; i + V <= n; i += V) {
    Vec a0 = start(i);
    for (int64_t r = 0; r < nrows; ++r) {
      const T k = coef[r];
      if (skip_zero && k == T(0)) {
        continue;
      }
      a0 = at::vec::fmadd(Vec(k), Vec::loadu(rows + r * stride + i), a0);
    }
    a0.store(dst + i);
  }
  for (; i < n; ++i) {
    T a0 = bias != nullptr ? bias[i] : T(0);
    for (int64_t r = 0; r < nrows; ++r) {
      a0 += coef[r] * rows[r * stride + i];
    }
    dst[i] = a0;
  }
}

// dst[r] = bias[r] + dot(rows[r * stride .. r * stride + n), v) for r < nrows (bias may be
// null: zero). The weights keep the layout torch stores them in (one output per row), so
// no call pays for a transposed copy; two accumulators keep the FMAs independent.
template <typename T>
inline void dot_rows(T* dst, const T* bias, const T* rows, int64_t stride, const T* v, int64_t nrows,
                     int64_t n) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  for (int64_t r = 0; r < nrows; ++r) {
    const T* row = rows + r * stride;
    Vec a0(T(0));
    Vec a1(T(0));
    int64_t i = 0;
    for (; i + 2 * V <= n; i += 2 * V) {
      a0 = at::vec::fmadd(Vec::loadu(row + i), Vec::loadu(v + i), a0);
      a1 = at::vec::fmadd(Vec::loadu(row + i + V), Vec::loadu(v + i + V), a1);
    }
    for (; i + V <= n; i += V) {
      a0 = at::vec::fmadd(Vec::loadu(row + i), Vec::loadu(v + i), a0);
    }
    T total = hsum<T>(a0 + a1);
    for (; i < n; ++i) {
      total += row[i] * v[i];
    }
    dst[r] = (bias != nullptr ? bias[r] : T(0)) + total;
  }
}

// hidden = relu(fc1 pooled + b1); [gate, shift] = fc2 hidden + b2; gate = sigmoid(gate);
// shift = 0 without FiLM. Weights as torch stores them: w1 [H, C], w2 [E, H].
template <typename T>
inline void excite_sample(const T* w1, const T* b1, const T* w2, const T* b2, const T* pooled,
                          int64_t C, int64_t H, bool film, T* hidden, T* gate, T* shift) {
  dot_rows<T>(hidden, b1, w1, C, pooled, H, C);
  for (int64_t j = 0; j < H; ++j) {
    hidden[j] = relu_scalar<T>(hidden[j]);
  }
  dot_rows<T>(gate, b2, w2, H, hidden, C, H);
  if (film) {
    dot_rows<T>(shift, b2 + C, w2 + C * H, H, hidden, C, H);
  } else {
    fill<T>(shift, T(0), C);
  }
  sigmoid_inplace<T>(gate, C);
}

// out = relu(y * gate[c] + shift[c] + x)
template <typename scalar_t>
inline void apply_sample(const scalar_t* y, const scalar_t* x, scalar_t* out, bool channels_last,
                         int64_t C, int64_t HW, const acc_t<scalar_t>* gate,
                         const acc_t<scalar_t>* shift) {
  using T = acc_t<scalar_t>;
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t V = Vec::size();
  const Vec zero(T(0));
  if (!channels_last) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t base = c * HW;
      const T g = gate[c];
      const T s = shift[c];
      const Vec vg(g);
      const Vec vs(s);
      int64_t i = 0;
      for (; i + V <= HW; i += V) {
        Vec z = at::vec::fmadd(IO::load(y + base + i), vg, IO::load(x + base + i) + vs);
        IO::store(out + base + i, at::vec::maximum(z, zero));
      }
      for (; i < HW; ++i) {
        out[base + i] = scalar_t(relu_scalar<T>(T(y[base + i]) * g + (T(x[base + i]) + s)));
      }
    }
    return;
  }
  for (int64_t p = 0; p < HW; ++p) {
    const int64_t base = p * C;
    int64_t c = 0;
    for (; c + V <= C; c += V) {
      Vec z = at::vec::fmadd(IO::load(y + base + c), Vec::loadu(gate + c),
                             IO::load(x + base + c) + Vec::loadu(shift + c));
      IO::store(out + base + c, at::vec::maximum(z, zero));
    }
    for (; c < C; ++c) {
      out[base + c] =
          scalar_t(relu_scalar<T>(T(y[base + c]) * gate[c] + (T(x[base + c]) + shift[c])));
    }
  }
}

template <typename scalar_t>
void forward_range(const ForwardArgs& a, int64_t begin, int64_t end) {
  using T = acc_t<scalar_t>;
  const int64_t C = a.channels;
  const int64_t HW = a.hw;
  const int64_t H = a.hidden;
  const int64_t sample = C * HW;
  const auto* y = static_cast<const scalar_t*>(a.y);
  const auto* x = static_cast<const scalar_t*>(a.residual);
  auto* out = static_cast<scalar_t*>(a.out);
  const auto* w1 = static_cast<const T*>(a.w1);
  const auto* b1 = static_cast<const T*>(a.b1);
  const auto* w2 = static_cast<const T*>(a.w2);
  const auto* b2 = static_cast<const T*>(a.b2);
  for (int64_t b = begin; b < end; ++b) {
    T* pooled = static_cast<T*>(a.scratch) + b * a.scratch_stride;
    T* gate = pooled + C;
    T* shift = gate + C;
    T* hidden = shift + C;
    const int64_t off = b * sample;
    pool_sample<scalar_t>(y + off, a.channels_last, C, HW, pooled);
    excite_sample<T>(w1, b1, w2, b2, pooled, C, H, a.film, hidden, gate, shift);
    apply_sample<scalar_t>(y + off, x + off, out + off, a.channels_last, C, HW, gate, shift);
  }
}

// Pass 1 of the backward pass for one sample: gx = grad * (out > 0) and the per-channel
// sums sum(gx * y), sum(gx), sum(y) (the last gives the pooled input back).
template <typename scalar_t>
inline void backward_reduce_sample(const scalar_t* grad, const scalar_t* y, const scalar_t* out,
                                   scalar_t* gx, bool channels_last, int64_t C, int64_t HW,
                                   acc_t<scalar_t>* sum_gy, acc_t<scalar_t>* sum_g,
                                   acc_t<scalar_t>* sum_y) {
  using T = acc_t<scalar_t>;
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t V = Vec::size();
  const Vec zero(T(0));
  if (!channels_last) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t base = c * HW;
      Vec agy(T(0));
      Vec ag(T(0));
      Vec ay(T(0));
      int64_t i = 0;
      for (; i + V <= HW; i += V) {
        const Vec vy = IO::load(y + base + i);
        const Vec go = Vec::blendv(zero, IO::load(grad + base + i),
                                   IO::load(out + base + i) > zero);
        IO::store(gx + base + i, go);
        agy = at::vec::fmadd(go, vy, agy);
        ag = ag + go;
        ay = ay + vy;
      }
      T sgy = hsum<T>(agy);
      T sg = hsum<T>(ag);
      T sy = hsum<T>(ay);
      for (; i < HW; ++i) {
        const T vy = T(y[base + i]);
        const T go = T(out[base + i]) > T(0) ? T(grad[base + i]) : T(0);
        gx[base + i] = scalar_t(go);
        sgy += go * vy;
        sg += go;
        sy += vy;
      }
      sum_gy[c] = sgy;
      sum_g[c] = sg;
      sum_y[c] = sy;
    }
    return;
  }
  fill<T>(sum_gy, T(0), C);
  fill<T>(sum_g, T(0), C);
  fill<T>(sum_y, T(0), C);
  for (int64_t p = 0; p < HW; ++p) {
    const int64_t base = p * C;
    int64_t c = 0;
    for (; c + V <= C; c += V) {
      const Vec vy = IO::load(y + base + c);
      const Vec go =
          Vec::blendv(zero, IO::load(grad + base + c), IO::load(out + base + c) > zero);
      IO::store(gx + base + c, go);
      at::vec::fmadd(go, vy, Vec::loadu(sum_gy + c)).store(sum_gy + c);
      (Vec::loadu(sum_g + c) + go).store(sum_g + c);
      (Vec::loadu(sum_y + c) + vy).store(sum_y + c);
    }
    for (; c < C; ++c) {
      const T vy = T(y[base + c]);
      const T go = T(out[base + c]) > T(0) ? T(grad[base + c]) : T(0);
      gx[base + c] = scalar_t(go);
      sum_gy[c] += go * vy;
      sum_g[c] += go;
      sum_y[c] += vy;
    }
  }
}

// Pass 2: gy = gx * gate[c] + coef[c], coef = d_pooled / HW.
template <typename scalar_t>
inline void backward_apply_sample(const scalar_t* gx, scalar_t* gy, bool channels_last, int64_t C,
                                  int64_t HW, const acc_t<scalar_t>* gate,
                                  const acc_t<scalar_t>* coef) {
  using T = acc_t<scalar_t>;
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t V = Vec::size();
  if (!channels_last) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t base = c * HW;
      const Vec vg(gate[c]);
      const Vec vc(coef[c]);
      int64_t i = 0;
      for (; i + V <= HW; i += V) {
        IO::store(gy + base + i, at::vec::fmadd(IO::load(gx + base + i), vg, vc));
      }
      for (; i < HW; ++i) {
        gy[base + i] = scalar_t(T(gx[base + i]) * gate[c] + coef[c]);
      }
    }
    return;
  }
  for (int64_t p = 0; p < HW; ++p) {
    const int64_t base = p * C;
    int64_t c = 0;
    for (; c + V <= C; c += V) {
      IO::store(gy + base + c,
                at::vec::fmadd(IO::load(gx + base + c), Vec::loadu(gate + c), Vec::loadu(coef + c)));
    }
    for (; c < C; ++c) {
      gy[base + c] = scalar_t(T(gx[base + c]) * gate[c] + coef[c]);
    }
  }
}

template <typename scalar_t>
void backward_range(const BackwardArgs& a, int64_t begin, int64_t end) {
  using T = acc_t<scalar_t>;
  const int64_t C = a.channels;
  const int64_t HW = a.hw;
  const int64_t H = a.hidden;
  const int64_t E = a.film ? 2 * C : C;
  const int64_t sample = C * HW;
  const auto* grad = static_cast<const scalar_t*>(a.grad);
  const auto* y = static_cast<const scalar_t*>(a.y);
  const auto* out = static_cast<const scalar_t*>(a.out);
  auto* gy = static_cast<scalar_t*>(a.grad_y);
  auto* gx = static_cast<scalar_t*>(a.grad_residual);
  const auto* w1 = static_cast<const T*>(a.w1);
  const auto* b1 = static_cast<const T*>(a.b1);
  const auto* w2 = static_cast<const T*>(a.w2);
  const auto* b2 = static_cast<const T*>(a.b2);
  const T inv_hw = T(1) / T(HW);
  for (int64_t b = begin; b < end; ++b) {
    T* sum_gy = static_cast<T*>(a.scratch) + b * a.scratch_stride;
    T* sum_g = sum_gy + C;
    T* gate = sum_g + C;
    T* shift = gate + C;  // recomputed by excite_sample, unused by the gradient
    T* coef = shift + C;
    T* pooled = static_cast<T*>(a.pooled) + b * C;
    T* hidden = static_cast<T*>(a.hidden_act) + b * H;
    T* d_hidden = static_cast<T*>(a.d_hidden) + b * H;
    T* d_excite = static_cast<T*>(a.d_excite) + b * E;
    const int64_t off = b * sample;

    backward_reduce_sample<scalar_t>(grad + off, y + off, out + off, gx + off, a.channels_last, C,
                                     HW, sum_gy, sum_g, pooled);
    for (int64_t c = 0; c < C; ++c) {
      pooled[c] *= inv_hw;
    }
    excite_sample<T>(w1, b1, w2, b2, pooled, C, H, a.film, hidden, gate, shift);

    // d(fc2 output): gate logits get sum(go * y) * sigmoid'; the FiLM shift gets sum(go).
    for (int64_t k = 0; k < C; ++k) {
      d_excite[k] = sum_gy[k] * gate[k] * (T(1) - gate[k]);
    }
    if (a.film) {
      for (int64_t k = 0; k < C; ++k) {
        d_excite[C + k] = sum_g[k];
      }
    }
    // d(fc1 output) = (w2^T d_excite) * relu'(fc1 output)
    combine_rows<T>(d_hidden, nullptr, w2, H, d_excite, E, H, false);
    for (int64_t j = 0; j < H; ++j) {
      if (!(hidden[j] > T(0))) {
        d_hidden[j] = T(0);
      }
    }
    // d(pooled) = w1^T d_hidden, spread evenly over the board
    combine_rows<T>(coef, nullptr, w1, C, d_hidden, H, C, true);
    for (int64_t c = 0; c < C; ++c) {
      coef[c] *= inv_hw;
    }
    backward_apply_sample<scalar_t>(gx + off, gy + off, a.channels_last, C, HW, gate, coef);
  }
}

inline void forward_dispatch(const ForwardArgs& a, int64_t begin, int64_t end) {
  switch (a.kind) {
    case ScalarKind::Float:
      forward_range<float>(a, begin, end);
      break;
    case ScalarKind::Double:
      forward_range<double>(a, begin, end);
      break;
    case ScalarKind::BFloat16:
      forward_range<c10::BFloat16>(a, begin, end);
      break;
    case ScalarKind::Half:
      forward_range<c10::Half>(a, begin, end);
      break;
  }
}

inline void backward_dispatch(const BackwardArgs& a, int64_t begin, int64_t end) {
  switch (a.kind) {
    case ScalarKind::Float:
      backward_range<float>(a, begin, end);
      break;
    case ScalarKind::Double:
      backward_range<double>(a, begin, end);
      break;
    case ScalarKind::BFloat16:
      backward_range<c10::BFloat16>(a, begin, end);
      break;
    case ScalarKind::Half:
      backward_range<c10::Half>(a, begin, end);
      break;
  }
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace keisei_fused_se
