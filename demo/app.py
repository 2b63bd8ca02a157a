"""fip's photo-editing demo: a Gradio app over :mod:`fip.pipeline`, the front door ``fip apply`` uses too.

Run it with ``fip demo`` (or ``python -m fip_demo``). The app adds no image processing of its own: opening
photos, the size limits, the engine's plans (``auto`` included), the reference operators and the PNG export all
come from fip.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import signal
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from fip.errors import FipError
from fip.imaging import apply_orientation, to_uint8
from fip.metrics import psnr
from fip.models.cards import REFERENCE
from fip.models.catalogue import MODEL_PATH_ENV, default_catalogue, model_for_operator
from fip.pipeline import (
    MAX_FILE_MEGABYTES,
    MAX_MEGAPIXELS,
    SizePolicy,
    open_photo,
    render_to_file,
    run_approximation,
    run_reference,
)
from fip.raw import PHOTO_EXTENSIONS
from fip.registry import OperatorSpec, Param, get_operator, list_operators
from fip.runtime.devices import resolve_device
from fip.runtime.plan import AUTO, BALANCED, PRESETS, Plan, Preference

log = logging.getLogger(__name__)

# Widget slots for operator parameters: the most any operator may show (fip's own have at most 8).
PARAM_SLOTS = 10
DEFAULT_PREVIEW_MEGAPIXELS = 1.0


@dataclass(frozen=True)
class Slot:
    """One parameter's widgets; only the one that fits the parameter's type is visible."""

    slider: gr.Slider  # bounded numbers
    number: gr.Number  # unbounded numbers
    choice: gr.Dropdown  # strings with choices
    flag: gr.Checkbox  # booleans

    @property
    def components(self) -> list[gr.components.Component]:
        return [self.slider, self.number, self.choice, self.flag]


def _slider_step(param: Param) -> float:
    """A power of ten no coarser than the low end and a thousandth of the range, refined (up to 1000x) until the
    default lies on the slider's grid."""
    if param.type is int:
        return 1
    span = param.high - param.low
    finest = min(span / 1000, param.low) if param.low > 0 else span / 1000
    step = 10.0 ** math.floor(math.log10(finest))
    for refine in range(4):
        candidate = step / 10**refine
        ticks = (param.default - param.low) / candidate
        if math.isclose(ticks, round(ticks), abs_tol=1e-6):
            return candidate
    return step


def _slot_updates(param: Param | None) -> list[dict[str, Any]]:
    """Gradio updates for one slot's four widgets, showing ``param`` (or hiding the slot)."""
    hidden = [gr.update(visible=False)] * 4
    if param is None:
        return hidden
    label = f"{param.name} — {param.description}" if param.description else param.name
    updates = list(hidden)
    if param.type is bool:
        updates[3] = gr.update(visible=True, label=label, value=param.default)
    elif param.choices is not None:
        updates[2] = gr.update(visible=True, label=label, choices=list(param.choices), value=param.default)
    elif param.low is not None and param.high is not None:
        updates[0] = gr.update(
            visible=True,
            label=label,
            minimum=param.low,
            maximum=param.high,
            step=_slider_step(param),
            value=param.default,
        )
    else:
        updates[1] = gr.update(visible=True, label=f"{label} {param.range_text()}", value=param.default)
    return updates


def collect_params(spec: OperatorSpec, values: Sequence[Any]) -> dict[str, Any]:
    """The operator's parameters from the flat widget values (four per slot, in slot order)."""
    params = {}
    for index, param in enumerate(spec.params[:PARAM_SLOTS]):
        slider, number, choice, flag = values[4 * index : 4 * index + 4]
        if param.type is bool:
            params[param.name] = bool(flag)
        elif param.choices is not None:
            params[param.name] = choice
        elif param.low is not None and param.high is not None:
            params[param.name] = slider
        else:
            params[param.name] = number
    return params


_LOADING = "**Error:** the parameters of {operator} are still loading; press the button again."


def _operator_label(spec: OperatorSpec) -> str:
    return f"{spec.name} — {spec.description}"


def _error_text(exc: Exception, *folders: Path) -> str:
    """The message a user sees for ``exc``, without the server's ``folders`` (an upload's temporary folder, the
    scratch folder): a file's name is all the user knows it by."""
    text = str(exc)
    for folder in folders:
        text = text.replace(f"{folder}{os.sep}", "").replace(str(folder), "a folder on the server")
    if isinstance(exc, FipError):
        return f"**Error:** {text}"
    log.exception("demo request failed")
    return f"**Error:** {type(exc).__name__}: {text} (this is a bug in fip; the app keeps running)"


class Editor:
    """The app's handlers, kept apart from the layout so tests can call them directly.

    Full-resolution renders go to ``scratch``; without one, to a ``fip-demo-*`` temporary folder the editor removes
    on :meth:`close`, when it is garbage-collected, or when Python exits.
    """

    def __init__(
        self,
        preview_megapixels: float = DEFAULT_PREVIEW_MEGAPIXELS,
        scratch: Path | None = None,
        device: str | None = None,
    ):
        self.policy = SizePolicy(preview_megapixels)
        self.device = resolve_device(device)
        self._own_scratch = None if scratch else tempfile.TemporaryDirectory(prefix="fip-demo-")
        self.scratch = Path(scratch or self._own_scratch.name)
        # Each Run reuses the photo decoded on upload (a raw file takes LibRaw a second or more); uploads get
        # fresh paths, so a path names one file's content. Failures are not cached: they raise again.
        self._photo = functools.lru_cache(maxsize=4)(lambda path: open_photo(path, self.policy))

    def close(self) -> None:
        """Remove the temporary folder the editor made (a ``scratch`` folder given to it is left alone)."""
        if self._own_scratch is not None:
            self._own_scratch.cleanup()

    def policy_text(self) -> str:
        return (
            f"**Large photos:** the preview and the before/after comparison are computed at up to "
            f"{self.policy.max_megapixels:g} MP (larger photos are downscaled for them); *Render full resolution* "
            f"runs the approximation on the original pixels for download (in tiles where memory requires). Files over {MAX_FILE_MEGABYTES} MB and photos "
            f"over {MAX_MEGAPIXELS:g} MP are refused."
        )

    def load(self, path: str | None) -> tuple[np.ndarray | None, str | None, str]:
        """(input preview, the path kept in the session state, status text)."""
        if not path:
            return None, None, "Upload a photo or pick an example."
        try:
            photo = self._photo(path)
        except Exception as exc:  # every failure becomes a message; the app keeps running
            return None, None, _error_text(exc, Path(path).parent)
        height, width = photo.native_size
        kind = "raw file (rendered by LibRaw)" if photo.is_raw else "image"
        shown = (
            f"; preview {photo.size[1]}×{photo.size[0]}"
            if photo.size != (height - height % 2, width - width % 2)
            else ""
        )
        if photo.orientation in (5, 6, 7, 8):  # the sizes as the photo stands
            height, width = width, height
        return _upright(photo, photo.srgb), path, f"Loaded **{Path(path).name}**: {kind}, {width}×{height}{shown}."

    def run(
        self,
        path: str | None,
        operator: str,
        widgets_for: str | None,
        variant: str,
        prefer: str | None,
        min_psnr: float | None,
        compare: bool,
        *values: Any,
    ) -> tuple[Any, np.ndarray | None, np.ndarray | None, str]:
        """(before/after pair, approximation, reference or None, status text). ``widgets_for`` is the operator
        the parameter widgets currently show (they update a moment after the operator changes); ``prefer`` and
        ``min_psnr`` steer ``auto``."""
        if not path:
            return None, None, None, "**Error:** upload a photo or pick an example first."
        if widgets_for != operator:
            return None, None, None, _LOADING.format(operator=operator)
        try:
            spec = get_operator(operator)
            params = collect_params(spec, values)
            photo = self._photo(path)
            variant = variant or AUTO
            preference = _preference(variant, prefer, min_psnr)
            fast = run_approximation(
                operator, photo, params, variant, operator=operator, device=self.device, preference=preference
            )
            ran = (
                fast.approximator
                if fast.plan.request != AUTO
                else (f"auto → {fast.approximator}, prefer {fast.plan.preference}")
            )
            lines = [
                f"**Approximation** ({ran}): {fast.seconds:.2f} s at {photo.size[1]}×{photo.size[0]} on "
                f"{fast.plan.device}"
            ]
            exact = fast.approximator == REFERENCE
            if exact and fast.plan.request == AUTO:
                lines.append(f"Auto runs the reference itself: {fast.plan.why}.")
            if fast.plan.choices:
                lines.append(choices_text(fast.plan))
            if fast.note:
                lines.append(f"Note: {fast.note}.")
            reference = None
            before = photo.srgb
            if compare:
                slow = run_reference(operator, photo, params)
                reference = slow.image
                before = reference
                if exact:  # no speed-up of the operator over itself, and no finite PSNR: say so in words
                    lines.append(
                        f"**Reference**: {slow.seconds:.2f} s · the approximation is the reference itself: "
                        "exact, at the reference's speed"
                    )
                else:
                    speedup = slow.seconds / max(fast.seconds, 1e-9)
                    lines.append(
                        f"**Reference**: {slow.seconds:.2f} s · **speed-up {speedup:.1f}×** · "
                        f"approximation vs reference {psnr(fast.image, reference):.1f} dB PSNR"
                    )
        except Exception as exc:
            return None, None, None, _error_text(exc, Path(path).parent)
        after = _upright(photo, fast.image)
        pair = (_upright(photo, before), after)
        return pair, after, None if reference is None else _upright(photo, reference), "  \n".join(lines)

    def render_full(
        self,
        path: str | None,
        operator: str,
        widgets_for: str | None,
        variant: str,
        prefer: str | None,
        min_psnr: float | None,
        *values: Any,
    ) -> tuple[str | None, str]:
        """(the full-resolution PNG to download, status text)."""
        if not path:
            return None, "**Error:** upload a photo or pick an example first."
        if widgets_for != operator:
            return None, _LOADING.format(operator=operator)
        try:
            params = collect_params(get_operator(operator), values)
            preference = _preference(variant or AUTO, prefer, min_psnr)
            output, result = render_to_file(
                operator,
                path,
                self.scratch,
                params,
                variant or AUTO,
                operator=operator,
                device=self.device,
                preference=preference,
            )
        except Exception as exc:
            return None, _error_text(exc, Path(path).parent, self.scratch)
        height, width = result.image.shape[:2]
        return str(output), (
            f"Full resolution {width}×{height} in {result.seconds:.2f} s ({result.approximator}): {output.name}"
        )

    def operator_changed(self, operator: str) -> list[Any]:
        """Updates of every parameter widget for ``operator``, then of the approximator choice (``auto`` and the
        approximators of the operator's model), then ``operator`` (for the session state saying which operator the
        widgets show)."""
        spec = get_operator(operator)
        params: list[Param | None] = list(spec.params[:PARAM_SLOTS])
        params += [None] * (PARAM_SLOTS - len(params))
        choices = approximator_choices(operator)
        return [update for param in params for update in _slot_updates(param)] + [
            gr.update(choices=choices, value=AUTO),
            operator,
        ]


def _preference(variant: str, prefer: str | None, min_psnr: float | None) -> Preference | None:
    """The preference the controls set, for ``auto`` (an approximator picked by name ignores them); a floor of 0
    (what an empty number box sends) is none."""
    if variant != AUTO:
        return None
    return Preference.of(prefer or BALANCED, None if min_psnr in (None, "", 0) else min_psnr)


def choices_text(plan: Plan) -> str:
    """What each preset of ``auto`` runs here, with its measured speed and quality, in one line."""
    picks = []
    for pick in plan.choices:
        measured = [
            f"{pick.seconds:.2f} s" if pick.seconds is not None else "",
            "exact" if pick.approximator == REFERENCE else f"{pick.psnr:.1f} dB" if pick.psnr else "",
        ]
        detail = ", ".join(m for m in measured if m)
        picks.append(f"{pick.prefer} → {pick.approximator}" + (f" ({detail})" if detail else ""))
    timed = next((p for p in plan.choices if p.timings_class), None)
    where = f" (seconds at {timed.timed_size} on {timed.timings_class}; dB on validation photos)" if timed else ""
    return "Auto's choices: " + " · ".join(picks) + where


def _upright(photo, image: np.ndarray) -> np.ndarray:
    """``image`` (at the photo's size, in the order its file stores it) as uint8, turned upright for display."""
    return to_uint8(apply_orientation(image, photo.orientation))


def approximator_choices(operator: str) -> list[tuple[str, str]]:
    """(label, name) of ``auto`` and each approximator of ``operator``'s model, with its measured quality."""
    card = model_for_operator(operator).card
    choices = [("auto — the engine's choice, as 'Auto prefers' says", AUTO)]
    for approximator in card.approximators.values():
        quality = approximator.quality.get(card.choice_set) if card.choice_set else None
        scored = f" ({quality.psnr:.1f} dB)" if quality else ""
        choices.append((f"{approximator.name}{scored} — {approximator.description}", approximator.name))
    return choices


def build_app(
    examples: Mapping[str, Path] | None = None,
    preview_megapixels: float = DEFAULT_PREVIEW_MEGAPIXELS,
    operators: Sequence[str] | None = None,
    device: str | None = None,
    scratch: Path | None = None,
) -> gr.Blocks:
    """The demo as a :class:`gradio.Blocks` (not launched).

    Args:
        examples: name -> photo path offered as built-in examples (default: the sample set's DNG files).
        preview_megapixels: working size of the preview and comparison.
        operators: operator names to offer (default: every registered operator, plugins included).
        device: where approximations run (default: CUDA when available, else the CPU).
        scratch: the folder full-resolution renders go to (default: a temporary folder of the app's editor).
    """
    if examples is None:
        from fip.data.sample import ensure_sample_set

        examples = {p.name: p.path for p in ensure_sample_set()}
    specs = [get_operator(name) for name in operators] if operators else list_operators()
    editor = Editor(preview_megapixels, scratch=scratch, device=device)
    variants = approximator_choices(specs[0].name)
    accepted = sorted(PHOTO_EXTENSIONS)

    with gr.Blocks(title="fip — fast image processing") as app:
        gr.Markdown(
            "# fip — fast image processing\nA context aggregation network (Chen, Xu and Koltun, ICCV 2017) "
            "approximates each slow operator. Upload a photo or a raw file, pick an operator, run the fast "
            "approximation, and compare it with the slow reference."
        )
        path_state = gr.State(None)
        widgets_for = gr.State(None)  # the operator whose parameters the widgets show
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(
                    label="Photo: JPEG, PNG, TIFF or raw (DNG, CR2, NEF, …)",
                    file_types=accepted,
                    type="filepath",
                    elem_id="upload",
                )
                example = gr.Dropdown(
                    choices=list(examples), value=None, label="…or a built-in example (raw DNG)", elem_id="example"
                )
                operator = gr.Dropdown(
                    choices=[(_operator_label(s), s.name) for s in specs],
                    value=specs[0].name,
                    label="Operator",
                    elem_id="operator",
                )
                variant = gr.Dropdown(choices=variants, value=AUTO, label="Approximator", elem_id="variant")
                with gr.Row():
                    prefer = gr.Radio(
                        choices=list(PRESETS),
                        value=BALANCED,
                        label="Auto prefers",
                        elem_id="prefer",
                        info="quality: the best approximator (within 0.1 dB); balanced: the fastest "
                        "within 0.5 dB of it or at 40 dB; speed: the fastest at 32 dB or more",
                    )
                    min_psnr = gr.Number(value=0, label="Auto's PSNR floor (dB; 0: none)", elem_id="min-psnr")
                slots = []
                with gr.Accordion("Parameters", open=True):
                    for _ in range(PARAM_SLOTS):
                        slots.append(
                            Slot(
                                gr.Slider(visible=False),
                                gr.Number(visible=False),
                                gr.Dropdown(visible=False, allow_custom_value=False),
                                gr.Checkbox(visible=False),
                            )
                        )
                param_widgets = [c for slot in slots for c in slot.components]
                compare = gr.Checkbox(
                    value=False, label="Also run the slow reference (before/after comparison)", elem_id="compare"
                )
                run = gr.Button("Run", variant="primary", elem_id="run")
                full = gr.Button("Render full resolution", elem_id="full")
                gr.Markdown(editor.policy_text(), elem_id="policy")
            with gr.Column(scale=2):
                status = gr.Markdown("Upload a photo or pick an example.", elem_id="status")
                source = gr.Image(label="Input", type="numpy", interactive=False, elem_id="input-image")
                slider = gr.ImageSlider(
                    label="Before (input or reference) | after (approximation)", type="numpy", elem_id="compare-slider"
                )
                with gr.Row():
                    result = gr.Image(label="Approximation", type="numpy", interactive=False, elem_id="result")
                    reference = gr.Image(label="Reference", type="numpy", interactive=False, elem_id="reference")
                download = gr.File(label="Full-resolution result", interactive=False, elem_id="download")

        upload.change(editor.load, inputs=upload, outputs=[source, path_state, status])
        example.change(
            lambda name: editor.load(str(examples[name]) if name else None),
            inputs=example,
            outputs=[source, path_state, status],
        )
        operator.change(editor.operator_changed, inputs=operator, outputs=[*param_widgets, variant, widgets_for])
        app.load(editor.operator_changed, inputs=operator, outputs=[*param_widgets, variant, widgets_for])
        run.click(
            editor.run,
            inputs=[path_state, operator, widgets_for, variant, prefer, min_psnr, compare, *param_widgets],
            outputs=[slider, result, reference, status],
            concurrency_id="compute",
        )
        full.click(
            editor.render_full,
            inputs=[path_state, operator, widgets_for, variant, prefer, min_psnr, *param_widgets],
            outputs=[download, status],
            concurrency_id="compute",
        )
    # Heavy work shares one queue slot per CPU pair: several users are served in turn, not at once.
    app.queue(default_concurrency_limit=1, max_size=32)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fip demo", description="fip's Gradio photo-editing demo")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: localhost only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--preview-megapixels", type=float, default=DEFAULT_PREVIEW_MEGAPIXELS)
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)")
    parser.add_argument(
        "--models",
        action="append",
        default=[],
        metavar="FOLDER",
        help="model folders you built (fip build --out), or folders of them: each runs its operator "
        f"instead of the installed model (added to {MODEL_PATH_ENV}; repeatable)",
    )
    args = parser.parse_args(argv)
    if args.models:
        os.environ[MODEL_PATH_ENV] = os.pathsep.join([*args.models, os.environ.get(MODEL_PATH_ENV, "")]).rstrip(
            os.pathsep
        )
        default_catalogue().refresh()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)  # stop as on Ctrl-C, so the scratch folder is removed
    with tempfile.TemporaryDirectory(prefix="fip-demo-") as scratch:  # removed on every exit, SIGTERM included
        try:
            app = build_app(preview_megapixels=args.preview_megapixels, device=args.device, scratch=Path(scratch))
        except FipError as exc:
            parser.exit(2, f"fip demo: error: {exc}\n")
        app.launch(server_name=args.host, server_port=args.port, max_file_size=f"{MAX_FILE_MEGABYTES}mb")


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
