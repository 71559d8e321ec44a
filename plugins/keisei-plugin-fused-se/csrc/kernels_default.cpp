// The fused SE kernels built for the DEFAULT instruction set (setup.py gives this file its
// -m flags; fused_se.cpp picks a table at run time from at::native::get_cpu_capability()).
#define CPU_CAPABILITY DEFAULT
#define CPU_CAPABILITY_DEFAULT

#include "kernels_impl.h"

namespace keisei_fused_se {
namespace DEFAULT {

const KernelTable& kernel_table() {
  static const KernelTable table{&forward_dispatch, &backward_dispatch, "default"};
  return table;
}

}  // namespace DEFAULT
}  // namespace keisei_fused_se
