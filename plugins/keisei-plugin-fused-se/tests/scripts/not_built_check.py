"""As if the C++ library was never built: the op and the strategy raise one clear error."""

import sys

sys.modules["keisei_plugin_fused_se._C"] = None  # makes `import keisei_plugin_fused_se._C` fail

import torch  # noqa: E402
from keisei_plugin_fused_se.errors import KernelNotBuiltError  # noqa: E402
from keisei_plugin_fused_se.ops import cpu_kernels_available, se_unit  # noqa: E402
from keisei_plugin_fused_se.strategy import apply_fused_se  # noqa: E402
from keisei_plugin_fused_se.testing import make_inputs  # noqa: E402

from keisei_core.specs import StrategyContext  # noqa: E402

assert not cpu_kernels_available()
attempts = (
    lambda: se_unit(*make_inputs(1, 4, 5, 5, 2, False), False),
    lambda: apply_fused_se(torch.nn.Identity(), StrategyContext(device="cpu")),
)
for attempt in attempts:
    try:
        attempt()
    except KernelNotBuiltError as exc:
        print(exc)
    else:
        raise SystemExit("no KernelNotBuiltError")
