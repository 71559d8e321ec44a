// Times the AVX512 forward kernel's stages on one thread, outside torch (best of 200):
// where the fused forward's time goes, next to a plain `out = y + x` loop; and the whole
// forward with ReLU's bit mask, and the whole backward reading the mask from the output
// or from the bits. Build and run
// from the repository root (see the plugin README):
//   T=.venv/lib/python3.11/site-packages/torch
//   g++ -O3 -std=c++20 -mavx512f -mavx512dq -mavx512vl -mavx512bw -mfma -Wno-psabi \
//     -Wno-unknown-pragmas -I$T/include -Iplugins/keisei-plugin-fused-se/csrc \
//     plugins/keisei-plugin-fused-se/tools/kernel_timing.cpp -o /tmp/kernel_timing \
//     -L$T/lib -ltorch_cpu -lc10 -Wl,-rpath,$T/lib && /tmp/kernel_timing [per-sample]
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#include "kernels_impl.h"
#include "transpose.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

using namespace keisei_fused_se;

template <typename T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64)); }
  void deallocate(T* p, std::size_t) { std::free(p); }
  bool operator==(const AlignedAllocator&) const { return true; }
};

int main(int argc, char** argv) {
  const int64_t B = 64, C = 256, HW = 81, H = 64, S = 3 * C + H;
  // 64-byte aligned like torch's CPU allocations (the streaming stores need it)
  std::vector<float, AlignedAllocator<float>> y(B * C * HW), x(B * C * HW), out(B * C * HW);
  std::vector<float> w1(H * C), w2(C * H), b1(H), b2(C), scratch(B * S), w1t(C * H), w2t(H * C);
  for (size_t i = 0; i < y.size(); ++i) {
    y[i] = float(i * 2654435761u % 1000) / 500.0f - 1.0f;
    x[i] = float(i * 7 % 1000) / 500.0f - 1.0f;
  }
  for (size_t i = 0; i < w1.size(); ++i) {
    w1[i] = float(int(i % 7) - 3) / 64.0f;
    w2[i] = float(int(i % 5) - 2) / 32.0f;
  }
  transpose_tiled(w1.data(), H, C, w1t.data());  // w1 [H, C] -> [C, H]
  transpose_tiled(w2.data(), C, H, w2t.data());  // w2 [C, H] -> [H, C]
  // Options: per-sample (the MLP as dot products, as for batches under 16; default: grouped
  // with transposed weights) and regular-stores (default: streaming output stores, as for
  // float32 outputs of 4 MiB and more).
  bool grouped = true;
  bool streaming = true;
  for (int i = 1; i < argc; ++i) {
    grouped = grouped && std::string(argv[i]) != "per-sample";
    streaming = streaming && std::string(argv[i]) != "regular-stores";
  }
  ForwardArgs args{ScalarKind::Float, false, false, C, HW, H, y.data(), x.data(), out.data(),
                   w1.data(), b1.data(), w2.data(), b2.data(), grouped ? w1t.data() : nullptr,
                   grouped ? w2t.data() : nullptr, scratch.data(), S, streaming, nullptr, 0};
  auto best_us = [](const std::function<void()>& fn) {
    double best = 1e30;
    for (int rep = 0; rep < 200; ++rep) {
      const auto start = std::chrono::steady_clock::now();
      fn();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return best * 1e6;
  };
  const double full = best_us([&] { AVX512::forward_dispatch(args, 0, B); });
  const double pool = best_us([&] {
    for (int64_t b = 0; b < B; ++b) AVX512::pool_sample<float>(y.data() + b * C * HW, false, C, HW, scratch.data() + b * S);
  });
  const double excite = best_us([&] {
    for (int64_t b = 0; b < B; b += AVX512::kGroup) {
      float* p = scratch.data() + b * S;
      AVX512::excite_samples<float>(AVX512::kGroup, w1.data(), static_cast<const float*>(args.w1t), b1.data(), w2.data(),
                                    static_cast<const float*>(args.w2t), b2.data(), C, H, false, {p, S},
                                    {p + 3 * C, S}, {p + C, S}, {p + 2 * C, S});
    }
  });
  const double apply = best_us([&] {
    for (int64_t b = 0; b < B; ++b) {
      const float* p = scratch.data() + b * S;
      float* o = out.data() + b * C * HW;
      if (!streaming || !AVX512::apply_sample_streaming(y.data() + b * C * HW, x.data() + b * C * HW, o, false, C, HW, p + C, p + 2 * C, nullptr, 0)) {
        AVX512::apply_sample<float>(y.data() + b * C * HW, x.data() + b * C * HW, o, false, C, HW, p + C, p + 2 * C);
      }
    }
    AVX512::streaming_fence();
  });
  const double transposes = best_us([&] {
    transpose_tiled(w1.data(), H, C, w1t.data());
    transpose_tiled(w2.data(), C, H, w2t.data());
  });
  const double add = best_us([&] {
    for (size_t i = 0; i < y.size(); ++i) out[i] = y[i] + x[i];
  });
  // The forward writing ReLU's mask in bits too, and the backward with either mask.
  const int64_t mask_bytes = mask_bytes_per_sample(C * HW);
  std::vector<uint8_t> mask(B * mask_bytes);
  ForwardArgs masked = args;
  masked.mask = mask.data();
  masked.mask_bytes = mask_bytes;
  const double full_masked = best_us([&] { AVX512::forward_dispatch(masked, 0, B); });
  const int64_t BS = 5 * C + H;
  std::vector<float, AlignedAllocator<float>> grad(B * C * HW), grad_y(B * C * HW), grad_x(B * C * HW);
  for (size_t i = 0; i < grad.size(); ++i) grad[i] = float(i * 40503u % 1000) / 500.0f - 1.0f;
  std::vector<float> d_excite(B * C), d_hidden(B * H), hidden_act(B * H), pooled(B * C), bscratch(B * BS);
  BackwardArgs backward{ScalarKind::Float, false, false, C, HW, H, grad.data(), y.data(), out.data(),
                        grad_y.data(), grad_x.data(), w1.data(), b1.data(), w2.data(), b2.data(),
                        grouped ? w1t.data() : nullptr, grouped ? w2t.data() : nullptr, d_excite.data(),
                        d_hidden.data(), hidden_act.data(), pooled.data(), bscratch.data(), BS, streaming,
                        nullptr, 0};
  const double backward_out = best_us([&] { AVX512::backward_dispatch(backward, 0, B); });
  BackwardArgs backward_bits = backward;
  backward_bits.out = nullptr;
  backward_bits.mask = mask.data();
  backward_bits.mask_bytes = mask_bytes;
  const double backward_mask = best_us([&] { AVX512::backward_dispatch(backward_bits, 0, B); });
  bool same = true;  // both masks give the same gradients
  std::vector<float> first_gy(grad_y.begin(), grad_y.end());
  AVX512::backward_dispatch(backward, 0, B);
  for (size_t i = 0; i < grad_y.size(); ++i) same = same && grad_y[i] == first_gy[i];

  std::printf("B=64 C=256 9x9 hidden=64 float32 NCHW, one thread, best of 200 (us), MLP %s, %s stores\n",
              grouped ? "grouped (transposed weights)" : "per sample (dot products)",
              streaming ? "streaming" : "regular");
  std::printf("full forward %.0f | pool %.0f | excitation %.0f | apply %.0f | plain out=y+x loop %.0f\n", full, pool,
              excite, apply, add);
  std::printf("the two weight transposes (made per call for batches >= 16, not part of the full forward above) %.1f\n",
              transposes);
  std::printf("full forward writing the bit mask too %.0f | full backward, mask from the output %.0f, "
              "from the bits %.0f (same gradients: %s)\n",
              full_masked, backward_out, backward_mask, same ? "yes" : "NO");
  return out[5] > 1e30f || !same;  // keeps the loops from being optimised away
}
