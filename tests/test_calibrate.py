"""Calibration: auto timed on this machine where a card has no timings for its class, cached, and timed again when
the key changes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import fip
from fip.cli import main
from fip.models.cards import write_card
from fip.models.catalogue import Model, model_for_operator
from fip.runtime import calibrate
from fip.runtime.engine import make_plan


@pytest.fixture
def timed_here(monkeypatch, tmp_path):
    """A cache of this test's own, calibration on, this CPU treated as cpu-bf16 (which the shipped cards have no timings for), a tiny frame, and
    a counter of calibrations."""
    monkeypatch.setenv("FIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FIP_CALIBRATE", "1")
    monkeypatch.setenv("FIP_DEVICE_CLASS", "cpu-bf16")
    monkeypatch.setattr(calibrate, "CALIBRATION_SIZE", (48, 80))
    calls = []
    real = calibrate.calibrate_model
    monkeypatch.setattr(calibrate, "calibrate_model", lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    return calls


def _small_card():
    """smooth.rof's card with its reference-based approximators only (no network to load), timed on cpu only."""
    card = model_for_operator("smooth.rof").card
    kept = {n: a for n, a in card.approximators.items() if n.startswith("reference-")}
    return replace(card, name="test/rof-small", networks={}, approximators=kept)


def test_auto_times_a_class_without_timings_once_and_reads_the_cache_after(timed_here, caplog):
    card = _small_card()
    caplog.set_level("INFO", logger="fip.runtime.calibrate")
    plan = make_plan(Model(card), "auto", (1080, 1920), "cpu")
    assert timed_here == ["test/rof-small"] and plan.timings_class == "cpu-bf16"
    assert "on cpu-bf16" in plan.reason and {pick.timed_size for pick in plan.choices} == {"80x48"}
    assert (
        "timing test/rof-small on this machine once (class cpu-bf16, which its card has no timings for)" in caplog.text
    )
    cached = json.loads(calibrate.cache_path(card, "cpu-bf16").read_text())
    assert set(cached["seconds"]) == {"reference-lowres", "reference-halfres"} and cached["reference"] > 0
    assert cached["key"]["fip"] == fip.__version__ and cached["key"]["device_class"] == "cpu-bf16"
    make_plan(Model(card), "auto", (1080, 1920), "cpu")  # a new process's model: the cache, not a new timing
    assert timed_here == ["test/rof-small"]


def test_a_new_key_times_again_and_a_timed_class_or_off_times_nothing(timed_here, monkeypatch):
    card = _small_card()
    make_plan(Model(card), "auto", (1080, 1920), "cpu")
    monkeypatch.setattr(fip, "__version__", "99.0")  # another fip (or torch, or card, or machine)
    make_plan(Model(card), "auto", (1080, 1920), "cpu")
    changed = replace(card, description="another model")
    make_plan(Model(changed), "auto", (1080, 1920), "cpu")
    assert len(timed_here) == 3
    make_plan(Model(changed), "reference-lowres", (1080, 1920), "cpu")  # by name: nothing to rank
    monkeypatch.setenv("FIP_DEVICE_CLASS", "cpu")  # the card's own class: its timings
    assert make_plan(Model(replace(card, name="test/other")), "auto", (1080, 1920), "cpu").timings_class == "cpu"
    monkeypatch.setenv("FIP_DEVICE_CLASS", "cpu-bf16")
    monkeypatch.setenv("FIP_CALIBRATE", "0")  # off: the other CPU class's timings, as before
    assert make_plan(Model(replace(card, name="test/off")), "auto", (1080, 1920), "cpu").timings_class == "cpu"
    assert len(timed_here) == 3


def test_fip_models_calibrate_times_up_front_and_auto_uses_it(timed_here, tmp_path, capsys):
    card = _small_card()
    folder = tmp_path / "model"
    write_card(replace(card, root=None), folder)
    assert main(["models", "--calibrate", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "test/rof-small on cpu (class cpu-bf16)" in out and "reference-halfres" in out and "auto: quality ->" in out
    assert len(timed_here) == 1
    plan = make_plan(Model(replace(card, root=folder)), "auto", (1080, 1920), "cpu")
    assert plan.timings_class == "cpu-bf16" and len(timed_here) == 1  # read from the cache
    # Up front, also where the card has timings for the class: this machine's own then rank auto's choice.
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("FIP_DEVICE_CLASS", "cpu")
    try:
        assert main(["models", "--calibrate", str(folder)]) == 0 and len(timed_here) == 2
        plan = make_plan(Model(replace(card, root=folder)), "auto", (1080, 1920), "cpu")
        assert {pick.timed_size for pick in plan.choices} == {"80x48"}  # this machine's, not the card's 1920x1080
    finally:
        monkeypatch.undo()


def test_measuring_a_cards_timings_times_nothing_before_them(timed_here, tmp_path):
    """fip build times its approximators through the bench: a calibration first would time them twice."""
    from conftest import smooth_image

    from fip.imaging import encode_png
    from fip.measure import speed

    (tmp_path / "photo.png").write_bytes(encode_png(smooth_image(48, 80), bits=8))
    timings, reference = speed(
        Model(_small_card()), tmp_path / "photo.png", ["reference-lowres"], "cpu", runs=1, size=(48, 80)
    )
    assert set(timings) == {"reference-lowres"} and reference.seconds > 0
    assert timed_here == []
