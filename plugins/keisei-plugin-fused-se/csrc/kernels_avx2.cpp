// The fused SE kernels built for the AVX2 instruction set (setup.py gives this file its
// -m flags; fused_se.cpp picks a table at run time from at::native::get_cpu_capability()).
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2

#include "kernels_impl.h"

namespace keisei_fused_se {
namespace AVX2 {

const KernelTable& kernel_table() {
  static const KernelTable table{&forward_dispatch, &backward_dispatch, "avx2"};
  return table;
}

}  // namespace AVX2
}  // namespace keisei_fused_se
