// CPU implementation of the keisei_fused_se operators: input checks, layout handling,
// the parallel loop over the batch, and the two small GEMMs of the weight gradients.
// The per-sample kernels live in kernels_impl.h, built once per instruction set; this file
// is built with the default flags and picks the set torch itself runs with
// (at::get_cpu_capability(), which honours ATEN_CPU_CAPABILITY).
//
// The operator schemas are defined in Python (keisei_plugin_fused_se/ops.py) before this
// library is imported; here we only add CPU kernels to them.
#include <Python.h>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/EmptyTensor.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <tuple>
#include <vector>

#include "buffer_pool.h"
#include "kernels.h"
#include "transpose.h"

namespace keisei_fused_se {
namespace {

const KernelTable& select_kernels() {
#if defined(KEISEI_FUSED_SE_X86_KERNELS)
  // torch's own choice ("AVX512", "AVX2", or e.g. "NO AVX"): a machine torch runs AVX512
  // kernels on runs ours too, and ATEN_CPU_CAPABILITY lowers both.
  const std::string capability = at::get_cpu_capability();
  if (capability == "AVX512") {
    return AVX512::kernel_table();
  }
  if (capability == "AVX2") {
    return AVX2::kernel_table();
  }
#endif
  return DEFAULT::kernel_table();
}

const KernelTable& active_kernels() {
  static const KernelTable& table = select_kernels();
  return table;
}

ScalarKind scalar_kind(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return ScalarKind::Float;
    case at::kDouble:
      return ScalarKind::Double;
    case at::kBFloat16:
      return ScalarKind::BFloat16;
    case at::kHalf:
      return ScalarKind::Half;
    default:
      TORCH_CHECK(false, "keisei_fused_se: unsupported dtype ", type,
                  " (float32, float64, bfloat16 and float16 are supported)");
  }
}

// Must agree with ops.py::output_memory_format (the fake implementation).
at::MemoryFormat activation_format(const at::Tensor& y) {
  return !y.is_contiguous() && y.is_contiguous(at::MemoryFormat::ChannelsLast)
             ? at::MemoryFormat::ChannelsLast
             : at::MemoryFormat::Contiguous;
}

// An uninitialised activation-shaped output. Large ones come from the op's buffer pool
// (buffer_pool.h): a loop of same-shaped calls then writes to warm pages instead of
// page-faulting on fresh memory.
at::Tensor empty_output(const at::Tensor& like, at::MemoryFormat format) {
  return at::detail::empty_generic(like.sizes(), &BufferPool::instance(),
                                   c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   like.scalar_type(), format);
}

void check_inputs(const at::Tensor& y, const at::Tensor& residual, const at::Tensor& w1,
                  const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2, bool film) {
  TORCH_CHECK(y.dim() == 4, "keisei_fused_se: y must be (B, C, H, W), got ", y.sizes());
  TORCH_CHECK(residual.sizes() == y.sizes(), "keisei_fused_se: residual shape ",
              residual.sizes(), " differs from y ", y.sizes());
  const int64_t C = y.size(1);
  TORCH_CHECK(C >= 1 && y.size(2) * y.size(3) >= 1,
              "keisei_fused_se: y needs at least one channel and one board cell, got ",
              y.sizes());
  TORCH_CHECK(w1.dim() == 2 && w1.size(1) == C && w1.size(0) >= 1,
              "keisei_fused_se: w1 must be (hidden, C=", C, "), got ", w1.sizes());
  const int64_t H = w1.size(0);
  const int64_t E = film ? 2 * C : C;
  TORCH_CHECK(b1.dim() == 1 && b1.size(0) == H, "keisei_fused_se: b1 must be (", H, "), got ",
              b1.sizes());
  TORCH_CHECK(w2.dim() == 2 && w2.size(0) == E && w2.size(1) == H, "keisei_fused_se: w2 must be (",
              E, ", ", H, "), got ", w2.sizes());
  TORCH_CHECK(b2.dim() == 1 && b2.size(0) == E, "keisei_fused_se: b2 must be (", E, "), got ",
              b2.sizes());
  for (const at::Tensor* t : {&residual, &w1, &b1, &w2, &b2}) {
    TORCH_CHECK(t->scalar_type() == y.scalar_type(), "keisei_fused_se: all inputs must have dtype ",
                y.scalar_type(), ", got ", t->scalar_type());
  }
}

at::ScalarType accumulate_type(at::ScalarType type) {
  return type == at::kDouble ? at::kDouble : at::kFloat;
}

// From this batch size on, the kernels get transposed copies of the two weights and run
// the MLP for groups of samples (kernels.h). tools/kernel_timing.cpp (256 channels,
// hidden 64, one thread): the two copies take 23-27 us and grouping saves about 2.2 us
// per sample (the MLP 3.0-3.2 us per sample one at a time, 0.9 us grouped), so it pays
// from about 12 samples; 16 keeps a margin, and acting batches go without.
constexpr int64_t kTransposedWeightsMinBatch = 16;

// Outputs at least this large (the forward's output, the backward's two gradients) are
// written with non-temporal stores (float32, AVX2 or AVX512): such an output does not fit
// a core's L2 anyway, and skipping the read for ownership saves a quarter of the
// forward's memory traffic and two sevenths of the backward's. Smaller outputs (acting
// batches) stay in cache for the operation that reads them next.
constexpr int64_t kStreamingMinBytes = 4 << 20;

bool stream_output(const at::Tensor& out) {
  return out.scalar_type() == at::kFloat && int64_t(out.nbytes()) >= kStreamingMinBytes;
}

// The weights in the accumulate type, as torch lays them out and (for batches of at least
// kTransposedWeightsMinBatch) transposed. Views of the caller's tensors when they already
// are contiguous in the accumulate type (float32 and float64 models).
struct KernelWeights {
  at::Tensor w1, b1, w2, b2, w1t, w2t;

  KernelWeights(const at::Tensor& w1_in, const at::Tensor& b1_in, const at::Tensor& w2_in,
                const at::Tensor& b2_in, at::ScalarType acc, int64_t batch)
      : w1(w1_in.to(acc).contiguous()),
        b1(b1_in.to(acc).contiguous()),
        w2(w2_in.to(acc).contiguous()),
        b2(b2_in.to(acc).contiguous()) {
    if (batch >= kTransposedWeightsMinBatch) {
      w1t = transposed(w1);
      w2t = transposed(w2);
    }
  }

  // A contiguous transposed copy of a contiguous float or double matrix.
  static at::Tensor transposed(const at::Tensor& m) {
    at::Tensor out = at::empty({m.size(1), m.size(0)}, m.options());
    AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "keisei_fused_se_transpose", [&] {
      transpose_tiled(m.const_data_ptr<scalar_t>(), m.size(0), m.size(1),
                      out.mutable_data_ptr<scalar_t>());
    });
    return out;
  }

  static const void* pointer(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
};

int64_t mask_bytes_for(const at::Tensor& y) {
  return mask_bytes_per_sample(y.size(1) * y.size(2) * y.size(3));
}

// The forward pass; with `with_mask`, also ReLU's mask in bits ([B, mask_bytes] uint8,
// kernels.h), which the training path saves instead of the output.
std::tuple<at::Tensor, at::Tensor> se_unit_forward_impl(
    const at::Tensor& y_in, const at::Tensor& residual_in, const at::Tensor& w1,
    const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2, bool film, bool with_mask) {
  check_inputs(y_in, residual_in, w1, b1, w2, b2, film);
  const ScalarKind kind = scalar_kind(y_in.scalar_type());
  const at::MemoryFormat format = activation_format(y_in);
  const at::Tensor y = y_in.contiguous(format);
  const at::Tensor x = residual_in.contiguous(format);
  at::Tensor out = empty_output(y, format);
  const int64_t B = y.size(0);
  at::Tensor mask;
  if (with_mask) {
    mask = at::empty({B, mask_bytes_for(y)}, y.options().dtype(at::kByte));
  }
  if (B == 0) {
    return {out, mask};
  }
  const int64_t C = y.size(1);
  const int64_t H = w1.size(0);
  const auto acc = accumulate_type(y.scalar_type());
  const KernelWeights w(w1, b1, w2, b2, acc, B);
  const int64_t stride = 3 * C + H;
  at::Tensor scratch = at::empty({B, stride}, y.options().dtype(acc));

  ForwardArgs args{kind,          format == at::MemoryFormat::ChannelsLast,
                   film,          C,
                   y.size(2) * y.size(3), H,
                   y.data_ptr(),  x.data_ptr(),
                   out.data_ptr(), w.w1.data_ptr(),
                   w.b1.data_ptr(), w.w2.data_ptr(),
                   w.b2.data_ptr(), KernelWeights::pointer(w.w1t),
                   KernelWeights::pointer(w.w2t), scratch.data_ptr(),
                   stride,        stream_output(out),
                   with_mask ? mask.data_ptr() : nullptr,
                   with_mask ? mask.size(1) : 0};
  const KernelTable& kernels = active_kernels();
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) { kernels.forward(args, begin, end); });
  return {out, mask};
}

at::Tensor se_unit_forward(const at::Tensor& y, const at::Tensor& residual, const at::Tensor& w1,
                           const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                           bool film) {
  return std::get<0>(se_unit_forward_impl(y, residual, w1, b1, w2, b2, film, false));
}

std::tuple<at::Tensor, at::Tensor> se_unit_train_forward(const at::Tensor& y,
                                                         const at::Tensor& residual,
                                                         const at::Tensor& w1, const at::Tensor& b1,
                                                         const at::Tensor& w2, const at::Tensor& b2,
                                                         bool film) {
  return se_unit_forward_impl(y, residual, w1, b1, w2, b2, film, true);
}

using BackwardResult =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The backward pass with ReLU's mask read from the forward's output (out_in defined) or
// from its bits (mask defined).
BackwardResult se_unit_backward_impl(const at::Tensor& grad_in, const at::Tensor& y_in,
                                     const at::Tensor& out_in, const at::Tensor& mask,
                                     const at::Tensor& w1, const at::Tensor& b1,
                                     const at::Tensor& w2, const at::Tensor& b2, bool film) {
  const bool bits = mask.defined();
  check_inputs(y_in, bits ? y_in : out_in, w1, b1, w2, b2, film);
  TORCH_CHECK(grad_in.sizes() == y_in.sizes() && grad_in.scalar_type() == y_in.scalar_type(),
              "keisei_fused_se: grad must match y in shape and dtype, got ", grad_in.sizes(), " ",
              grad_in.scalar_type());
  if (bits) {
    TORCH_CHECK(mask.scalar_type() == at::kByte && mask.dim() == 2 &&
                    mask.size(0) == y_in.size(0) && mask.size(1) == mask_bytes_for(y_in) &&
                    mask.is_contiguous(),
                "keisei_fused_se: mask must be a contiguous uint8 tensor (", y_in.size(0), ", ",
                mask_bytes_for(y_in), ") from se_unit_train_cpu, got ", mask.scalar_type(), " ",
                mask.sizes());
  }
  const ScalarKind kind = scalar_kind(y_in.scalar_type());
  const at::MemoryFormat format = activation_format(y_in);
  const at::Tensor y = y_in.contiguous(format);
  const at::Tensor out = bits ? at::Tensor() : out_in.contiguous(format);
  const at::Tensor grad = grad_in.contiguous(format);
  at::Tensor grad_y = empty_output(y, format);
  at::Tensor grad_residual = empty_output(y, format);

  const int64_t B = y.size(0);
  const int64_t C = y.size(1);
  const int64_t H = w1.size(0);
  const int64_t E = film ? 2 * C : C;
  const auto acc = accumulate_type(y.scalar_type());
  const auto acc_options = y.options().dtype(acc);
  at::Tensor d_excite = at::empty({B, E}, acc_options);
  at::Tensor d_hidden = at::empty({B, H}, acc_options);
  at::Tensor hidden_act = at::empty({B, H}, acc_options);
  at::Tensor pooled = at::empty({B, C}, acc_options);
  if (B > 0) {
    const KernelWeights w(w1, b1, w2, b2, acc, B);
    const int64_t stride = 5 * C + H;
    at::Tensor scratch = at::empty({B, stride}, acc_options);
    BackwardArgs args{kind,
                      format == at::MemoryFormat::ChannelsLast,
                      film,
                      C,
                      y.size(2) * y.size(3),
                      H,
                      grad.data_ptr(),
                      y.data_ptr(),
                      bits ? nullptr : out.data_ptr(),
                      grad_y.data_ptr(),
                      grad_residual.data_ptr(),
                      w.w1.data_ptr(),
                      w.b1.data_ptr(),
                      w.w2.data_ptr(),
                      w.b2.data_ptr(),
                      KernelWeights::pointer(w.w1t),
                      KernelWeights::pointer(w.w2t),
                      d_excite.data_ptr(),
                      d_hidden.data_ptr(),
                      hidden_act.data_ptr(),
                      pooled.data_ptr(),
                      scratch.data_ptr(),
                      stride,
                      stream_output(grad_y),
                      bits ? mask.data_ptr() : nullptr,
                      bits ? mask.size(1) : 0};
    const KernelTable& kernels = active_kernels();
    at::parallel_for(0, B, 1,
                     [&](int64_t begin, int64_t end) { kernels.backward(args, begin, end); });
  }
  // Weight gradients over the whole batch: two [E or H, B] x [B, H or C] products.
  at::Tensor grad_w2 = d_excite.t().mm(hidden_act).to(w2.scalar_type());
  at::Tensor grad_b2 = d_excite.sum(0).to(b2.scalar_type());
  at::Tensor grad_w1 = d_hidden.t().mm(pooled).to(w1.scalar_type());
  at::Tensor grad_b1 = d_hidden.sum(0).to(b1.scalar_type());
  return {grad_y, grad_residual, grad_w1, grad_b1, grad_w2, grad_b2};
}

BackwardResult se_unit_backward(const at::Tensor& grad, const at::Tensor& y, const at::Tensor& out,
                                const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                                const at::Tensor& b2, bool film) {
  return se_unit_backward_impl(grad, y, out, at::Tensor(), w1, b1, w2, b2, film);
}

BackwardResult se_unit_backward_mask(const at::Tensor& grad, const at::Tensor& y,
                                     const at::Tensor& mask, const at::Tensor& w1,
                                     const at::Tensor& b1, const at::Tensor& w2,
                                     const at::Tensor& b2, bool film) {
  return se_unit_backward_impl(grad, y, at::Tensor(), mask, w1, b1, w2, b2, film);
}

std::string cpu_kernel_isa() { return active_kernels().isa; }

// How many threads one at::parallel_for over a batch of 64 runs on in this library. A
// build without OpenMP silently runs the kernels on one thread (the pragma inside
// at::parallel_for is dropped), and one linked to a second OpenMP runtime would not see
// torch's thread numbers: both show here as 1 where torch has more threads.
int64_t cpu_parallel_threads() {
  std::atomic<uint64_t> seen{0};
  at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    seen.fetch_or(uint64_t{1} << std::min(at::get_thread_num(), 63));
  });
  return __builtin_popcountll(seen.load());
}

// The output buffer pool's counters: hits, misses, idle bytes, idle blocks, limit bytes.
std::vector<int64_t> cpu_buffer_pool_stats() {
  const BufferPoolStats s = BufferPool::instance().stats();
  return {s.hits, s.misses, s.idle_bytes, s.idle_blocks, s.limit_bytes};
}

void cpu_buffer_pool_set_limit(int64_t limit_bytes) {
  BufferPool::instance().set_limit_bytes(limit_bytes);
}

int64_t cpu_buffer_pool_release() { return BufferPool::instance().release_idle(); }

// Autograd for se_unit_cpu, in C++: a training step on CPU tensors then runs no Python.
// The public op's autograd formula is Python (torch.library), which cost about 200 us per
// step in torch.profiler: negligible at batch 64, more than the kernels at batch 1.
// Same math as that formula, but it saves ReLU's mask as bits (se_unit_train_cpu) instead
// of the output, so the backward reads 1/32 of the output's bytes for it (float32).
class SEUnitCpuFunction : public torch::autograd::Function<SEUnitCpuFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& y,
                            const at::Tensor& residual, const at::Tensor& w1, const at::Tensor& b1,
                            const at::Tensor& w2, const at::Tensor& b2, bool film) {
    at::Tensor out;
    at::Tensor mask;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      static auto op = c10::Dispatcher::singleton()
                           .findSchemaOrThrow("keisei_fused_se::se_unit_train_cpu", "")
                           .typed<decltype(se_unit_train_forward)>();
      std::tie(out, mask) = op.call(y, residual, w1, b1, w2, b2, film);
    }
    ctx->save_for_backward({y, mask, w1, b1, w2, b2});
    ctx->saved_data["film"] = film;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool film = ctx->saved_data["film"].toBool();
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("keisei_fused_se::se_unit_backward_mask_cpu", "")
                         .typed<decltype(se_unit_backward_mask)>();
    auto [grad_y, grad_residual, grad_w1, grad_b1, grad_w2, grad_b2] =
        op.call(grads[0], saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], film);
    return {grad_y, grad_residual, grad_w1, grad_b1, grad_w2, grad_b2, at::Tensor()};
  }
};

at::Tensor se_unit_cpu_autograd(const at::Tensor& y, const at::Tensor& residual,
                                const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                                const at::Tensor& b2, bool film) {
  if (torch::autograd::compute_requires_grad(y, residual, w1, b1, w2, b2)) {
    return SEUnitCpuFunction::apply(y, residual, w1, b1, w2, b2, film);
  }
  // Nothing to record: no mask to make either.
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("keisei_fused_se::se_unit_cpu", "")
                       .typed<decltype(se_unit_forward)>();
  return op.call(y, residual, w1, b1, w2, b2, film);
}

}  // namespace
}  // namespace keisei_fused_se

TORCH_LIBRARY_FRAGMENT(keisei_fused_se, m) {
  m.def("cpu_kernel_isa() -> str", &keisei_fused_se::cpu_kernel_isa);
  m.def("cpu_parallel_threads() -> int", &keisei_fused_se::cpu_parallel_threads);
  m.def("cpu_buffer_pool_stats() -> int[]", &keisei_fused_se::cpu_buffer_pool_stats);
  m.def("cpu_buffer_pool_set_limit(int limit_bytes) -> ()",
        &keisei_fused_se::cpu_buffer_pool_set_limit);
  m.def("cpu_buffer_pool_release() -> int", &keisei_fused_se::cpu_buffer_pool_release);
}

TORCH_LIBRARY_IMPL(keisei_fused_se, CPU, m) {
  m.impl("se_unit_cpu", &keisei_fused_se::se_unit_forward);
  m.impl("se_unit_backward_cpu", &keisei_fused_se::se_unit_backward);
  m.impl("se_unit_train_cpu", &keisei_fused_se::se_unit_train_forward);
  m.impl("se_unit_backward_mask_cpu", &keisei_fused_se::se_unit_backward_mask);
}

TORCH_LIBRARY_IMPL(keisei_fused_se, Autograd, m) {
  m.impl("se_unit_cpu", &keisei_fused_se::se_unit_cpu_autograd);
}

// `import keisei_plugin_fused_se._C` loads this library, which runs the registrations above.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "CPU kernels of the keisei_fused_se operators", -1, nullptr,
      nullptr,               nullptr, nullptr,                                       nullptr};
  return PyModule_Create(&module_def);
}
