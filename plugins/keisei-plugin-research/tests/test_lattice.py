"""The cell lattice: neighbourhoods, and information moving one cell per step."""

from __future__ import annotations

import pytest
import torch
from keisei_plugin_research.lattice import neighbour_index, neighbour_offsets

from keisei_core.api import build_model
from keisei_core.observations import make_observations


@pytest.mark.parametrize(("neighbourhood", "count"), [(6, 6), (18, 18), (26, 26)])
def test_neighbourhoods(neighbourhood: int, count: int) -> None:
    offsets = neighbour_offsets(neighbourhood)
    assert offsets[0] == (0, 0, 0) and len(offsets) == count + 1 and len(set(offsets)) == count + 1
    index = neighbour_index(3, 9, neighbourhood)
    cells = 3 * 81
    centre = (1 * 9 + 4) * 9 + 4
    assert int((index[centre] < cells).sum()) == count + 1  # an inner cell has them all
    corner = index[0]
    expected_inside = {6: 3, 18: 6, 26: 7}[neighbourhood]
    assert int((corner[1:] < cells).sum()) == expected_inside


def _output_states(model: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """Every cell's state after all steps, as ``(depth, 9, 9, batch, width)``."""
    captured: list[torch.Tensor] = []
    handle = model.cells.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        model(obs)
    finally:
        handle.remove()
    state = captured[-1]
    return state.view(-1, 9, 9, *state.shape[1:])


def test_information_moves_one_cell_per_step() -> None:
    # depth 2, 6-neighbourhood, 2 steps: a change on the surface at square (4, 4) reaches
    # the output layer's cell (4, 4) and, one step later, its in-layer neighbours only.
    torch.manual_seed(0)
    model = build_model("cell-lattice", depth=2, cell_width=8, steps=2, neighbourhood=6).eval()
    obs = make_observations(1, seed=1)
    changed = obs.clone()
    changed[0, :, 4, 4] = 1.0 - changed[0, :, 4, 4]
    with torch.no_grad():
        difference = (_output_states(model, obs) - _output_states(model, changed)).abs().amax(dim=(-1, -2))
    touched = {(z, y, x) for z, y, x in torch.nonzero(difference > 0).tolist()}
    output_layer = {(y, x) for z, y, x in touched if z == 1}
    assert output_layer == {(4, 4), (3, 4), (5, 4), (4, 3), (4, 5)}


def test_gradients_with_a_26_neighbourhood_and_more_steps() -> None:
    torch.manual_seed(0)
    model = build_model("cell-lattice", depth=2, cell_width=8, steps=3, neighbourhood=26, num_actions=50)
    logits, value = model(make_observations(2))
    (logits.square().mean() + value.square().mean()).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())


@pytest.mark.parametrize("neighbourhood", [6, 26])
def test_neighbour_mix_matches_a_gather_and_its_gradients_check(neighbourhood: int) -> None:
    from keisei_plugin_research.lattice import LatticeCells, NeighbourMix

    cells = LatticeCells(depth=2, board_size=3, width=4, expansion=1, neighbourhood=neighbourhood).double()
    gate = torch.randn(cells.cells, 2, 4, dtype=torch.float64, requires_grad=True)
    weights = (torch.randn_like(cells.spatial_weight) * cells.inside).requires_grad_(True)
    index = neighbour_index(2, 3, neighbourhood)
    padded = torch.cat([gate, gate.new_zeros(1, 2, 4)])
    reference = (padded[index] * weights.unsqueeze(2)).sum(dim=1)
    torch.testing.assert_close(NeighbourMix.apply(gate, weights, cells.shifts), reference)
    assert torch.autograd.gradcheck(lambda g, w: NeighbourMix.apply(g, w, cells.shifts), (gate, weights))
