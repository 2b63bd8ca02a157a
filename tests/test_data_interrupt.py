"""Stopping `fip data` and `fip apply` for real: Ctrl-C (or SIGTERM) prints one line and stops their workers; a
killed `fip data` takes its workers along; what was finished before either is reused by the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import smooth_image

from fip.imaging import encode_png

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds worker processes through /proc"),
]

PHOTOS = 12


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, parent = stat.rsplit(")", 1)[1].split()[:2]  # the command name may hold spaces and parentheses
    return state, int(parent)


def _alive(pids) -> list[int]:
    """Those of ``pids`` still running (an exited orphan nobody reaped stays a zombie: it counts as gone)."""
    return [pid for pid in pids if (found := _state_and_parent(pid)) and found[0] != "Z"]


def _children(pid: int) -> list[int]:
    found = (int(entry) for entry in os.listdir("/proc") if entry.isdigit())
    return _alive(child for child in found if (_state_and_parent(child) or ("", 0))[1] == pid)


@pytest.fixture
def photos(tmp_path) -> Path:
    """Photos at 480p, which take smooth.l0 about a second each: time to interrupt a run halfway."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(PHOTOS):
        (folder / f"photo{index}.png").write_bytes(encode_png(smooth_image(480, 640, seed=index), bits=8))
    return folder


@pytest.fixture
def started(tmp_path):
    """Starts `fip data` in its own process group, as a shell starts a foreground job; ends what survives."""
    runs: list[tuple[subprocess.Popen, list[int]]] = []

    def start(
        photos: Path, out: Path, working: bool = True, apply: bool = False
    ) -> tuple[subprocess.Popen, list[int], Path]:
        """Start `fip data` (or `fip apply`) and wait until its two workers have started (``working``: and finished
        a pair, or a photo); return it, its child processes and its stderr file."""
        stderr = tmp_path / f"stderr{len(runs)}.txt"
        command = [
            sys.executable,
            "-m",
            "fip",
            "data",
            "-o",
            "smooth.l0",
            "--source",
            str(photos),
            "--out",
            str(out),
            "--workers",
            "2",
            "--no-progress",
        ]
        if apply:
            command[3:8] = ["apply", "-o", "smooth.l0", str(photos)]
        done = "*.png" if apply else "records/*.json"
        # Files, not pipes: a worker that outlives fip would hold a pipe open and hang the test.
        with open(tmp_path / f"stdout{len(runs)}.txt", "w") as out_file, open(stderr, "w") as err_file:
            # Ctrl-C handled as in a terminal's foreground job even when pytest itself runs as a background job
            # of a non-interactive shell, which starts it with SIGINT ignored (inherited through exec).
            process = subprocess.Popen(
                command,
                stdout=out_file,
                stderr=err_file,
                start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
        children: list[int] = []
        runs.append((process, children))
        deadline = time.monotonic() + 120
        while not (len(children) >= 2 and (not working or list(out.glob(done)))):
            assert process.poll() is None, f"fip data ended early: {stderr.read_text()}"
            assert time.monotonic() < deadline, "fip data made no pair in 120 s"
            children[:] = sorted(set(children) | set(_children(process.pid)))
            time.sleep(0.05)
        return process, children, stderr

    yield start
    for process, children in runs:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in _alive(children):
            os.kill(pid, signal.SIGKILL)


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _alive(pids)


@pytest.mark.parametrize("working", [False, True], ids=["workers-starting", "workers-working"])
def test_ctrl_c_prints_one_line_and_stops_the_workers_at_once(photos, tmp_path, started, working):
    out = tmp_path / "out"
    process, children, stderr = started(photos, out, working)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole foreground group gets it
    interrupted = time.monotonic()
    assert process.wait(timeout=120) == 130
    # Without waiting for the queued photos (about 5 s more on two workers).
    assert time.monotonic() - interrupted < 4
    printed = stderr.read_text()
    assert "Traceback" not in printed and len(printed.splitlines()) <= 2, printed
    assert "fip: interrupted; rerun the same command to resume" in printed
    assert _wait_gone(children, 5) == []
    if working:  # the pairs made so far are kept, and listed in the manifest
        done = sorted(path.stem for path in (out / "records").glob("*.json"))
        assert done and sorted(json.loads((out / "manifest.json").read_text())["pairs"]) == done
    assert not list(out.rglob("*.tmp"))


def test_killed_fip_data_leaves_no_worker_and_a_rerun_resumes(photos, tmp_path, started):
    out = tmp_path / "out"
    process, children, _ = started(photos, out)
    process.kill()
    process.wait()
    assert _wait_gone(children, 10) == []
    done = len(list((out / "records").glob("*.json")))
    assert 0 < done < PHOTOS

    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "fip",
            "data",
            "-o",
            "smooth.l0",
            "--source",
            str(photos),
            "--out",
            str(out),
            "--workers",
            "2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{PHOTOS} pairs ({PHOTOS - done} made, {done} reused)" in rerun.stdout


def test_sigterm_stops_fip_apply_with_a_summary_and_a_rerun_resumes(photos, tmp_path, started):
    out = tmp_path / "out"
    process, children, stderr = started(photos, out, apply=True)
    process.terminate()  # SIGTERM to fip alone, as a service manager or `kill` sends it
    assert process.wait(timeout=120) == 130
    printed = stderr.read_text()
    assert "Traceback" not in printed and len(printed.splitlines()) <= 3, printed
    assert f"{PHOTOS} inputs: " in printed and "not run" in printed and "fip: interrupted" in printed
    assert _wait_gone(children, 5) == []
    done = len(list(out.glob("*.png")))
    assert 0 < done < PHOTOS and not list(out.glob(".*.tmp"))
    rerun = subprocess.run(
        [sys.executable, "-m", "fip", "apply", "-o", "smooth.l0", str(photos), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert rerun.returncode == 0 and f"{PHOTOS - done} written, {done} kept" in rerun.stderr, rerun.stderr
