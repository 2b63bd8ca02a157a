"""The engine's front door: :func:`make_plan` as the command line, the Python API, the batch, the demo and the
benchmarks call it. It is :func:`fip.runtime.plan.make_plan` with one step before it: for ``auto`` on a device class
the model's card has no timings for, the card gets this machine's own (:func:`fip.runtime.calibrate.timed_card`:
timed once, then cached). Planning itself never runs anything, and calibrating runs plans, so the two live apart.
"""

from __future__ import annotations

from typing import Any

from fip.models.catalogue import Model
from fip.runtime.calibrate import timed_card
from fip.runtime.devices import resolve_device
from fip.runtime.plan import AUTO, Plan
from fip.runtime.plan import make_plan as plan_for


def make_plan(
    model: Model,
    request: str,
    size: tuple[int, int],
    device: Any = None,
    *,
    calibrate: bool | None = None,
    **options: Any,
) -> Plan:
    """:func:`fip.runtime.plan.make_plan` (same arguments and errors), ``auto`` ranked by this machine's timings
    where the card has none for the device's class.

    Args:
        calibrate: whether ``auto`` may time the model here when its card has no timings for the device's class
            (default: yes, unless ``$FIP_CALIBRATE`` is ``0``; see :mod:`fip.runtime.calibrate`).
    """
    card = None
    if request == AUTO:
        card = timed_card(model, resolve_device(device), calibrate=calibrate)
    return plan_for(model, request, size, device, card=card, **options)


__all__ = ["make_plan"]
