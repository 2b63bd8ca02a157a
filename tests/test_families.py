"""Network families: each kind of network described once (fip.models.families), so a new one is one registration."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from fip.errors import FipError
from fip.models import BilateralGridNet, ContextAggregationNet, GuidedCAN
from fip.models import families as families_module
from fip.models.cards import Approximator
from fip.models.catalogue import card_for_network, network_approximators, open_model
from fip.models.families import NetworkFamily, family_for, family_of, register_family
from fip.models.storage import NetworkFile, load_network, net_config, save_network
from fip.runtime.plan import make_plan


@pytest.mark.parametrize(
    ("net", "name", "offered"),
    [
        (ContextAggregationNet(width=8, depth=4), "can", ["full", "fast", "bf16", "network-lowres"]),
        (GuidedCAN(width=8, depth=4), "guided", ["lowres"]),
        (BilateralGridNet(lowres=32, grid_size=4, depth=4, width=4), "grid", ["grid"]),
    ],
)
def test_each_family_round_trips_its_networks_and_offers_its_approximators(tmp_path, net, name, offered):
    config = net_config(net)
    assert family_of(net).name == family_for(config).name == name
    loaded = load_network(save_network(NetworkFile(net, "t", "smooth.l0"), tmp_path / "n.pt")).net
    assert type(loaded) is type(net) and net_config(loaded) == config
    for key, value in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert [a.name for a in network_approximators(net)] == offered


class _Posterize(nn.Module):
    """A toy family: a per-pixel 1x1 convolution."""

    def __init__(self, in_channels: int = 3, levels: int = 4):
        super().__init__()
        self.in_channels, self.levels = in_channels, levels
        self.mix = nn.Conv2d(in_channels, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x)


def test_a_new_family_is_one_registration(tmp_path, monkeypatch):
    monkeypatch.setattr(families_module, "_FAMILIES", dict(families_module._FAMILIES))  # undone after the test
    with pytest.raises(FipError, match="is not a network fip knows; its families: can"):
        family_of(_Posterize())
    register_family(
        NetworkFamily(
            "posterize",
            _Posterize,
            lambda net: {"in_channels": net.in_channels, "posterize": {"levels": net.levels}},
            lambda config: _Posterize(config["in_channels"], **config["posterize"]),
            lambda net: [Approximator("toy", "net", "fp32", description="one 1x1 convolution")],
            lambda approximator, architecture: 9.0,
        )
    )
    net = _Posterize(levels=6)
    path = save_network(NetworkFile(net, "t", "smooth.l0"), tmp_path / "toy.pt")
    loaded = load_network(path)
    assert isinstance(loaded.net, _Posterize) and loaded.net.levels == 6
    card = card_for_network(dataclasses.replace(loaded, name=str(path)))
    assert list(card.approximators) == ["toy", "reference-lowres"]
    plan = make_plan(open_model(path), "toy", (64, 96), "cpu")  # the engine plans it with the family's models
    assert plan.approximator == "toy" and plan.tile is None
