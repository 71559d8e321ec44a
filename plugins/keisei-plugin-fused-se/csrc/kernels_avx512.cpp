// The fused SE kernels built for the AVX512 instruction set (setup.py gives this file its
// -m flags; fused_se.cpp picks a table at run time from at::native::get_cpu_capability()).
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512

#include "kernels_impl.h"

namespace keisei_fused_se {
namespace AVX512 {

const KernelTable& kernel_table() {
  static const KernelTable table{&forward_dispatch, &backward_dispatch, "avx512"};
  return table;
}

}  // namespace AVX512
}  // namespace keisei_fused_se
