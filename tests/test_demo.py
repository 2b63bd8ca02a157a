"""The Gradio demo, built but not launched: layout, parameter widgets, handlers, bad uploads."""

from __future__ import annotations

import math
import os

import gradio as gr
import numpy as np
import pytest
from conftest import declared_png, smooth_image, write_synthetic_dng

from fip.imaging import encode_png, read_image_file
from fip.models.catalogue import model_for_operator
from fip.registry import get_operator, list_operators
from fip_demo.app import PARAM_SLOTS, Editor, _slider_step, build_app, collect_params


def default_values(editor: Editor, operator: str) -> list:
    """The flat widget values the browser sends right after choosing ``operator``."""
    *updates, approximators, shown_for = editor.operator_changed(operator)
    assert shown_for == operator and approximators["value"] == "auto"
    return [update.get("value") for update in updates]


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "odd size.png"
    path.write_bytes(encode_png(smooth_image(45, 61), bits=8))
    return path


def test_app_offers_every_registered_operator_and_variant(photo):
    app = build_app(examples={"example": photo})
    assert isinstance(app, gr.Blocks)
    by_id = {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}
    for elem_id in (
        "upload",
        "example",
        "operator",
        "variant",
        "compare",
        "run",
        "full",
        "status",
        "policy",
        "input-image",
        "compare-slider",
        "result",
        "reference",
        "download",
    ):
        assert elem_id in by_id, elem_id
    offered = [value for _, value in by_id["operator"].choices]
    assert offered == [spec.name for spec in list_operators()]
    first = list_operators()[0].name
    card = model_for_operator(first).card
    assert [value for _, value in by_id["variant"].choices] == ["auto", *card.approximators]
    assert [value for _, value in by_id["example"].choices] == ["example"]
    assert "150 MP" in by_id["policy"].value  # the large-photo policy is stated in the UI


def test_choosing_an_operator_shows_one_widget_per_parameter():
    editor = Editor()
    *updates, approximators, shown_for = editor.operator_changed("tone.mapping")
    assert len(updates) == 4 * PARAM_SLOTS and shown_for == "tone.mapping"
    offered = [value for _, value in approximators["choices"]]
    assert offered == ["auto", *model_for_operator("tone.mapping").card.approximators]
    shown = [(index, update) for index, update in enumerate(updates) if update.get("visible")]
    spec = get_operator("tone.mapping")
    assert len(shown) == len(spec.params)
    kinds = {update["label"].split(" — ")[0]: index % 4 for index, update in shown}
    assert kinds == {"compression": 0, "detail": 0, "saturation": 0, "global_operator": 2}  # sliders, a dropdown
    choice = next(update for _, update in shown if "choices" in update)
    assert choice["choices"] == ["reinhard", "drago", "mantiuk", "none"]
    values = [update.get("value") for update in updates]
    assert collect_params(spec, values) == spec.resolve_params()


def test_slider_steps_land_on_every_default():
    for spec in list_operators():
        for param in spec.params:
            decimal = param.type is float and round(param.default, 6) == param.default  # 1/30 never lands
            if decimal and param.low is not None and param.high is not None:
                steps = (param.default - param.low) / _slider_step(param)
                assert math.isclose(steps, round(steps), abs_tol=1e-6), (spec.name, param.name)


def test_editor_runs_the_approximation_the_reference_and_a_full_resolution_render(photo, tmp_path, monkeypatch):
    editor = Editor(preview_megapixels=0.001, scratch=tmp_path / "scratch")
    preview, path, status = editor.load(str(photo))
    assert path == str(photo) and "Loaded" in status and "61×45" in status and "preview" in status
    assert preview.dtype == np.uint8 and preview.shape[0] * preview.shape[1] <= 1000
    values = default_values(editor, "smooth.rof")

    pair, approx, reference, status = editor.run(
        path, "smooth.rof", "smooth.rof", "fast", "balanced", None, False, *values
    )
    assert reference is None and approx.shape == preview.shape and "Approximation** (fast)" in status
    assert np.array_equal(pair[0], preview) and np.array_equal(pair[1], approx)  # before = the input
    assert (
        "Approximation** (auto → "
        in editor.run(path, "smooth.rof", "smooth.rof", "auto", "balanced", None, False, *values)[3]
    )
    status = editor.run(path, "smooth.rof", "smooth.rof", "int8", "balanced", None, False, *values)[3]
    assert "has no approximator 'int8'" in status and "Error" in status  # only some operators ship a pruned model

    pair, approx, reference, status = editor.run(
        path, "smooth.rof", "smooth.rof", "full", "balanced", None, True, *values
    )
    assert reference.shape == approx.shape and np.array_equal(pair[0], reference)
    assert "**Reference**" in status and "speed-up" in status and "dB PSNR" in status

    values[0] = 0.2  # weight: the networks were trained at the default, so auto runs the reference at low resolution
    _, _, _, status = editor.run(path, "smooth.rof", "smooth.rof", "auto", "balanced", None, True, *values)
    assert "auto → reference" in status and "the networks were trained for weight=0.05" in status
    _, _, _, status = editor.run(path, "smooth.rof", "smooth.rof", "fast", "balanced", None, True, *values)
    assert "Error" in status and "its network serves weight=0.05 only" in status

    output, status = editor.render_full(path, "smooth.rof", "smooth.rof", "auto", "balanced", None, *values)
    assert read_image_file(output).shape == (45, 61, 3)  # the original size, odd included
    assert "Full resolution 61×45" in status and "(reference" in status
    # Clicked before the widgets caught up with a new operator: a message, not the old operator's values.
    assert "still loading" in editor.run(path, "smooth.l0", "smooth.rof", "fast", "balanced", None, False, *values)[3]
    assert "still loading" in editor.render_full(path, "smooth.l0", "smooth.rof", "fast", "balanced", None, *values)[1]


def test_auto_runs_as_preferred_and_says_in_words_why_it_runs_the_reference(photo, tmp_path):
    editor = Editor(preview_megapixels=0.001, scratch=tmp_path / "scratch")
    _, path, _ = editor.load(str(photo))
    values = default_values(editor, "smooth.l0")

    def status(prefer, min_psnr=None, compare=False):
        return editor.run(path, "smooth.l0", "smooth.l0", "auto", prefer, min_psnr, compare, *values)[3]

    speed = status("speed")
    assert "(auto → reference-lowres, prefer speed)" in speed  # the untrained reference at a third: 35.9 dB
    choices = next(line for line in speed.splitlines() if line.startswith("Auto's choices: "))
    assert "quality → reference-halfres (" in choices and " dB) · balanced → " in choices
    assert (
        "speed → reference-lowres (" in choices and "(seconds at 1920x1080 on cpu; dB on validation photos)" in choices
    )
    exact = status("quality", 99, compare=True)  # nothing reaches 99 dB: the reference itself, said in words
    assert "(auto → reference, prefer quality, at least 99 dB)" in exact
    assert "Auto runs the reference itself: no approximator reaches 99 dB (the best, reference-halfres, " in exact
    assert (
        "the approximation is the reference itself: exact" in exact and "inf" not in exact and "speed-up" not in exact
    )
    assert "prefer 'fastest' is not a preset" in status("fastest") and "**Error:**" in status("fastest")
    assert "min PSNR -3.0 is not a PSNR" in status(
        "speed", -3.0
    ) and "(auto → reference-lowres, prefer speed)" in status("speed", 0)  # 0: none
    assert "(fast)" in editor.run(path, "smooth.l0", "smooth.l0", "fast", "speed", None, False, *values)[3]  # by name
    assert "(reference-lowres)" in editor.render_full(path, "smooth.l0", "smooth.l0", "auto", "speed", None, *values)[1]


def test_raw_uploads_open_through_rawpy(tmp_path):
    write_synthetic_dng(tmp_path / "shot.dng", smooth_image(40, 60))
    editor = Editor(scratch=tmp_path / "scratch")
    preview, path, status = editor.load(str(tmp_path / "shot.dng"))
    assert preview.shape == (40, 60, 3) and "raw file" in status
    _, approx, reference, status = editor.run(
        path,
        "raw.demosaic_denoise",
        "raw.demosaic_denoise",
        "fast",
        "balanced",
        None,
        True,
        *default_values(editor, "raw.demosaic_denoise"),
    )
    assert approx is not None, status
    assert approx.shape == reference.shape == (40, 60, 3)


def test_portrait_raw_files_are_shown_and_rendered_upright(tmp_path):
    from fip.data.unprocess import CaptureSettings, unprocess
    from fip.dng import write_dng

    settings = CaptureSettings(cfa="RGGB")
    write_dng(
        tmp_path / "portrait.dng", unprocess(smooth_image(40, 60), settings, None), settings.metadata(), orientation=8
    )
    editor = Editor(scratch=tmp_path / "scratch")
    preview, path, status = editor.load(str(tmp_path / "portrait.dng"))
    assert preview.shape == (60, 40, 3) and "40×60" in status
    pair, approx, _, status = editor.run(
        path, "smooth.l0", "smooth.l0", "fast", "balanced", None, False, *default_values(editor, "smooth.l0")
    )
    assert approx.shape == pair[0].shape == (60, 40, 3), status
    output, status = editor.render_full(
        path, "smooth.l0", "smooth.l0", "fast", "balanced", None, *default_values(editor, "smooth.l0")
    )
    assert read_image_file(output).shape == (60, 40, 3) and "Full resolution 40×60" in status


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("notes.jpg", b"this is a text file", "not an image file"),
        ("notes.txt", b"this is a text file", "unsupported file type '.txt'"),
        ("cut.dng", None, "truncated or corrupt"),
    ],
)
def test_bad_uploads_become_messages(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        write_synthetic_dng(path, smooth_image(40, 60))
        path.write_bytes(path.read_bytes()[:4000])
    else:
        path.write_bytes(content)
    editor = Editor(scratch=tmp_path / "scratch")
    preview, kept, status = editor.load(str(path))
    assert preview is None and kept is None
    assert status.startswith("**Error:**") and message in status
    assert name in status and str(tmp_path) not in status  # the file's name, not the server's folder
    # Running with the bad file (or none) explains itself too.
    values = default_values(editor, "smooth.rof")
    status = editor.run(str(path), "smooth.rof", "smooth.rof", "fast", "balanced", None, False, *values)[3]
    assert status.startswith("**Error:**") and str(tmp_path) not in status
    assert "upload a photo" in editor.run(None, "smooth.rof", "smooth.rof", "fast", "balanced", None, False)[3]


def test_the_demo_removes_its_temporary_folder_on_every_exit(tmp_path, monkeypatch):
    import signal
    import tempfile

    from fip_demo import app as demo

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    editor = Editor()
    assert editor.scratch.parent == tmp_path and editor.scratch.name.startswith("fip-demo-")
    editor.close()
    assert not editor.scratch.exists()
    scratches = []

    class App:  # the Gradio app, stopped by SIGTERM while it serves
        def launch(self, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)

    def build_app(**kwargs):
        scratches.append(kwargs["scratch"])
        return App()

    monkeypatch.setattr(demo, "build_app", build_app)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(KeyboardInterrupt):
            demo.main(["--port", "0"])
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert scratches and scratches[0].parent == tmp_path and not list(tmp_path.glob("fip-demo-*"))


def test_huge_files_are_refused_before_decoding(photo, tmp_path, monkeypatch):
    monkeypatch.setattr("fip.pipeline.MAX_FILE_MEGABYTES", 0.001)
    _, _, status = Editor().load(str(photo))
    assert "fip opens files up to 0.001 MB" in status
    monkeypatch.undo()
    # A small file whose header declares a huge image (a decompression bomb) is refused from its header.
    for width, height, message in (
        (13_000, 12_000, "has 156 MP (13000x12000); fip opens photos up to 150 MP"),
        (30_000, 30_000, "declares 900 MP; fip opens photos up to 150 MP"),
    ):
        bomb = declared_png(tmp_path / f"bomb{width}.png", width, height)
        assert bomb.stat().st_size < 1000
        _, _, status = Editor().load(str(bomb))
        assert message in status, status


def test_tiny_photos_are_refused_with_a_message(tmp_path):
    path = tmp_path / "line.png"
    path.write_bytes(encode_png(smooth_image(1, 40)[:1], bits=8))
    _, _, status = Editor().load(str(path))
    assert "needs at least 2 pixels on each side" in status


def test_models_you_built_run_in_the_demo(tmp_path, monkeypatch):
    from test_cards import _model_folder

    import fip_demo.app as app
    from fip.models.catalogue import default_catalogue

    folder = _model_folder(tmp_path / "models" / "rof", "built/rof")
    monkeypatch.setenv("FIP_MODEL_PATH", "")  # restored after the test, whatever main() sets
    launched = {}
    monkeypatch.setattr(
        app, "build_app", lambda **kwargs: type("App", (), {"launch": lambda self, **kw: launched.update(kw)})()
    )
    try:
        app.main(["--models", str(tmp_path / "models"), "--port", "7999"])
        assert launched["server_port"] == 7999
        assert model_for_operator("smooth.rof").card.root == folder  # what the demo's editor opens for the operator
    finally:
        default_catalogue().refresh()  # found again, without the folder, when next used
