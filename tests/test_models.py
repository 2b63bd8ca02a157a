"""The context aggregation network, its adaptive normalization and the authors' released weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import require_reference

from fip.imaging import read_image_file
from fip.models import AdaptiveNorm, ContextAggregationNet, NormMode, can24, can32, load_paper_model
from fip.models.paper import paper_model_names


def test_presets_match_the_paper():
    assert can24().dilations == [1, 2, 4, 8, 16, 32, 64, 1]
    assert can32().dilations == [1, 2, 4, 8, 16, 32, 64, 128, 1]
    net = can24()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 9 and all(c.bias is None for c in convs[:-1]) and convs[-1].kernel_size == (1, 1)
    assert sum(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.2 for m in net.modules()) == 8
    assert net.receptive_field == 1 + 2 * (127 + 1)


def test_identity_initialization_and_norm_start():
    net = ContextAggregationNet(in_channels=3, width=8, depth=4)
    first = net.features[0].weight
    assert first[:3, :3, 1, 1].equal(torch.eye(3)) and first.abs().sum() == 3
    norm = net.features[1]
    assert norm.lam.item() == 1.0 and norm.mu.item() == 0.0
    # With lambda = 1, mu = 0 and identity convolutions, the features pass the (non-negative) input through.
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(net.features(x)[:, :3], x)


def test_without_a_shift_the_network_only_scales_with_exposure():
    # With every mu at 0 the paper's convolutions have no bias and LeakyReLU is positively homogeneous, so the
    # network is f(x) = H(x) + b with H(k x) = k H(x): halving the exposure halves the output (up to the output
    # bias), and no tone curve can be learned. mu * BN(x) (its shift beta, its scale-free normalization) or a
    # convolution bias (conv_bias=True) breaks that.
    def departure(conv_bias: bool, mu: float) -> float:
        torch.manual_seed(0)
        net = ContextAggregationNet(in_channels=3, width=8, depth=4, conv_bias=conv_bias)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.3 * torch.randn_like(p))
            for norm in [m for m in net.modules() if isinstance(m, AdaptiveNorm)]:
                norm.mu.fill_(mu)
            x, bias = torch.rand(1, 3, 24, 24), net.output.bias.view(1, -1, 1, 1)
            return float((net(0.5 * x) - bias - 0.5 * (net(x) - bias)).abs().mean())

    assert departure(conv_bias=False, mu=0.0) < 1e-6
    assert departure(conv_bias=False, mu=0.3) > 1e-3
    assert departure(conv_bias=True, mu=0.0) > 1e-3


def test_image_statistics_make_each_image_independent_of_its_batch():
    torch.manual_seed(0)
    norm = AdaptiveNorm(4, NormMode.IMAGE)
    with torch.no_grad():
        norm.mu.fill_(1.0), norm.lam.fill_(0.5), norm.beta.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    a, b = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8) * 5 + 3
    together = norm(torch.cat([a, b]))
    assert torch.allclose(together[:1], norm(a), atol=1e-6) and torch.allclose(together[1:], norm(b), atol=1e-5)
    # Hand-checked value: BN(x) = (x - mean) / sqrt(var + 1e-3) + beta, per image and channel.
    x = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 2, 2)
    single = AdaptiveNorm(1)
    with torch.no_grad():
        single.mu.fill_(1.0), single.lam.fill_(0.0)
    expected = (x - 1.5) / np.sqrt(1.25 + 1e-3)
    assert torch.allclose(single(x), expected, atol=1e-6)
    norm.eval()  # the paper's semantics hold at test time too
    assert torch.allclose(norm(a), together[:1], atol=1e-6)


def test_running_mode_uses_running_statistics_at_test_time():
    norm = AdaptiveNorm(2, NormMode.RUNNING, momentum=1.0)
    with torch.no_grad():
        norm.mu.fill_(1.0), norm.lam.fill_(0.0)
    x = torch.randn(4, 2, 8, 8) * 3 + 1
    norm.train()(x)
    assert torch.allclose(norm.running_mean, x.mean(dim=(0, 2, 3)), atol=1e-5)
    y = torch.randn(1, 2, 8, 8)
    expected = (y - norm.running_mean.view(1, -1, 1, 1)) / torch.sqrt(norm.running_var.view(1, -1, 1, 1) + 1e-3)
    assert torch.allclose(norm.eval()(y), expected, atol=1e-5)


@pytest.mark.parametrize("name", paper_model_names())
def test_every_paper_model_loads(name):
    model = load_paper_model(name)
    x = torch.rand(1, model.in_channels, 24, 20)
    assert model(x).shape == (1, 3, 24, 20)


def test_unknown_paper_model_lists_the_names():
    with pytest.raises(KeyError, match="paper/L0_smoothing"):
        load_paper_model("paper/nope")


@pytest.mark.slow
def test_paper_l0_reproduces_the_authors_results():
    """Within one 8-bit level per pixel of what the authors' own code wrote (clip, x255, truncate)."""
    reference = require_reference()
    model = load_paper_model("paper/L0_smoothing")
    for path in sorted((reference / "fivek-1080p" / "input").glob("*.png")):
        image = torch.from_numpy(read_image_file(path)).permute(2, 0, 1)[None]
        with torch.no_grad():
            out = model(image)[0].permute(1, 2, 0).numpy()
        ours = np.floor(np.clip(out, 0, 1) * 255)
        theirs = np.round(read_image_file(reference / "fivek-1080p" / "l0-official" / path.name) * 255)
        assert np.abs(ours - theirs).max() <= 1, path.name


def _randomized(net: ContextAggregationNet) -> ContextAggregationNet:
    torch.manual_seed(1)
    for module in net.modules():
        if isinstance(module, AdaptiveNorm):
            torch.nn.init.uniform_(module.lam, 0.5, 1.5)
            torch.nn.init.uniform_(module.mu, 0.5, 1.0)
            torch.nn.init.uniform_(module.beta, -0.2, 0.2)
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
        if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
            torch.nn.init.uniform_(module.bias, -0.3, 0.3)
    return net.eval()


@pytest.mark.parametrize("conv_bias", [False, True])
def test_running_statistics_fold_into_the_convolutions(conv_bias):
    from fip.models.can import FoldedCAN, fold

    net = _randomized(ContextAggregationNet(in_channels=4, width=8, depth=6, norm="running", conv_bias=conv_bias))
    folded = fold(net)
    assert isinstance(folded, FoldedCAN)
    assert not any(isinstance(m, AdaptiveNorm) for m in folded.modules())
    assert all(m.bias is not None for m in folded.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.rand(2, 4, 33, 47)
    with torch.no_grad():
        assert torch.allclose(folded(x), net(x), atol=1e-5)
    assert sum(p.numel() for p in folded.parameters()) < sum(p.numel() for p in net.parameters()) + 8 * 5


@pytest.mark.parametrize("conv_bias", [False, True])
def test_per_image_statistics_fold_for_one_image_only(conv_bias):
    from fip.errors import InputError
    from fip.models.can import fold, image_statistics

    net = _randomized(ContextAggregationNet(width=8, depth=6, conv_bias=conv_bias))
    first, second = torch.rand(1, 3, 40, 40), torch.rand(1, 3, 40, 40) * 0.5
    with pytest.raises(InputError, match="per-image statistics"):
        fold(net)
    net = net.double()  # float64: exact up to rounding (a random net amplifies float32 rounding by ~1e4)
    first, second = first.double(), second.double()
    folded = fold(net, image_statistics(net, first))
    with torch.no_grad():
        assert torch.allclose(folded(first), net(first), atol=1e-9)
        assert not torch.allclose(folded(second), net(second), atol=1e-3)  # another image's statistics differ


@pytest.mark.parametrize("conv_bias", [False, True])
def test_crops_normalized_in_context_match_inference_on_the_whole_photo(conv_bias):
    """Training on crops with their photos' statistics computes exactly what inference computes for those pixels
    (``fold`` with the photo's statistics), and the gradient reaches the weights through the statistics."""
    from fip.errors import InputError
    from fip.models.can import fold, image_statistics

    net = _randomized(ContextAggregationNet(width=8, depth=5, conv_bias=conv_bias)).double()
    photos = [torch.rand(1, 3, 30, 44, dtype=torch.float64), torch.rand(1, 3, 26, 26, dtype=torch.float64) * 0.4]
    crops = torch.cat([photos[0][..., 5:21, 10:26], photos[1][..., :16, 8:24]])
    in_context = net.forward_in_context(crops, photos)
    with torch.no_grad():
        for index, photo in enumerate(photos):
            expected = fold(net, image_statistics(net, photo))(crops[index : index + 1])
            assert torch.allclose(in_context[index : index + 1], expected, atol=1e-9)
        assert torch.allclose(net.forward_in_context(photos[0], [photos[0][0]]), net(photos[0]), atol=1e-9)
        assert not torch.allclose(in_context[:1], net(crops[:1]), atol=1e-3)  # the crop's own statistics differ
    # Only through the statistics does the context touch the loss: its gradient is non-zero.
    context = photos[1].clone().requires_grad_(True)
    net.forward_in_context(crops[1:], [context]).square().mean().backward()
    assert context.grad.abs().sum() > 0
    with pytest.raises(InputError, match="2 contexts for a batch of 1"):
        net.forward_in_context(crops[:1], photos)
    # Crops of one photo given the same tensor share one pass over it, and get what separate copies get.
    passes = []
    net.features[0].register_forward_hook(lambda module, args, out: passes.append(args[0].shape[0]))
    two = torch.cat([crops[:1], photos[0][..., 1:17, 2:18]])
    with torch.no_grad():
        shared = net.forward_in_context(two, [photos[0], photos[0]])
        assert passes == [2, 1]  # the crops, then the photo once
        assert torch.allclose(shared, net.forward_in_context(two, [photos[0], photos[0].clone()]), atol=1e-12)
        assert passes[2:] == [2, 1, 1]
    running = ContextAggregationNet(width=8, depth=4, norm="running").eval()  # its statistics are not the image's
    assert torch.equal(running.forward_in_context(crops.float(), [p.float() for p in photos]), running(crops.float()))


def test_conditioning_maps_and_their_errors():
    from fip.conditioning import OneHot, Sweep, from_json, make_conditioning
    from fip.errors import ParameterError

    assert make_conditioning("smooth.l0") is None
    hot = make_conditioning(["smooth.l0", "smooth.rof", "style.pencil"])
    assert hot.maps("smooth.rof") == (0.0, 1.0, 0.0) and hot.channels == 3
    assert [t.maps for t in hot.tasks()] == [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    linear = Sweep("style.stylize", "sigma_r", (0.1, 0.5))
    assert not linear.logarithmic and linear.maps("style.stylize", {"sigma_r": 0.2}) == pytest.approx((0.25,))
    assert from_json(hot.to_json()) == hot and from_json(linear.to_json()) == linear and from_json(None) is None
    for bad, message in (
        (lambda: OneHot(("smooth.l0",)), "two or more distinct operators"),
        (lambda: Sweep("tone.mapping", "global_operator", ("a", "b")), "only numeric parameters"),
        (lambda: Sweep("smooth.l0", "lambda_", (0.02, 0.02)), "two or more distinct values"),
        (lambda: Sweep("smooth.l0", "lambda_", (0.02, 5.0)), "outside its range"),
        (
            lambda: make_conditioning(["smooth.l0", "smooth.rof"], {"param": "lambda_", "values": [0.01, 0.1]}),
            "one operator",
        ),
        (lambda: make_conditioning("smooth.l0", {"values": [0.01, 0.1]}), "sweep must be"),
        (lambda: linear.maps("style.stylize", {"sigma_r": 0.9}), r"covers sigma_r in \[0.1, 0.5\]"),
    ):
        with pytest.raises(ParameterError, match=message):
            bad()


def test_the_combined_network_answers_for_each_of_its_operators():
    from fip.models.catalogue import open_model

    combined = open_model("paper/combined")
    assert combined.network("net").in_channels == 13 and combined.conditioning.channels == 10
    assert combined.maps("smooth.l0") == tuple(1.0 if i == 4 else 0.0 for i in range(10))  # L0 is map 4


def test_a_combined_networks_map_bakes_into_first_layer_biases():
    from fip.models.paper import COMBINED_ORDER, bake_onehot

    torch.manual_seed(0)
    combined = ContextAggregationNet(in_channels=13, width=8, depth=4, norm="running").eval()  # dilations 1, 2, 4, 1
    with torch.no_grad():
        for p in combined.parameters():
            p.add_(0.1 * torch.randn_like(p))
    index = COMBINED_ORDER.index("Pencil_drawing")
    baked = bake_onehot(combined, "Pencil_drawing")
    assert baked.in_channels == 3 and baked.conv_bias and baked.width == 8
    x = torch.rand(1, 3, 40, 40)
    onehot = torch.zeros(1, 10, 40, 40)
    onehot[:, index] = 1.0
    with torch.no_grad():
        want, got = combined(torch.cat([x, onehot], 1)), baked(x)
    radius = 1 + 1 + 2 + 4 + 1  # the border pixels cut the map's kernel; their effect spreads this far
    assert torch.allclose(
        got[..., radius:-radius, radius:-radius], want[..., radius:-radius, radius:-radius], atol=1e-5
    )
    assert not torch.allclose(got, want, atol=1e-3)  # the docstring's caveat: the border differs
    with pytest.raises(ValueError, match="13 input channels"):
        bake_onehot(ContextAggregationNet(in_channels=3, width=8, depth=4), "Pencil_drawing")


def test_detail_manipulation_is_the_combined_network_with_its_map():
    from fip.models.paper import paper_network_for
    from fip.models.storage import load_network

    assert paper_network_for("detail.multiscale") == "paper/Detail_manipulation"
    model = load_network("paper/Detail_manipulation")
    assert model.operator == "detail.multiscale" and model.net.in_channels == 3 and model.net.width == 32
    assert load_network("paper/combined:Pencil_drawing").operator == "style.pencil"
    x = torch.rand(1, 3, 24, 24)
    assert torch.equal(model.net(x), load_network("paper/combined:Detail_manipulation").net(x))
