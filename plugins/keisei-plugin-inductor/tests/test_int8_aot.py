"""int8-aot: the quantized graph as an AOTInductor package on disk. A second process loads
it instead of building (the report's notes say so and the build counter stays 0), a
corrupt or partial package is rebuilt with one warning and never loaded, and new weights
or other calibration positions get another key.

The package is built once per module (a fixture in its own cache folder, whose build
replaces a damaged entry). The fast tests drive the sidecar logic with a stand-in loader
and builder: clean cold starts, truncated packages, missing or junk sidecars.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from keisei_plugin_inductor.int8_package import Int8Package
from keisei_plugin_inductor.package_cache import PackageEntry, check_entry, load_or_build
from keisei_plugin_inductor.quantize import QuantizeSettings, has_int8_dot_product, quantize_int8
from torch import nn

from keisei_core.compile import compile_model, forward_wrappers
from keisei_core.observations import make_observations
from keisei_core.specs import StrategyContext

from .conftest import restower_available
from .test_int8 import SHAPE, TINY_INT8, sharpened

PLUGIN_ROOT = Path(__file__).resolve().parents[1]


def _package(model: nn.Module) -> Int8Package:
    for wrapper in forward_wrappers(model):
        if isinstance(wrapper, functools.partial) and isinstance(wrapper.keywords.get("program"), Int8Package):
            return wrapper.keywords["program"]
    raise AssertionError("no int8 package on the model")


def _context(cache: Path) -> StrategyContext:
    return StrategyContext(example_obs=make_observations(2, *SHAPE[:2], seed=3), cache_dir=cache, composition=("int8-aot",))


@attrs.frozen
class Built:
    cache: Path
    eager: nn.Module
    model: nn.Module
    notes: dict[str, Any]
    warnings: tuple[str, ...]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """One real build, and it is the rebuild of a damaged entry: the cache already holds,
    under the key, a package cut short by a crash (its bytes are junk and no sidecar
    vouches for them). A build is a minute of this suite's time, so the cold start and
    the corrupt-entry rebuild share it; the fast tests cover a clean cold start."""
    if not restower_available():
        pytest.skip("keisei-plugin-restower is not installed")
    cache = tmp_path_factory.mktemp("int8-aot-cache")
    eager = sharpened()
    context = _context(cache)
    key = Int8Package(context, QuantizeSettings()).key(eager)
    damaged = PackageEntry.for_key(context, "int8-aot", key)
    damaged.package.write_bytes(b"PK\x03\x04 half a package")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = quantize_int8(copy.deepcopy(eager), context, aot=True)
    mine = tuple(str(w.message) for w in caught if "int8-aot" in str(w.message))
    return Built(cache, eager, model, dict(context.notes), mine)


# -- fast: the sidecar ----------------------------------------------------------------------
class _Loader:
    """Stands in for aoti_load_package: records what it is asked to load."""

    def __init__(self) -> None:
        self.loaded: list[bytes] = []

    def __call__(self, path: str) -> str:
        self.loaded.append(Path(path).read_bytes())
        return f"runner({path})"


def _builder(content: bytes, calls: list[Path]) -> Any:
    def build(temporary: Path) -> None:
        calls.append(temporary)
        temporary.write_bytes(content)

    return build


def test_the_sidecar_vouches_for_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loader = _Loader()
    monkeypatch.setattr(torch._inductor, "aoti_load_package", loader)
    entry = PackageEntry(tmp_path / "k.pt2", tmp_path / "k.json")
    assert check_entry(entry, "k") == "absent"
    calls: list[Path] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a cold start is not worth a warning
        _, reused, verdict = load_or_build(entry, "k", _builder(b"package", calls), {"why": "test"}, label="t")
    assert (reused, verdict, len(calls)) == (False, "absent", 1)
    meta = json.loads(entry.sidecar.read_text())
    assert meta["key"] == "k" and meta["bytes"] == 7 and meta["why"] == "test"
    assert check_entry(entry, "k") == "ok" and "another key" in check_entry(entry, "other")
    _, reused, verdict = load_or_build(entry, "k", _builder(b"never", calls), {}, label="t")
    assert (reused, verdict, len(calls)) == (True, "ok", 1) and loader.loaded[-1] == b"package"


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ("truncate", "does not match its recorded SHA-256"),
        ("no sidecar", "has no sidecar"),
        ("junk sidecar", "sidecar k.json unreadable"),
    ],
)
def test_a_damaged_entry_is_rebuilt_with_one_warning_and_never_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str, why: str
) -> None:
    loader = _Loader()
    monkeypatch.setattr(torch._inductor, "aoti_load_package", loader)
    entry = PackageEntry(tmp_path / "k.pt2", tmp_path / "k.json")
    calls: list[Path] = []
    load_or_build(entry, "k", _builder(b"good package", calls), {}, label="int8-aot")
    if damage == "truncate":
        entry.package.write_bytes(b"good")
    elif damage == "no sidecar":
        entry.sidecar.unlink()
    else:
        entry.sidecar.write_text("{not json")
    loader.loaded.clear()
    with pytest.warns(UserWarning, match=why) as caught:
        _, reused, verdict = load_or_build(entry, "k", _builder(b"rebuilt package", calls), {}, label="int8-aot")
    assert len(caught) == 1 and str(entry.package) in str(caught[0].message)
    assert not reused and why in verdict and len(calls) == 2
    assert loader.loaded == [b"rebuilt package"]  # the damaged bytes were never loaded
    assert check_entry(entry, "k") == "ok"


def test_a_package_the_loader_rejects_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = PackageEntry(tmp_path / "k.pt2", tmp_path / "k.json")
    calls: list[Path] = []
    monkeypatch.setattr(torch._inductor, "aoti_load_package", lambda path: path)
    load_or_build(entry, "k", _builder(b"v1", calls), {}, label="t")

    def picky(path: str) -> str:
        if len(calls) < 2:
            raise RuntimeError("bad archive")
        return path

    monkeypatch.setattr(torch._inductor, "aoti_load_package", picky)
    with pytest.warns(UserWarning, match="aoti_load_package rejected it"):
        _, reused, _ = load_or_build(entry, "k", _builder(b"v2", calls), {}, label="t")
    assert not reused and len(calls) == 2


def test_the_key_names_weights_calibration_and_bits(tmp_path: Path) -> None:
    if not restower_available():
        pytest.skip("keisei-plugin-restower is not installed")
    context = _context(tmp_path)
    model = sharpened()
    base = Int8Package(context, QuantizeSettings()).key(model)
    assert Int8Package(context, QuantizeSettings()).key(sharpened()) == base  # same weights: same key
    assert Int8Package(context, QuantizeSettings()).key(sharpened(seed=1)) != base
    other = make_observations(64, *SHAPE[:2], seed=41)
    assert Int8Package(context, QuantizeSettings(calibration=other)).key(model) != base
    assert Int8Package(context, QuantizeSettings(activation_bits=7)).key(model) != base
    assert Int8Package(attrs.evolve(context, composition=("channels-last", "int8-aot")), QuantizeSettings()).key(model) != base


# -- slow: the real package -----------------------------------------------------------------
WARM = textwrap.dedent(
    """
    import copy, json, sys
    import torch
    from keisei_core.specs import StrategyContext
    from keisei_core.observations import make_observations
    from keisei_plugin_inductor.quantize import quantize_int8
    from tests.test_int8 import SHAPE, sharpened
    cache, out = sys.argv[1], sys.argv[2]
    context = StrategyContext(example_obs=make_observations(2, *SHAPE[:2], seed=3), cache_dir=cache,
                              composition=("int8-aot",))
    model = quantize_int8(sharpened(), context, aot=True)
    program = [w for w in model.keisei_forward_wrappers if "program" in getattr(w, "keywords", {})][0].keywords["program"]
    obs = make_observations(5, *SHAPE[:2], seed=12)
    with torch.no_grad():
        torch.save(model(obs), out)
    print(json.dumps({"notes": context.notes, "builds": program.builds}))
    """
)


@pytest.mark.slow
def test_a_second_process_loads_the_package_instead_of_building(built: Built, tmp_path: Path) -> None:
    out = tmp_path / "outputs.pt"
    done = subprocess.run(
        [sys.executable, "-c", WARM, str(built.cache), str(out)],
        cwd=PLUGIN_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    warm = json.loads(done.stdout.strip().splitlines()[-1])
    assert warm["builds"] == 0, warm
    assert warm["notes"]["warm_start"] is True and warm["notes"]["int8_cache"] == "hit", warm
    assert warm["notes"]["int8_package"] == built.notes["int8_package"]
    obs = make_observations(5, *SHAPE[:2], seed=12)
    with torch.no_grad():
        here = built.model(obs)
    for mine, theirs in zip(here, torch.load(out, weights_only=True), strict=True):
        assert torch.equal(mine, theirs)  # the same package: the same bytes out


@pytest.mark.slow
def test_a_damaged_package_is_rebuilt_with_one_warning_not_loaded(built: Built) -> None:
    package = Path(built.notes["int8_package"])
    assert len(built.warnings) == 1 and "has no sidecar" in built.warnings[0], built.warnings
    assert str(package) in built.warnings[0]
    assert built.notes["warm_start"] is False and "has no sidecar" in built.notes["int8_cache"]
    assert _package(built.model).builds == 1
    assert check_entry(PackageEntry(package, package.with_suffix(".json")), package.stem) == "ok"
    assert package.stat().st_size > 10_000  # the real package replaced the junk


@pytest.mark.slow
def test_new_weights_find_their_own_package(built: Built) -> None:
    model = copy.deepcopy(built.model)
    program, original = _package(model), _package(built.model)
    assert program.runner is original.runner  # a copy shares the loaded package
    path = program.path
    model.load_state_dict(built.eager.state_dict())  # the same weights: the same key
    with torch.no_grad():
        model(make_observations(2, *SHAPE[:2], seed=1))
    assert program.builds == original.builds and program.reused and program.path == path
    assert not original.stale


@pytest.mark.slow
def test_int8_aot_is_validated_at_the_policy_level(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    """compile_model on the built cache: loads the package, runs the policy checks."""
    monkeypatch.setenv("KEISEI_CACHE_DIR", str(built.cache))
    eager = sharpened()
    model, report = compile_model(eager, "int8-aot", batch_sizes=(1, 8), policy_thresholds=TINY_INT8)
    assert report.warm_start is True and report.notes["int8_cache"] == "hit", report.notes
    assert report.precision == "int8" and report.checks == () and len(report.policy_checks) == 16
    if has_int8_dot_product():
        assert report.status == "compiled", report.summary()
        assert list(model.state_dict()) == list(eager.state_dict())
    else:  # saturating u8 x s8 sums (see has_int8_dot_product): the checks must catch it
        assert report.status == "fallback" and model is eager, report.summary()
        assert "policy checks miss the int8 thresholds" in (report.reason or "")
