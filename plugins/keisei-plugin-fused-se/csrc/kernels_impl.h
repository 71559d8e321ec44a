// The fused SE kernels. Included once per ISA by kernels_<isa>.cpp, which defines
// CPU_CAPABILITY (DEFAULT, AVX2, AVX512) and CPU_CAPABILITY_<ISA> first; the build gives
// each of those files its -m flags. Everything here lives in an anonymous namespace
// inside keisei_fused_se::<ISA> (CPU_CAPABILITY expands to the ISA); each kernels_<isa>.cpp
// exports only its kernel_table().
//
// Per group of up to kGroup samples (the dispatcher runs ranges of samples in parallel):
//   forward:  pass 1 pools each y[b] (accumulate type), the tiny MLP gives gate and shift
//             for the group, pass 2 writes relu(y * gate + shift + residual) while y[b] is
//             still in L2.
//   backward: pass 1 reads grad, y and ReLU's mask once for the per-channel sums of go*y,
//             go and y (go = grad where the output is positive, else 0); the MLP is
//             recomputed and back-propagated for the group; pass 2 reads grad and the
//             mask again (from L2) and writes grad_residual = go and
//             grad_y = go * gate + d_pooled / HW.
//   The mask is read from the saved output (OutputMask) or, when the forward was asked
//   for one, from a bit per element (BitMask): 1/32 of the float32 output's bytes, so the
//   backward reads about four activations' worth instead of five.
//   Float32 outputs of 4 MiB and more are written with streaming stores (stream_output).
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

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

// Samples whose MLP runs together (forward with transposed weights, and the backward's
// back-propagation through the MLP). Four samples x four vectors of accumulators are 16
// of the 32 AVX512 registers.
constexpr int64_t kGroup = 4;

// For g < G and i < n: dst[g * dst_stride + i] =
//   bias[i] + sum_r coef[g * coef_stride + r] * rows[r * row_stride + i]   (bias may be null).
// G samples x four vectors of dst stay in registers while the rows stream past, so each
// row is loaded once for the whole group (combine_rows loads it once per sample).
template <typename T, int G>
inline void combine_rows_group(T* dst, int64_t dst_stride, const T* bias, const T* rows,
                               int64_t row_stride, const T* coef, int64_t coef_stride,
                               int64_t nrows, int64_t n) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  const auto start = [&](int64_t i) { return bias != nullptr ? Vec::loadu(bias + i) : Vec(T(0)); };
  int64_t i = 0;
  for (; i + 4 * V <= n; i += 4 * V) {
    Vec acc[G][4];
    for (int g = 0; g < G; ++g) {
      for (int k = 0; k < 4; ++k) {
        acc[g][k] = start(i + k * V);
      }
    }
    for (int64_t r = 0; r < nrows; ++r) {
      const T* row = rows + r * row_stride + i;
      const Vec w0 = Vec::loadu(row);
      const Vec w1 = Vec::loadu(row + V);
      const Vec w2 = Vec::loadu(row + 2 * V);
      const Vec w3 = Vec::loadu(row + 3 * V);
      for (int g = 0; g < G; ++g) {
        const Vec k(coef[g * coef_stride + r]);
        acc[g][0] = at::vec::fmadd(k, w0, acc[g][0]);
        acc[g][1] = at::vec::fmadd(k, w1, acc[g][1]);
        acc[g][2] = at::vec::fmadd(k, w2, acc[g][2]);
        acc[g][3] = at::vec::fmadd(k, w3, acc[g][3]);
      }
    }
    for (int g = 0; g < G; ++g) {
      for (int k = 0; k < 4; ++k) {
        acc[g][k].store(dst + g * dst_stride + i + k * V);
      }
    }
  }
  for (; i + V <= n; i += V) {
    Vec acc[G];
    for (int g = 0; g < G; ++g) {
      acc[g] = start(i);
    }
    for (int64_t r = 0; r < nrows; ++r) {
      const Vec w = Vec::loadu(rows + r * row_stride + i);
      for (int g = 0; g < G; ++g) {
        acc[g] = at::vec::fmadd(Vec(coef[g * coef_stride + r]), w, acc[g]);
      }
    }
    for (int g = 0; g < G; ++g) {
      acc[g].store(dst + g * dst_stride + i);
    }
  }
  for (; i < n; ++i) {
    for (int g = 0; g < G; ++g) {
      T total = bias != nullptr ? bias[i] : T(0);
      for (int64_t r = 0; r < nrows; ++r) {
        total += coef[g * coef_stride + r] * rows[r * row_stride + i];
      }
      dst[g * dst_stride + i] = total;
    }
  }
}

// combine_rows_group for 1 <= count <= kGroup samples.
template <typename T>
inline void combine_rows_samples(int64_t count, T* dst, int64_t dst_stride, const T* bias,
                                 const T* rows, int64_t row_stride, const T* coef,
                                 int64_t coef_stride, int64_t nrows, int64_t n) {
  static_assert(kGroup == 4, "one case per group size");
  switch (count) {
    case 4:
      combine_rows_group<T, 4>(dst, dst_stride, bias, rows, row_stride, coef, coef_stride, nrows, n);
      break;
    case 3:
      combine_rows_group<T, 3>(dst, dst_stride, bias, rows, row_stride, coef, coef_stride, nrows, n);
      break;
    case 2:
      combine_rows_group<T, 2>(dst, dst_stride, bias, rows, row_stride, coef, coef_stride, nrows, n);
      break;
    default:
      combine_rows_group<T, 1>(dst, dst_stride, bias, rows, row_stride, coef, coef_stride, nrows, n);
      break;
  }
}

// Where a group's per-sample MLP vectors live: sample g's vector starts at
// base + g * stride.
template <typename T>
struct Strided {
  T* base;
  int64_t stride;
  T* at(int64_t g) const { return base + g * stride; }
};

// The MLP of excite_sample for `count` consecutive samples. With transposed weights
// (w1t [C, H], w2t [H, E]) it runs as grouped row combinations; without, one sample at a
// time with dot products over torch's layout.
template <typename T>
inline void excite_samples(int64_t count, const T* w1, const T* w1t, const T* b1, const T* w2,
                           const T* w2t, const T* b2, int64_t C, int64_t H, bool film,
                           Strided<T> pooled, Strided<T> hidden, Strided<T> gate,
                           Strided<T> shift) {
  if (w1t == nullptr || w2t == nullptr) {
    for (int64_t g = 0; g < count; ++g) {
      excite_sample<T>(w1, b1, w2, b2, pooled.at(g), C, H, film, hidden.at(g), gate.at(g),
                       shift.at(g));
    }
    return;
  }
  const int64_t E = film ? 2 * C : C;
  combine_rows_samples<T>(count, hidden.base, hidden.stride, b1, w1t, H, pooled.base,
                          pooled.stride, C, H);
  for (int64_t g = 0; g < count; ++g) {
    T* h = hidden.at(g);
    for (int64_t j = 0; j < H; ++j) {
      h[j] = relu_scalar<T>(h[j]);
    }
  }
  combine_rows_samples<T>(count, gate.base, gate.stride, b2, w2t, E, hidden.base, hidden.stride,
                          H, C);
  if (film) {
    combine_rows_samples<T>(count, shift.base, shift.stride, b2 + C, w2t + C, E, hidden.base,
                            hidden.stride, H, C);
  }
  for (int64_t g = 0; g < count; ++g) {
    if (!film) {
      fill<T>(shift.at(g), T(0), C);
    }
    sigmoid_inplace<T>(gate.at(g), C);
  }
}

// ---- ReLU's mask as one bit per element -------------------------------------------------
// Bit k of a sample's mask (byte k / 8, bit k % 8) is set where element k of the output,
// as stored, is positive (so NaN and rounded-to-zero outputs pass no gradient, as with
// the output itself). Each sample's bits start at a byte boundary and are followed by
// padding (mask_bytes_per_sample in kernels.h), so the backward may read four bytes at
// any element's byte.

// Whether the vector helpers below have an intrinsic path for this element type: float
// lanes (float32, and bfloat16/float16 loaded as float) on AVX2/AVX512.
template <typename scalar_t>
constexpr bool kFloatLanes = !std::is_same_v<acc_t<scalar_t>, double>;

inline bool bit_at(const uint8_t* bits, int64_t k) { return (bits[k >> 3] >> (k & 7)) & 1; }

// Up to 16 bits starting at element k (any k).
inline uint32_t bits_from(const uint8_t* bits, int64_t k) {
  uint32_t word;
  std::memcpy(&word, bits + (k >> 3), sizeof(word));
  return word >> (k & 7);
}

// v where the lane's bit is set, 0 elsewhere (lane l <-> bit l of `lanes`).
template <typename T>
inline Vectorized<T> keep_lanes(uint32_t lanes, const Vectorized<T>& v) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    return _mm512_maskz_mov_ps(static_cast<__mmask16>(lanes), v);
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    const __m256i lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i set = _mm256_cmpeq_epi32(
        _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(lanes)), lane_bits), lane_bits);
    return _mm256_and_ps(_mm256_castsi256_ps(set), v);
  }
#endif
  constexpr int64_t V = Vectorized<T>::size();
  alignas(64) T buffer[V];
  v.store(buffer);
  for (int64_t l = 0; l < V; ++l) {
    if (!((lanes >> l) & 1)) {
      buffer[l] = T(0);
    }
  }
  return Vectorized<T>::loadu(buffer);
}

// Bit l set where lane l of v is positive (float lanes on AVX2/AVX512 only).
inline uint32_t positive_lanes(const Vectorized<float>& v) {
#if defined(CPU_CAPABILITY_AVX512)
  return _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
#elif defined(CPU_CAPABILITY_AVX2)
  return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ)));
#else
  alignas(64) float buffer[Vectorized<float>::size()];
  v.store(buffer);
  uint32_t lanes = 0;
  for (int64_t l = 0; l < Vectorized<float>::size(); ++l) {
    lanes |= uint32_t(buffer[l] > 0.0f) << l;
  }
  return lanes;
#endif
}

// Stores the bits of the vector at element j (j a multiple of the vector width, which
// is 8 or 16 floats on AVX2/AVX512: whole bytes; only the streaming and AVX paths call it).
inline void store_lane_bits(uint8_t* bits, int64_t j, uint32_t lanes) {
  constexpr int64_t V = Vectorized<float>::size();
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  static_assert(V % 8 == 0, "float vectors cover whole mask bytes");
#endif
  std::memcpy(bits + j / 8, &lanes, (V + 7) / 8);  // little-endian: low lanes first
}

// Scalar bits for elements [from, n) of a sample (from a multiple of 8), from the output
// as stored; also zeroes the padding after the last byte.
template <typename scalar_t>
inline void scalar_mask_bits(const scalar_t* out, int64_t from, int64_t n, uint8_t* bits,
                             int64_t mask_bytes) {
  for (int64_t byte = from / 8; byte < mask_bytes; ++byte) {
    uint8_t value = 0;
    for (int64_t l = 0; l < 8; ++l) {
      const int64_t k = byte * 8 + l;
      if (k < n && acc_t<scalar_t>(out[k]) > acc_t<scalar_t>(0)) {
        value |= uint8_t(1) << l;
      }
    }
    bits[byte] = value;
  }
}

// A sample's mask from its output as stored (just written with regular stores, so it is
// read back from cache).
template <typename scalar_t>
inline void mask_from_output(const scalar_t* out, int64_t n, uint8_t* bits, int64_t mask_bytes) {
  int64_t j = 0;
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  if constexpr (kFloatLanes<scalar_t>) {
    using IO = VecIO<scalar_t>;
    constexpr int64_t V = Vectorized<float>::size();
    for (; j + V <= n; j += V) {
      store_lane_bits(bits, j, positive_lanes(IO::load(out + j)));
    }
  }
#endif
  scalar_mask_bits<scalar_t>(out, j, n, bits, mask_bytes);
}

// Where the backward reads ReLU's mask from: go = grad where the mask passes, else 0,
// for the vector or element at sample-relative index k.
template <typename scalar_t>
struct OutputMask {
  using T = acc_t<scalar_t>;
  using Vec = typename VecIO<scalar_t>::Vec;
  const scalar_t* out;  // this sample's output

  Vec go(int64_t k, const Vec& grad) const {
    return Vec::blendv(Vec(T(0)), grad, VecIO<scalar_t>::load(out + k) > Vec(T(0)));
  }
  T go(int64_t k, T grad) const { return T(out[k]) > T(0) ? grad : T(0); }
};

template <typename scalar_t>
struct BitMask {
  using T = acc_t<scalar_t>;
  using Vec = typename VecIO<scalar_t>::Vec;
  const uint8_t* bits;  // this sample's bits

  Vec go(int64_t k, const Vec& grad) const { return keep_lanes<T>(bits_from(bits, k), grad); }
  T go(int64_t k, T grad) const { return bit_at(bits, k) ? grad : T(0); }
};

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

// Non-temporal ("streaming") stores of float32 vectors: the line goes to memory without
// first being read for ownership, which is a quarter of the apply pass's memory traffic
// (it reads y and x and writes out). Aligned addresses only. Without AVX2/AVX512 the
// kernels store normally.
#if defined(CPU_CAPABILITY_AVX512)
constexpr bool kStreamingStores = true;
inline void stream_store(float* p, const Vectorized<float>& v) { _mm512_stream_ps(p, v); }
inline void streaming_fence() { _mm_sfence(); }
#elif defined(CPU_CAPABILITY_AVX2)
constexpr bool kStreamingStores = true;
inline void stream_store(float* p, const Vectorized<float>& v) { _mm256_stream_ps(p, v); }
inline void streaming_fence() { _mm_sfence(); }
#else
constexpr bool kStreamingStores = false;
inline void stream_store(float* p, const Vectorized<float>& v) { v.store(p); }
inline void streaming_fence() {}
#endif

// Walks one sample of C*HW float32 elements as a flat run of vectors, for passes that
// write with streaming stores (which need aligned addresses, so a per-channel loop that
// splits every 81-float row into unaligned pieces will not do). Calls
// vector_body(j, a, b) for the vector at element j, where a and b hold, lane by lane,
// first[c] and second[c] for the lane's channel c, and scalar_body(j, first[c], second[c])
// for the elements after the last whole vector. NCHW vectors span at most two channels
// when HW >= the vector width (the lanes past the boundary take the next channel's
// values); channels-last vectors are slices of one position's channels when C is a
// multiple of the width. Returns false (nothing called) for other layouts or without
// streaming stores; the caller checks the output addresses' alignment.
template <typename VectorBody, typename ScalarBody>
inline bool walk_sample_vectors(int64_t C, int64_t HW, bool channels_last, const float* first,
                                const float* second, VectorBody vector_body,
                                ScalarBody scalar_body) {
  using Vec = Vectorized<float>;
  constexpr int64_t V = Vec::size();
  const int64_t n = C * HW;
  if (!kStreamingStores) {
    return false;
  }
  if (!channels_last) {
    if (HW < V) {
      return false;
    }
    const Vec lane = Vec::arange(0.0f, 1.0f);
    int64_t c = 0;
    int64_t next = HW;  // element where channel c + 1 starts
    int64_t j = 0;
    for (; j + V <= n; j += V) {
      if (j >= next) {  // once at most: a vector is never longer than a channel
        ++c;
        next += HW;
      }
      Vec va(first[c]);
      Vec vb(second[c]);
      const int64_t split = next - j;
      if (split < V) {
        const Vec upper = lane >= Vec(float(split));
        va = Vec::blendv(va, Vec(first[c + 1]), upper);
        vb = Vec::blendv(vb, Vec(second[c + 1]), upper);
      }
      vector_body(j, va, vb);
    }
    for (; j < n; ++j) {
      const int64_t ch = j / HW;
      scalar_body(j, first[ch], second[ch]);
    }
    return true;
  }
  if (C % V != 0) {
    return false;
  }
  for (int64_t j = 0; j < n; j += V) {
    const int64_t c = j % C;
    vector_body(j, Vec::loadu(first + c), Vec::loadu(second + c));
  }
  return true;
}

inline bool aligned_for_streaming(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % sizeof(Vectorized<float>) == 0;
}

// apply_sample with streaming stores (float32); false when it cannot (nothing written).
// With `bits`, also writes the sample's ReLU mask (from the values in registers: the
// streamed output is not in cache to read back).
inline bool apply_sample_streaming(const float* y, const float* x, float* out, bool channels_last,
                                   int64_t C, int64_t HW, const float* gate, const float* shift,
                                   uint8_t* bits, int64_t mask_bytes) {
  using Vec = Vectorized<float>;
  constexpr int64_t V = Vec::size();
  if (!aligned_for_streaming(out)) {
    return false;
  }
  const Vec zero(0.0f);
  const bool streamed = walk_sample_vectors(
      C, HW, channels_last, gate, shift,
      [&](int64_t j, const Vec& g, const Vec& s) {
        const Vec z = at::vec::maximum(
            at::vec::fmadd(Vec::loadu(y + j), g, Vec::loadu(x + j) + s), zero);
        stream_store(out + j, z);
        if (bits != nullptr) {
          store_lane_bits(bits, j, positive_lanes(z));
        }
      },
      [&](int64_t j, float g, float s) { out[j] = relu_scalar<float>(y[j] * g + (x[j] + s)); });
  if (streamed && bits != nullptr) {
    const int64_t n = C * HW;
    scalar_mask_bits<float>(out, n - n % V, n, bits, mask_bytes);  // the scalar tail
  }
  return streamed;
}

template <typename scalar_t>
void forward_range(const ForwardArgs& a, int64_t begin, int64_t end) {
  using T = acc_t<scalar_t>;
  const int64_t C = a.channels;
  const int64_t HW = a.hw;
  const int64_t H = a.hidden;
  const int64_t sample = C * HW;
  const int64_t stride = a.scratch_stride;
  const auto* y = static_cast<const scalar_t*>(a.y);
  const auto* x = static_cast<const scalar_t*>(a.residual);
  auto* out = static_cast<scalar_t*>(a.out);
  const auto* w1 = static_cast<const T*>(a.w1);
  const auto* b1 = static_cast<const T*>(a.b1);
  const auto* w2 = static_cast<const T*>(a.w2);
  const auto* b2 = static_cast<const T*>(a.b2);
  const auto* w1t = static_cast<const T*>(a.w1t);
  const auto* w2t = static_cast<const T*>(a.w2t);
  auto* mask = static_cast<uint8_t*>(a.mask);
  // A group's samples (kGroup x C x HW: 332 KB in float32 at 256 x 9 x 9) stay in L2
  // between the pooling pass and the apply pass.
  for (int64_t b0 = begin; b0 < end; b0 += kGroup) {
    const int64_t count = std::min(kGroup, end - b0);
    T* pooled = static_cast<T*>(a.scratch) + b0 * stride;
    for (int64_t g = 0; g < count; ++g) {
      pool_sample<scalar_t>(y + (b0 + g) * sample, a.channels_last, C, HW, pooled + g * stride);
    }
    excite_samples<T>(count, w1, w1t, b1, w2, w2t, b2, C, H, a.film, {pooled, stride},
                      {pooled + 3 * C, stride}, {pooled + C, stride}, {pooled + 2 * C, stride});
    for (int64_t g = 0; g < count; ++g) {
      const int64_t off = (b0 + g) * sample;
      const T* gate = pooled + g * stride + C;
      uint8_t* bits = mask != nullptr ? mask + (b0 + g) * a.mask_bytes : nullptr;
      bool streamed = false;
      if constexpr (std::is_same_v<scalar_t, float>) {
        streamed = a.stream_output &&
                   apply_sample_streaming(y + off, x + off, out + off, a.channels_last, C, HW,
                                          gate, gate + C, bits, a.mask_bytes);
      }
      if (!streamed) {
        apply_sample<scalar_t>(y + off, x + off, out + off, a.channels_last, C, HW, gate,
                               gate + C);
        if (bits != nullptr) {
          mask_from_output<scalar_t>(out + off, sample, bits, a.mask_bytes);
        }
      }
    }
  }
  if (a.stream_output) {
    streaming_fence();  // order the streaming stores before the pool's completion signal
  }
}

// Pass 1 of the backward pass for one sample: with go = grad where ReLU's mask passes,
// the per-channel sums sum(go * y), sum(go), sum(y) (the last gives the pooled input
// back). It writes nothing else: pass 2 recomputes go from grad and the mask, which are
// then in L2.
template <typename scalar_t, typename Mask>
inline void backward_reduce_sample(const scalar_t* grad, const scalar_t* y, const Mask& mask,
                                   bool channels_last, int64_t C, int64_t HW,
                                   acc_t<scalar_t>* sum_gy, acc_t<scalar_t>* sum_g,
                                   acc_t<scalar_t>* sum_y) {
  using T = acc_t<scalar_t>;
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t V = Vec::size();
  if (!channels_last) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t base = c * HW;
      Vec agy(T(0));
      Vec ag(T(0));
      Vec ay(T(0));
      int64_t i = 0;
      for (; i + V <= HW; i += V) {
        const Vec vy = IO::load(y + base + i);
        const Vec go = mask.go(base + i, IO::load(grad + base + i));
        agy = at::vec::fmadd(go, vy, agy);
        ag = ag + go;
        ay = ay + vy;
      }
      T sgy = hsum<T>(agy);
      T sg = hsum<T>(ag);
      T sy = hsum<T>(ay);
      for (; i < HW; ++i) {
        const T vy = T(y[base + i]);
        const T go = mask.go(base + i, T(grad[base + i]));
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
      const Vec go = mask.go(base + c, IO::load(grad + base + c));
      at::vec::fmadd(go, vy, Vec::loadu(sum_gy + c)).store(sum_gy + c);
      (Vec::loadu(sum_g + c) + go).store(sum_g + c);
      (Vec::loadu(sum_y + c) + vy).store(sum_y + c);
    }
    for (; c < C; ++c) {
      const T vy = T(y[base + c]);
      const T go = mask.go(base + c, T(grad[base + c]));
      sum_gy[c] += go * vy;
      sum_g[c] += go;
      sum_y[c] += vy;
    }
  }
}

// Pass 2: go again, grad_residual = go, grad_y = go * gate[c] + coef[c]
// (coef = d_pooled / HW).
template <typename scalar_t, typename Mask>
inline void backward_apply_sample(const scalar_t* grad, const Mask& mask, scalar_t* gx,
                                  scalar_t* gy, bool channels_last, int64_t C, int64_t HW,
                                  const acc_t<scalar_t>* gate, const acc_t<scalar_t>* coef) {
  using T = acc_t<scalar_t>;
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t V = Vec::size();
  const auto go_at = [&](int64_t k) { return mask.go(k, IO::load(grad + k)); };
  const auto go_scalar = [&](int64_t k) { return mask.go(k, T(grad[k])); };
  if (!channels_last) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t base = c * HW;
      const Vec vg(gate[c]);
      const Vec vc(coef[c]);
      int64_t i = 0;
      for (; i + V <= HW; i += V) {
        const Vec go = go_at(base + i);
        IO::store(gx + base + i, go);
        IO::store(gy + base + i, at::vec::fmadd(go, vg, vc));
      }
      for (; i < HW; ++i) {
        const T go = go_scalar(base + i);
        gx[base + i] = scalar_t(go);
        gy[base + i] = scalar_t(go * gate[c] + coef[c]);
      }
    }
    return;
  }
  for (int64_t p = 0; p < HW; ++p) {
    const int64_t base = p * C;
    int64_t c = 0;
    for (; c + V <= C; c += V) {
      const Vec go = go_at(base + c);
      IO::store(gx + base + c, go);
      IO::store(gy + base + c, at::vec::fmadd(go, Vec::loadu(gate + c), Vec::loadu(coef + c)));
    }
    for (; c < C; ++c) {
      const T go = go_scalar(base + c);
      gx[base + c] = scalar_t(go);
      gy[base + c] = scalar_t(go * gate[c] + coef[c]);
    }
  }
}

// backward_apply_sample with streaming stores of both gradients (float32); false when it
// cannot (nothing written).
template <typename Mask>
inline bool backward_apply_sample_streaming(const float* grad, const Mask& mask, float* gx,
                                            float* gy, bool channels_last, int64_t C, int64_t HW,
                                            const float* gate, const float* coef) {
  using Vec = Vectorized<float>;
  if (!aligned_for_streaming(gx) || !aligned_for_streaming(gy)) {
    return false;
  }
  return walk_sample_vectors(
      C, HW, channels_last, gate, coef,
      [&](int64_t j, const Vec& g, const Vec& k) {
        const Vec go = mask.go(j, Vec::loadu(grad + j));
        stream_store(gx + j, go);
        stream_store(gy + j, at::vec::fmadd(go, g, k));
      },
      [&](int64_t j, float g, float k) {
        const float go = mask.go(j, grad[j]);
        gx[j] = go;
        gy[j] = go * g + k;
      });
}

template <typename scalar_t>
OutputMask<scalar_t> sample_mask(const BackwardArgs& a, int64_t b, OutputMask<scalar_t>*) {
  return {static_cast<const scalar_t*>(a.out) + b * a.channels * a.hw};
}

template <typename scalar_t>
BitMask<scalar_t> sample_mask(const BackwardArgs& a, int64_t b, BitMask<scalar_t>*) {
  return {static_cast<const uint8_t*>(a.mask) + b * a.mask_bytes};
}

template <typename scalar_t, typename Mask>
void backward_range(const BackwardArgs& a, int64_t begin, int64_t end) {
  using T = acc_t<scalar_t>;
  const int64_t C = a.channels;
  const int64_t HW = a.hw;
  const int64_t H = a.hidden;
  const int64_t E = a.film ? 2 * C : C;
  const int64_t sample = C * HW;
  const int64_t stride = a.scratch_stride;
  const auto* grad = static_cast<const scalar_t*>(a.grad);
  const auto* y = static_cast<const scalar_t*>(a.y);
  auto* gy = static_cast<scalar_t*>(a.grad_y);
  auto* gx = static_cast<scalar_t*>(a.grad_residual);
  const auto* w1 = static_cast<const T*>(a.w1);
  const auto* b1 = static_cast<const T*>(a.b1);
  const auto* w2 = static_cast<const T*>(a.w2);
  const auto* b2 = static_cast<const T*>(a.b2);
  const auto* w1t = static_cast<const T*>(a.w1t);
  const auto* w2t = static_cast<const T*>(a.w2t);
  const T inv_hw = T(1) / T(HW);
  for (int64_t b0 = begin; b0 < end; b0 += kGroup) {
    const int64_t count = std::min(kGroup, end - b0);
    // Per-sample scratch: sum(go * y) | sum(go) | gate | shift | d_pooled / HW.
    T* scratch = static_cast<T*>(a.scratch) + b0 * stride;
    T* pooled = static_cast<T*>(a.pooled) + b0 * C;
    T* hidden = static_cast<T*>(a.hidden_act) + b0 * H;
    T* d_hidden = static_cast<T*>(a.d_hidden) + b0 * H;
    T* d_excite = static_cast<T*>(a.d_excite) + b0 * E;

    for (int64_t g = 0; g < count; ++g) {
      const int64_t off = (b0 + g) * sample;
      T* sums = scratch + g * stride;
      T* p = pooled + g * C;
      backward_reduce_sample<scalar_t>(grad + off, y + off,
                                       sample_mask<scalar_t>(a, b0 + g, static_cast<Mask*>(nullptr)),
                                       a.channels_last, C, HW, sums, sums + C, p);
      for (int64_t c = 0; c < C; ++c) {
        p[c] *= inv_hw;
      }
    }
    excite_samples<T>(count, w1, w1t, b1, w2, w2t, b2, C, H, a.film, {pooled, C}, {hidden, H},
                      {scratch + 2 * C, stride}, {scratch + 3 * C, stride});

    // d(fc2 output): gate logits get sum(go * y) * sigmoid'; the FiLM shift gets sum(go).
    for (int64_t g = 0; g < count; ++g) {
      const T* sum_gy = scratch + g * stride;
      const T* sum_g = sum_gy + C;
      const T* gate = sum_gy + 2 * C;
      T* de = d_excite + g * E;
      for (int64_t k = 0; k < C; ++k) {
        de[k] = sum_gy[k] * gate[k] * (T(1) - gate[k]);
      }
      if (a.film) {
        for (int64_t k = 0; k < C; ++k) {
          de[C + k] = sum_g[k];
        }
      }
    }
    // d(fc1 output) = (w2^T d_excite) * relu'(fc1 output): rows of w2 [E, H] combined.
    combine_rows_samples<T>(count, d_hidden, H, nullptr, w2, H, d_excite, E, E, H);
    for (int64_t j = 0; j < count * H; ++j) {
      if (!(hidden[j] > T(0))) {
        d_hidden[j] = T(0);
      }
    }
    // d(pooled) = w1^T d_hidden (rows of w1 [H, C]), spread evenly over the board.
    T* coef = scratch + 4 * C;
    combine_rows_samples<T>(count, coef, stride, nullptr, w1, C, d_hidden, H, H, C);
    for (int64_t g = 0; g < count; ++g) {
      T* k = coef + g * stride;
      for (int64_t c = 0; c < C; ++c) {
        k[c] *= inv_hw;
      }
      const int64_t off = (b0 + g) * sample;
      const T* gate = scratch + g * stride + 2 * C;
      const Mask mask = sample_mask<scalar_t>(a, b0 + g, static_cast<Mask*>(nullptr));
      bool streamed = false;
      if constexpr (std::is_same_v<scalar_t, float>) {
        streamed = a.stream_output &&
                   backward_apply_sample_streaming(grad + off, mask, gx + off, gy + off,
                                                   a.channels_last, C, HW, gate, k);
      }
      if (!streamed) {
        backward_apply_sample<scalar_t>(grad + off, mask, gx + off, gy + off, a.channels_last, C,
                                        HW, gate, k);
      }
    }
  }
  if (a.stream_output) {
    streaming_fence();
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

template <typename scalar_t>
void backward_with_mask(const BackwardArgs& a, int64_t begin, int64_t end) {
  if (a.mask != nullptr) {
    backward_range<scalar_t, BitMask<scalar_t>>(a, begin, end);
  } else {
    backward_range<scalar_t, OutputMask<scalar_t>>(a, begin, end);
  }
}

inline void backward_dispatch(const BackwardArgs& a, int64_t begin, int64_t end) {
  switch (a.kind) {
    case ScalarKind::Float:
      backward_with_mask<float>(a, begin, end);
      break;
    case ScalarKind::Double:
      backward_with_mask<double>(a, begin, end);
      break;
    case ScalarKind::BFloat16:
      backward_with_mask<c10::BFloat16>(a, begin, end);
      break;
    case ScalarKind::Half:
      backward_with_mask<c10::Half>(a, begin, end);
      break;
  }
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace keisei_fused_se
