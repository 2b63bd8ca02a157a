"""The engine: plans (auto's rule, devices, sizes, memory), the one forward path, tiling, and reference-lowres."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import run_net, smooth_image

from fip.errors import FipError, InputError
from fip.metrics import psnr
from fip.models import ContextAggregationNet
from fip.models.can import fold
from fip.models.cards import Approximator, ModelCard, NetworkEntry, PhotoSet, Quality, Timing
from fip.models.catalogue import Model, model_for_operator, open_model
from fip.models.storage import NetworkFile, load_network
from fip.pipeline import run_approximation
from fip.registry import get_operator
from fip.runtime.devices import DeviceError, available_memory, device_class, dtype_for, resolve_device
from fip.runtime.execute import Views, forward_halo_tiles, forward_layer_tiles, run_plan, to_image
from fip.runtime.plan import (
    AUTO_GOOD_ENOUGH_DB,
    PlanError,
    Preference,
    PreferenceError,
    choose,
    make_plan,
    preset_picks,
)

pytestmark = pytest.mark.device_class  # bf16 paths and auto follow the CPU class: CI runs these as both


def _busy(norm: str = "image", conv_bias: bool = False) -> ContextAggregationNet:
    torch.manual_seed(0)
    net = ContextAggregationNet(width=8, depth=6, norm=norm, conv_bias=conv_bias).eval()
    for module in net.modules():  # non-trivial normalization, so per-tile statistics would show
        if hasattr(module, "mu"):
            torch.nn.init.uniform_(module.mu, 0.5, 1.0)
            torch.nn.init.uniform_(module.beta, -0.2, 0.2)
        if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    return net


@pytest.mark.parametrize("conv_bias", [False, True])
def test_tiled_forward_equals_the_whole_image_pass(conv_bias):
    net = _busy(conv_bias=conv_bias)
    x = torch.rand(1, 3, 45, 71)
    with torch.no_grad():
        whole = net(x)
        assert torch.allclose(forward_layer_tiles(net, x, tile=16), whole, atol=1e-5)
    with pytest.raises(FipError, match="one image at a time"):
        forward_layer_tiles(net, torch.rand(2, 3, 8, 8))


def test_folded_tiles_with_a_receptive_halo_equal_the_whole_image_pass():
    folded = fold(_busy("running"))
    assert folded.receptive_radius == 1 + 2 + 4 + 8 + 1
    x = torch.rand(1, 3, 70, 95)
    with torch.no_grad():
        assert torch.allclose(forward_halo_tiles(folded, x, tile=24), folded(x), atol=1e-5)
    image = smooth_image(70, 95)  # running statistics fold exactly: every precision-free approximator agrees
    assert np.abs(run_net(_busy("running"), image, "bf16") - run_net(_busy("running"), image, "full")).max() < 1e-5


def test_network_approximators_approximate_the_paper_exact_pass():
    net = load_network("paper/L0_smoothing").net
    image = smooth_image(240, 320)
    exact = run_net(net, image, "full")
    for request, floor in (("fast", 40.0), ("bf16", 40.0), ("network-lowres", 28.0)):
        out = run_net(net, image, request)
        assert out.shape == image.shape and out.dtype == np.float32
        assert psnr(out, exact) > floor, request
        assert not np.array_equal(out, exact), request  # really took the approximate path
    tiled = run_net(net, image, "fast", tile=64)
    assert np.abs(tiled - run_net(net, image, "fast")).max() < 1e-5
    assert np.abs(run_net(net, image, "full", tile=64) - exact).max() < 1e-5
    assert net.features[0].weight.dtype == torch.float32  # the caller's network is left alone


def test_inference_leaves_the_callers_network_trainable():
    net = ContextAggregationNet(width=8, depth=5)
    for request in ("full", "fast", "bf16", "network-lowres"):
        run_net(net, smooth_image(60, 90), request)
    assert not any(p.is_inference() for p in net.parameters())
    assert all(p.dtype == torch.float32 for p in net.parameters())
    net.train()
    net(torch.rand(2, 3, 16, 16)).sum().backward()  # still trains
    assert net.features[0].weight.grad is not None


def test_concurrent_requests_on_one_model_do_not_mix():
    from concurrent.futures import ThreadPoolExecutor

    model = open_model("paper/L0_smoothing")
    image = smooth_image(60, 80)
    expected = {r: run_approximation(model, image, request=r).image for r in ("full", "fast")}
    with ThreadPoolExecutor(4) as pool:
        jobs = [
            (r, pool.submit(lambda r=r: run_approximation(model, image, request=r).image)) for r in ("full", "fast") * 4
        ]
        for request, job in jobs:
            assert np.array_equal(job.result(), expected[request]), request


def _card(**quality_and_seconds: tuple[float, float | None]) -> ModelCard:
    """A card whose approximators (named as the keys) scored ``psnr`` on validation and took ``seconds`` on cpu."""
    approximators = {}
    for name, (score, seconds) in quality_and_seconds.items():
        network = None if name.startswith("reference") else "net"
        approximators[name] = Approximator(
            name,
            network,
            scale=1 / 3 if network is None else None,
            upsampler=None
            if network
            else replace(model_for_operator("smooth.l0").card.approximators["reference-lowres"]).upsampler,
            statistics=("image" if name == "full" else "preview") if network else None,
            quality={"validation": Quality(score, 0.9, 7), "fivek": Quality(score + 5, 0.9, 4)},
            seconds={"cpu": Timing(seconds)} if seconds is not None else {},
        )
    return ModelCard(
        "test/m",
        "smooth.l0",
        {},
        {"net": NetworkEntry("net.pt")},
        approximators,
        {"validation": PhotoSet("choose"), "fivek": PhotoSet("report")},
    )


def test_auto_is_the_fastest_within_half_a_db_of_the_best_or_at_least_40_db_on_validation_photos():
    pick = lambda card, **kw: choose(card, "cpu", **kw)[0].name  # noqa: E731
    assert pick(_card(full=(30.0, 5.0), fast=(30.2, 1.5), lowres=(29.8, 0.2))) == "lowres"
    assert pick(_card(full=(30.0, 5.0), fast=(30.2, 1.5), lowres=(29.6, 0.2))) == "fast"  # 0.6 under the best
    assert pick(_card(full=(54.0, 5.0), lowres=(41.0, 0.2))) == "lowres"  # far under the best, but over 40 dB
    assert pick(_card(full=(54.0, 5.0), lowres=(39.0, 0.2))) == "full"
    assert pick(_card(full=(30.0, 5.0), lowres=(30.0, 0.2)), excluded={"lowres": "no VNNI"}) == "full"
    # The report set never steers it: the FiveK scores here are 5 dB higher and would not change the pick.
    card = _card(full=(30.0, 5.0), fast=(29.0, 1.0))
    assert pick(card) == "full"
    card = card.with_approximator(replace(card.approximators["fast"], quality={"fivek": Quality(40.0)}))
    assert pick(card) == "full"  # measured on validation photos only counts
    # Unmeasured: the default, fast; an approximator without timings on this class ranks by the other CPU class's.
    assert choose(_card(full=(30.0, 5.0)), "cpu-bf16")[1].startswith(
        "prefer balanced: fastest on cpu (none measured on cpu-bf16)"
    )
    bare = replace(
        _card(full=(30.0, None)),
        approximators={
            n: replace(a, quality={}) for n, a in _card(full=(30.0, None), fast=(30.0, None)).approximators.items()
        },
    )
    assert choose(bare, "cpu")[0].name == "fast" and "no approximator" in choose(bare, "cpu")[1]
    assert AUTO_GOOD_ENOUGH_DB == 40.0
    # The reference itself, where it was measured faster than every approximator within the bar: exact and quicker.
    slow = replace(
        _card(full=(30.0, 5.0), fast=(30.2, 1.5), lowres=(25.0, 0.2)), reference_seconds={"cpu": Timing(1.0)}
    )
    chosen, reason = choose(slow, "cpu")
    assert chosen.name == "reference" and reason.startswith("prefer balanced: the reference itself: 1.000 s on cpu")
    assert pick(replace(slow, reference_seconds={"cpu": Timing(2.0)})) == "fast"
    # A GPU class without timings: the network approximator of fewest multiply-adds, never the CPU's reference.
    on_gpu = _card(full=(30.0, 5.0), fast=(30.2, 1.5), reference_halfres=(30.4, 0.1))
    chosen, reason = choose(on_gpu, "cuda")
    assert chosen.name == "fast" and reason.startswith(
        "prefer balanced: no timings on cuda: the network approximator of fewest"
    )


def test_each_preset_is_the_fastest_over_its_own_bar_and_never_slower_than_the_reference():
    def pick(card, prefer="balanced", min_psnr=None):
        return choose(card, "cpu", preference=Preference(prefer, min_psnr))[0].name

    card = _card(full=(34.0, 5.0), fast=(33.95, 1.5), lowres=(33.2, 0.3), reference_lowres=(30.0, 0.05))
    assert pick(card, "quality") == "fast"  # within 0.1 dB of the best: a tie, so the faster
    assert pick(card, "balanced") == "fast"  # lowres is 0.8 dB under the best
    assert pick(card, "speed") == "lowres"  # the fastest at 32 dB or more
    assert pick(card, "speed", 29.0) == "reference_lowres"  # a floor replaces speed's 32 dB
    assert pick(card, "quality", 33.0) == "fast" and pick(card, "balanced", 33.96) == "full"  # a floor leaves out
    assert pick(card, "quality", 35.0) == "reference"  # nothing reaches the floor: the reference itself, exact
    reason = choose(card, "cpu", preference=Preference("quality", 35.0))[1]
    assert reason == (
        "prefer quality, at least 35 dB: the reference itself, exact: no approximator reaches 35 dB "
        "(the best, full, 34.00 dB) on validation photos"
    )
    assert choose(card, "cpu", preference=Preference("speed"))[1].startswith(
        "prefer speed: fastest on cpu: 0.300 s at 1920x1080, among approximators scoring at least 32 dB"
    )
    low = _card(full=(28.0, 5.0), fast=(27.5, 1.5), lowres=(25.0, 0.3))
    assert pick(low, "speed") == "full"  # none reaches 32 dB: the best
    # Never slower than the reference, whatever the preset.
    quick = replace(card, reference_seconds={"cpu": Timing(1.0)})
    assert [pick(quick, p) for p in ("quality", "balanced", "speed")] == ["reference", "reference", "lowres"]
    picks = preset_picks(quick, "cpu")
    assert [(p.prefer, p.approximator, p.seconds, p.psnr) for p in picks] == [
        ("quality", "reference", 1.0, None),
        ("balanced", "reference", 1.0, None),
        ("speed", "lowres", 0.3, 33.2),
    ]
    assert picks[0].text() == (
        "quality: reference (1.000 s on cpu, exact): no approximator within quality's quality bar is faster"
    )
    assert picks[2].text() == "speed: lowres (0.300 s on cpu, 33.20 dB)"
    # Unmeasured approximators cannot be shown to reach a floor.
    bare = replace(card, approximators={n: replace(a, quality={}) for n, a in card.approximators.items()})
    assert pick(bare, "speed", 30.0) == "reference" and pick(bare, "speed") == "fast"


def test_a_preference_names_what_is_wrong_with_it():
    assert Preference.of(None) == Preference() and Preference.of(" Speed ", "31.5") == Preference("speed", 31.5)
    with pytest.raises(PreferenceError, match=r"^prefer 'fastest' is not a preset: choose quality, balanced or speed"):
        Preference.of("fastest")
    for bad in ("-3", "abc", "nan", "0", True):
        with pytest.raises(PreferenceError, match=r"^min PSNR .* is not a PSNR: give a number of dB above 0"):
            Preference.of("speed", bad)
    model = model_for_operator("smooth.rof")
    with pytest.raises(PlanError, match="a preference \\(speed\\) steers auto; 'fast' is asked for by name"):
        make_plan(model, "fast", (1080, 1920), "cpu", preference=Preference("speed"))
    plan = make_plan(model, "auto", (1080, 1920), "cpu", preference=Preference("speed", 36))
    assert plan.preference == "speed, at least 36 dB" and [c.prefer for c in plan.choices] == [
        "quality",
        "balanced",
        "speed",
    ]
    assert "request:      auto (prefer speed, at least 36 dB)" in plan.explain()
    assert "choices:      quality: " in plan.explain() and plan.to_json()["choices"][2]["prefer"] == "speed"


def test_the_reference_itself_is_a_plan_every_model_offers():
    model = model_for_operator("smooth.rof")
    image = smooth_image(60, 80)
    result = run_approximation(model, image, request="reference")
    assert result.plan.approximator == "reference" and result.plan.working_size is None
    np.testing.assert_allclose(result.image, get_operator("smooth.rof").apply(image), atol=1e-6)


def test_plans_say_what_runs_where_and_why():
    model = model_for_operator("smooth.l0")
    plan = make_plan(model, "auto", (1080, 1920), "cpu")
    assert plan.request == "auto" and plan.approximator in model.card.approximators and plan.device == "cpu"
    assert plan.device_class == device_class(torch.device("cpu")) and plan.reason
    text = plan.explain()
    for fact in ("model:        fip/smooth.l0", "approximator:", "why:", "device:       cpu", "precision:", "tiling:"):
        assert fact in text
    assert plan.to_json()["size"] == [1080, 1920]
    low = make_plan(model, "reference-lowres", (1080, 1920), "cpu")
    assert low.working_size == (360, 640) and low.upsampler.startswith("colour-guided filter")
    huge = make_plan(model, "reference-lowres", (6000, 9000), "cpu")
    assert huge.working_size[0] * huge.working_size[1] <= 2.0e6  # capped: the reference's cost stops growing
    with pytest.raises(FipError, match="has no approximator 'int4'; it has: full, fast"):
        make_plan(model, "int4", (100, 100), "cpu")
    with pytest.raises(InputError, match="at least 2x2"):
        make_plan(model, "auto", (1, 5), "cpu")
    with pytest.raises(PlanError, match="approximates smooth.l0, not smooth.rof"):
        make_plan(model, "auto", (10, 10), "cpu", operator="smooth.rof")


def test_other_parameters_leave_the_networks_out_and_auto_runs_the_reference_at_low_resolution():
    model = model_for_operator("smooth.l0")
    plan = make_plan(model, "auto", (600, 900), "cpu", params={"lambda_": 0.05})
    assert plan.approximator.startswith("reference") and "serves lambda_=0.02 only" in plan.reason
    assert "the networks were trained for lambda_=0.02" in plan.notes[0]
    with pytest.raises(PlanError, match="'fast' cannot serve this request: its network serves lambda_=0.02 only"):
        make_plan(model, "fast", (600, 900), "cpu", params={"lambda_": 0.05})
    image = smooth_image(120, 160)
    result = run_approximation(model, image, {"lambda_": 0.05})
    assert result.note.startswith("the networks were trained for lambda_=0.02;")
    reference = get_operator("smooth.l0").apply(image, {"lambda_": 0.05})
    assert psnr(result.image, reference) > 25


@pytest.mark.parametrize("size", [(2, 2), (3, 3), (5, 7)])
def test_tiny_photos_run_every_approximator_at_full_size(size):
    model = model_for_operator("smooth.l0")
    image = smooth_image(*size, edge=False)
    reference = get_operator("smooth.l0").apply(image)
    for name in model.card.approximators:
        try:
            result = run_approximation(model, image, request=name)
        except PlanError:  # int8 where this CPU cannot run it faithfully
            continue
        assert result.image.shape == image.shape and result.plan.working_size is None, name
        if name.startswith("reference-"):
            np.testing.assert_allclose(result.image, reference, atol=1e-6)  # the reference itself, exactly
    # At full size network-lowres is the bf16 approximator: the same network, statistics and precision...
    lowres = run_approximation(model, image, request="network-lowres")
    np.testing.assert_allclose(lowres.image, run_approximation(model, image, request="bf16").image, atol=1e-6)
    # ...and fast's float32 result, within bfloat16's 8 bits of mantissa where the CPU runs bfloat16 (cpu-bf16).
    atol = 1e-6 if lowres.plan.precision == "float32" else 0.02
    np.testing.assert_allclose(lowres.image, run_approximation(model, image, request="fast").image, atol=atol)


def test_reference_lowres_approximates_any_operator_a_plugins_too(photo_folder):
    from fip.models.catalogue import reference_card
    from fip.registry import Param, register_operator

    @register_operator("blur.box_test", description="a box blur", params=[Param("radius", 3, low=1, high=20)])
    def box(image, *, radius):
        import cv2

        return cv2.blur(image, (2 * radius + 1, 2 * radius + 1))

    model = model_for_operator("blur.box_test")  # no model ships: reference-lowres alone
    assert model.name == "reference/blur.box_test" and list(model.card.approximators) == ["reference-lowres"]
    image = smooth_image(180, 240)
    result = run_approximation(model, image)
    assert result.plan.approximator == "reference-lowres" and result.plan.working_size == (60, 80)
    assert psnr(result.image, box.apply(image)) > 30
    # Raw and linear operators get their own view at low resolution (here a DNG's mosaic, binned).
    from fip.pipeline import open_input

    views = open_input(photo_folder / "first.dng").views
    plan = make_plan(model_for_operator("raw.demosaic_denoise"), "reference-lowres", views.size, "cpu")
    out = to_image(run_plan(plan, model_for_operator("raw.demosaic_denoise"), views))
    assert out.shape == (*views.size, 3) and psnr(out, to_image(views.srgb)) > 20
    with pytest.raises(FipError, match="unknown operator 'blur.nothing'"):
        reference_card("blur.nothing")


def test_the_reference_at_low_resolution_scales_the_operators_lengths_with_the_photo():
    """A length in pixels (a blur radius) covers the same part of the scene at a third of the size, so the result
    approximates the full-size one far better than the same number of small pixels would."""
    from fip.registry import Param, register_operator

    radii = []

    def blur(image, *, radius):
        import cv2

        radii.append(radius)
        return cv2.blur(image, (2 * radius + 1, 2 * radius + 1))

    as_length = register_operator(
        "blur.length_test", description="a box blur", params=[Param("radius", 9, low=1, high=30, length=True)]
    )(blur)
    as_number = register_operator(
        "blur.number_test", description="the same blur", params=[Param("radius", 9, low=1, high=30)]
    )(blur)
    image = np.random.default_rng(0).random((360, 480, 3), dtype=np.float32)
    image = as_length.apply(image, {"radius": 2})  # texture a few pixels wide, which the blur removes
    scaled = run_approximation(model_for_operator(as_length.name), image).image
    assert radii[-1] == 3  # 9 pixels at a third of the size
    unscaled = run_approximation(model_for_operator(as_number.name), image).image
    assert radii[-1] == 9
    target = as_length.apply(image)
    assert psnr(scaled, target) > psnr(unscaled, target) + 3


def test_memory_decides_the_tiles_and_says_when_nothing_fits():
    model = model_for_operator("smooth.l0")
    roomy = make_plan(model, "fast", (800, 1000), "cpu", memory_budget=1 << 40)
    tight = make_plan(model, "fast", (800, 1000), "cpu", memory_budget=100 << 20)
    assert roomy.tile is None and tight.tile is not None and tight.estimated_megabytes < roomy.estimated_megabytes
    image = smooth_image(800, 1000)
    views = Views.of_array(image)
    np.testing.assert_allclose(
        to_image(run_plan(tight, model, views)), to_image(run_plan(roomy, model, views)), atol=1e-5
    )
    with pytest.raises(PlanError, match=r"needs about .* GB for 'full'.*--max-megapixels"):
        make_plan(model, "full", (8000, 12000), "cpu", memory_budget=8 << 30)
    assert make_plan(model, "fast", (8000, 12000), "cpu", memory_budget=4 << 30).tile is not None  # 96 MP: tiled
    with pytest.raises(PlanError, match="96 MP photo alone needs about 2.1 GB .* --max-megapixels"):
        make_plan(model, "fast", (8000, 12000), "cpu", memory_budget=1 << 30)


def test_memory_limits_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("FIP_MEMORY_LIMIT", "512M")
    assert available_memory(torch.device("cpu")) <= 512 << 20
    monkeypatch.setenv("FIP_MEMORY_LIMIT", "lots")
    with pytest.raises(FipError, match="FIP_MEMORY_LIMIT='LOTS' is not a size"):
        available_memory(torch.device("cpu"))


def test_running_out_of_memory_says_what_to_do(monkeypatch):
    model = model_for_operator("smooth.l0")

    def exhausted(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9663676416 bytes")

    monkeypatch.setattr("fip.runtime.execute.run_can", exhausted)
    with pytest.raises(FipError, match="ran out of memory running 'fast'.*--tile 512.*--max-megapixels"):
        run_approximation(model, smooth_image(40, 60), request="fast")


def test_devices_are_checked_and_bf16_follows_the_hardware():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="'warp' is not a device"):
        resolve_device("warp")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available here"):
            resolve_device("cuda")
    cpu = torch.device("cpu")
    assert dtype_for("bf16", cpu) == (torch.bfloat16 if device_class(cpu) == "cpu-bf16" else torch.float32)
    with pytest.raises(DeviceError, match="fp16 runs on GPUs"):
        dtype_for("fp16", cpu)


def test_the_cpu_class_can_be_forced_and_bf16_follows_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv("FIP_DEVICE_CLASS", "cpu-bf16")
    assert device_class(cpu) == "cpu-bf16" and dtype_for("bf16", cpu) == torch.bfloat16
    monkeypatch.setenv("FIP_DEVICE_CLASS", "CPU ")
    assert device_class(cpu) == "cpu" and dtype_for("bf16", cpu) == torch.float32
    monkeypatch.setenv("FIP_DEVICE_CLASS", "cuda")
    with pytest.raises(DeviceError, match="FIP_DEVICE_CLASS='cuda' is not a CPU class; set it to cpu or cpu-bf16"):
        device_class(cpu)


def test_on_cpu_bf16_auto_runs_its_pick_in_the_precision_its_timings_measured(monkeypatch):
    monkeypatch.setenv("FIP_DEVICE_CLASS", "cpu-bf16")
    card = _card(full=(30.0, 5.0), fast=(30.2, 1.5))
    card = card.with_approximator(replace(card.approximators["fast"], precision="bf16"))
    plan = make_plan(Model(card), "auto", (1080, 1920), "cpu")  # timed on cpu only, where bf16 runs in float32
    assert plan.approximator == "fast" and plan.precision == "float32" and plan.timings_class == "cpu"
    assert "ranked it by timings of class cpu, where it ran in float32" in plan.notes[0]
    assert "device:       cpu (class cpu-bf16, which has no timings: ranked by those of class cpu)" in plan.explain()
    assert "none measured on cpu-bf16" in plan.reason
    assert make_plan(Model(card), "fast", (1080, 1920), "cpu").precision == "bfloat16"  # by name: native bfloat16
    timed_here = card.with_approximator(replace(card.approximators["fast"], seconds={"cpu-bf16": Timing(1.0)}))
    plan = make_plan(Model(timed_here), "auto", (1080, 1920), "cpu")
    assert plan.precision == "bfloat16" and not plan.notes and "(class cpu-bf16)" in plan.explain()


def test_auto_runs_the_reference_on_photos_within_the_networks_context():
    for operator, size in (("smooth.rof", (2, 2)), ("smooth.rof", (128, 100)), ("smooth.rtv", (3, 3))):
        model = model_for_operator(operator)  # auto picks a network here at 1080p: lowres, bf16
        assert make_plan(model, "auto", (1080, 1920), "cpu").approximator in ("lowres", "bf16")
        image = smooth_image(*size, edge=False)
        result = run_approximation(model, image)
        assert result.plan.approximator == "reference" and "within the context of" in result.plan.reason, size
        np.testing.assert_allclose(result.image, get_operator(operator).apply(image), atol=1e-6)
    assert make_plan(model, "auto", (129, 100), "cpu").approximator != "reference"
    assert make_plan(model, "fast", (3, 3), "cpu").approximator == "fast"  # asked for by name: it runs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_engine_on_cuda_matches_the_cpu():
    model = model_for_operator("smooth.l0")
    image = smooth_image(180, 240)
    for name in ("full", "fast", "network-lowres", "reference-lowres"):
        cpu = run_approximation(model, image, request=name, device="cpu").image
        gpu = run_approximation(model, image, request=name, device="cuda")
        assert gpu.plan.device.startswith("cuda") and psnr(gpu.image, cpu) > 40, name
    auto = run_approximation(model, image, device="cuda")
    assert auto.plan.device_class == "cuda"


def test_views_of_a_photo_match_the_arrays_the_networks_take():
    image = smooth_image(41, 57)  # odd: the sRGB stays whole, the photo's views are cropped to even sides
    views = Views.of_array(image)
    assert views.size == (41, 57) and views.photo().size == (40, 56)
    assert np.array_equal(to_image(views.srgb), image)
    with pytest.raises(InputError, match=r"\(1, 3, H, W\)"):
        Views(torch.rand(3, 4, 4))
    plan = make_plan(open_model("paper/L0_smoothing"), "fast", (40, 40), "cpu")
    with pytest.raises(InputError, match="the plan is for a 40x40 photo"):
        run_plan(plan, open_model("paper/L0_smoothing"), views)


def test_a_model_of_one_network_file_has_the_network_approximators(tmp_path):
    from fip.models.storage import save_network

    path = save_network(NetworkFile(_busy(), "busy", "smooth.rof"), tmp_path / "busy.pt")
    model = open_model(path)
    assert list(model.card.approximators) == ["full", "fast", "bf16", "network-lowres", "reference-lowres"]
    assert make_plan(model, "auto", (100, 100), "cpu").approximator == "fast"  # nothing measured: the default
    assert model.operator == "smooth.rof" and model.card.root == tmp_path


@pytest.mark.parametrize("operator", ["smooth.rof", "tone.mapping", "raw.demosaic_denoise"])
def test_the_reference_at_low_resolution_resizes_only_the_views_it_needs(operator, monkeypatch):
    """An sRGB photo's small views are made straight from the sRGB image, and equal those of the full Photo."""
    from fip.models.cards import Upsampler
    from fip.raw import photo_from_srgb
    from fip.runtime import execute

    image = smooth_image(121, 163, seed=3)  # odd sides: the even crop is the Photo's
    params = get_operator(operator).resolve_params({})
    upsampler, size, cpu = Upsampler("colour-guided", radius=1, eps=1e-4), (40, 54), torch.device("cpu")
    made = []
    monkeypatch.setattr(execute, "photo_from_srgb", lambda *a, **k: made.append(1) or photo_from_srgb(*a, **k))
    fast = execute.reference_lowres(operator, params, Views.of_array(image), upsampler, size, None, cpu)
    assert made == ([1] if operator == "raw.demosaic_denoise" else [])  # only the mosaic needs the whole Photo
    full = execute.reference_lowres(
        operator, params, Views(execute.to_batch(image), lambda: photo_from_srgb(image)), upsampler, size, None, cpu
    )
    assert torch.equal(fast, full)
