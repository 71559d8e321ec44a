// Interface between the dispatcher (fused_se.cpp, built with the compiler's default flags)
// and the per-ISA kernel translation units (kernels_default.cpp, kernels_avx2.cpp,
// kernels_avx512.cpp: the same kernels_impl.h built with different -m flags, as PyTorch
// builds its own CPU kernels). Only plain pointers and sizes cross this boundary, so the
// ISA-specific translation units need nothing but the at::vec headers.
#pragma once

#include <cstdint>

namespace keisei_fused_se {

enum class ScalarKind : int { Float = 0, Double = 1, BFloat16 = 2, Half = 3 };

// One batch of the forward pass. Activations have the per-sample layout C x HW
// (NCHW-contiguous) or HW x C (channels-last-contiguous); samples are C*HW apart.
// Weights and biases are in the accumulate type (double for double inputs, float
// otherwise), row-major as torch stores them: w1 [hidden, C] (fc1) and w2 [E, hidden]
// (fc2) with E = C or 2C. For small batches the forward MLP takes one dot product per
// output row of those matrices, so no call pays for transposed copies (aten's cost
// ~20 us, a third of the op at batch 1). For larger batches the dispatcher also passes
// transposed copies, w1t [C, hidden] and w2t [hidden, E], and the kernels run the MLP for
// a group of samples at once as register-blocked row combinations: each weight row is
// loaded once per group instead of once per sample, and no horizontal sums (with dot
// products the MLP was 211-229 us of a 1.22-1.25 ms batch-64 forward; grouped, 65-81 us).
struct ForwardArgs {
  ScalarKind kind;
  bool channels_last;
  bool film;
  int64_t channels;
  int64_t hw;
  int64_t hidden;
  const void* y;
  const void* residual;
  void* out;
  const void* w1;
  const void* b1;
  const void* w2;
  const void* b2;
  const void* w1t;         // [C, hidden] or null: per-sample dot products
  const void* w2t;         // [hidden, E] or null
  void* scratch;           // accumulate type, scratch_stride elements per sample
  int64_t scratch_stride;  // >= 3C + hidden
  bool stream_output;      // float32: write out with non-temporal stores where aligned
  void* mask;              // null, or ReLU's mask: mask_bytes per sample (see below)
  int64_t mask_bytes;
};

// ReLU's mask as one bit per output element (bit k of a sample: byte k / 8, bit k % 8,
// set where the output as stored is positive), each sample's bits starting at a byte of
// its own and padded so that four bytes can be read at any element's byte.
inline int64_t mask_bytes_per_sample(int64_t elements) {
  return ((elements + 7) / 8 + 4 + 7) / 8 * 8;
}

// One batch of the backward pass. Besides grad_y and grad_residual (activation dtype and
// layout) it writes, per sample b, row b of four accumulate-type matrices that the
// dispatcher turns into the weight gradients with two small GEMMs. It recomputes the
// forward MLP as the forward does (with w1t/w2t when given) and back-propagates through
// it with the row-major weights (w1 [hidden, C], w2 [E, hidden]).
struct BackwardArgs {
  ScalarKind kind;
  bool channels_last;
  bool film;
  int64_t channels;
  int64_t hw;
  int64_t hidden;
  const void* grad;
  const void* y;
  const void* out;   // the forward's output (ReLU's mask read from it), or null with mask
  void* grad_y;
  void* grad_residual;
  const void* w1;
  const void* b1;
  const void* w2;
  const void* b2;
  const void* w1t;   // [C, hidden] or null, as in ForwardArgs
  const void* w2t;   // [hidden, E] or null
  void* d_excite;    // [B, E]      dL/d(fc2 output)
  void* d_hidden;    // [B, hidden] dL/d(fc1 output)
  void* hidden_act;  // [B, hidden] relu(fc1(pooled))
  void* pooled;      // [B, C]      mean_hw(y)
  void* scratch;     // accumulate type, scratch_stride elements per sample
  int64_t scratch_stride;  // >= 5C + hidden
  bool stream_output;      // float32: write both gradients with non-temporal stores
  const void* mask;        // ReLU's mask in bits (ForwardArgs::mask), or null: read out
  int64_t mask_bytes;
};

using ForwardFn = void (*)(const ForwardArgs&, int64_t begin, int64_t end);
using BackwardFn = void (*)(const BackwardArgs&, int64_t begin, int64_t end);

struct KernelTable {
  ForwardFn forward;
  BackwardFn backward;
  const char* isa;
};

namespace DEFAULT {
const KernelTable& kernel_table();
}
namespace AVX2 {
const KernelTable& kernel_table();
}
namespace AVX512 {
const KernelTable& kernel_table();
}

}  // namespace keisei_fused_se
