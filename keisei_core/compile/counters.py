"""Process-wide torch compile counters, read as differences over one compile_model run.

TorchDynamo counts every graph it compiles (``stats.unique_graphs``) and Inductor counts
hits and misses of its on-disk FX graph cache, AOTAutograd those of its own cache. The
counters are global, so a run reads them before and after; compile_model runs one
strategy at a time in its thread, which keeps the differences its own.
"""

from __future__ import annotations

import attrs

# (counter group, counter name) -> the name the report uses
CACHE_COUNTERS: dict[tuple[str, str], str] = {
    ("inductor", "fxgraph_cache_hit"): "fxgraph_cache_hit",
    ("inductor", "fxgraph_cache_miss"): "fxgraph_cache_miss",
    ("aot_autograd", "autograd_cache_hit"): "autograd_cache_hit",
    ("aot_autograd", "autograd_cache_miss"): "autograd_cache_miss",
}


@attrs.frozen
class CounterSnapshot:
    graphs: int
    cache: dict[str, int]

    @classmethod
    def take(cls) -> CounterSnapshot:
        from torch._dynamo.utils import counters

        cache = {name: int(counters[group][key]) for (group, key), name in CACHE_COUNTERS.items()}
        return cls(int(counters["stats"]["unique_graphs"]), cache)

    def since(self, earlier: CounterSnapshot) -> CounterSnapshot:
        return CounterSnapshot(
            self.graphs - earlier.graphs,
            {k: v - earlier.cache.get(k, 0) for k, v in self.cache.items()},
        )


def warm_from_cache(cache: dict[str, int]) -> bool | None:
    """True when Inductor's code came from the on-disk caches only, False when Inductor
    generated code afresh, None when no cache was consulted (nothing went to Inductor).

    An AOTAutograd hit skips Inductor entirely; an AOTAutograd miss still reuses Inductor's
    code on an FX graph cache hit, so only FX graph cache misses count as cold.
    """
    hits = cache.get("fxgraph_cache_hit", 0) + cache.get("autograd_cache_hit", 0)
    misses = cache.get("fxgraph_cache_miss", 0)
    if hits == 0 and misses == 0:
        return None
    return misses == 0
