// A tiled matrix transpose for the fused SE dispatcher's transposed weight copies (and
// tools/kernel_timing.cpp, which times it).
#pragma once

#include <algorithm>
#include <cstdint>

namespace keisei_fused_se {

// dst[c * rows + r] = src[r * cols + c], in 16 x 16 tiles (both sides of a tile stay in
// L1). Kept out of line with its arguments by value: written inline in the dispatch
// lambda, GCC kept the loop's pointers on the stack and reloaded them around every store
// (perf annotate), and the two transposes of a call took as long as the batch-8 kernel.
template <typename T>
__attribute__((noinline)) void transpose_tiled(const T* __restrict src, int64_t rows, int64_t cols,
                                               T* __restrict dst) {
  constexpr int64_t tile = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += tile) {
    const int64_t r1 = std::min(r0 + tile, rows);
    for (int64_t c0 = 0; c0 < cols; c0 += tile) {
      const int64_t c1 = std::min(c0 + tile, cols);
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) {
          dst[c * rows + r] = src[r * cols + c];
        }
      }
    }
  }
}

}  // namespace keisei_fused_se
