"""Builds the CPU kernel of keisei_fused_se (keisei_plugin_fused_se._C).

The per-sample kernels (csrc/kernels_impl.h) are compiled once per x86 instruction set,
each translation unit with its own -m flags, the way PyTorch builds its CPU kernels; the
library picks one at run time from torch's CPU capability. Nothing is built with
-march=native, so a library built on one machine runs on any machine torch runs on.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

CSRC = "csrc"
X86 = sys.platform != "win32" and platform.machine().lower() in {"x86_64", "amd64"}

# The flags torch's inductor uses for the same capabilities (torch/_inductor/cpu_vec_isa.py).
ISA_FLAGS: dict[str, list[str]] = {
    "kernels_avx2.cpp": ["-mavx2", "-mfma", "-mf16c"],
    "kernels_avx512.cpp": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma"],
}

# Default-flag objects come first so that the linker keeps their copies of inline
# functions shared with the ISA-specific objects.
# at::parallel_for is a header template whose OpenMP build is a `#pragma omp parallel`:
# without -fopenmp the pragma is dropped and the kernels run on one thread (the library
# once shipped that way; torch.ops.keisei_fused_se.cpu_parallel_threads() and its test
# catch it now). The linked libgomp.so.1 is the one torch already loaded (same soname),
# so the kernels share torch's thread pool and torch.set_num_threads.
OPENMP = ["-fopenmp"] if sys.platform.startswith("linux") else []

SOURCES = ["fused_se.cpp", "buffer_pool.cpp", "kernels_default.cpp"]
if X86:
    SOURCES += ["kernels_avx2.cpp", "kernels_avx512.cpp"]


class BuildWithISAFlags(BuildExtension):
    """torch's BuildExtension plus per-source flags for the ISA-specific kernel files."""

    def build_extension(self, ext: Any) -> None:
        compile_one = self.compiler._compile

        def compile_with_isa_flags(obj, src, ext_, cc_args, extra_postargs, pp_opts):  # type: ignore[no-untyped-def]
            flags = ISA_FLAGS.get(os.path.basename(src), [])
            if isinstance(extra_postargs, dict):
                extra_postargs = {**extra_postargs, "cxx": [*extra_postargs.get("cxx", []), *flags]}
            else:
                extra_postargs = [*extra_postargs, *flags]
            return compile_one(obj, src, ext_, cc_args, extra_postargs, pp_opts)

        self.compiler._compile = compile_with_isa_flags
        try:
            super().build_extension(ext)
        finally:
            self.compiler._compile = compile_one


setup(
    ext_modules=[
        CppExtension(
            "keisei_plugin_fused_se._C",
            sources=[os.path.join(CSRC, name) for name in SOURCES],
            # torch's headers carry CUDA unroll pragmas, 32-byte vector ABI notes, and GCC 12's
            # AVX512 intrinsic headers a known false maybe-uninitialized warning: noise here.
            extra_compile_args=["-O3", "-g0", "-Wno-unknown-pragmas", "-Wno-psabi", "-Wno-maybe-uninitialized", *OPENMP, *(["-DKEISEI_FUSED_SE_X86_KERNELS"] if X86 else [])],
            extra_link_args=OPENMP,
            depends=[os.path.join(CSRC, name) for name in ("buffer_pool.h", "kernels.h", "kernels_impl.h", "transpose.h")],
        )
    ],
    # Per-source flags need the one-file-at-a-time compile path (ninja takes one flag set).
    cmdclass={"build_ext": BuildWithISAFlags.with_options(use_ninja=False)},
)
