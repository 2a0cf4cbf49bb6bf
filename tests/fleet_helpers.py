"""Shared by the fleet tests: a small fleet of MLPs, a key pair, a policy, and a way to kill a scan mid-flight."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import onnx

from tests import zoo

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "tests" / "data" / "policies"

# long enough (about a second of Square per model) that a scan is still running when it is killed
SLOWISH_POLICY = """
[policy]
name = "fleet-test"
version = "1.0"
description = "tests: about a second of scanning per tiny MLP"

[[checks]]
id = "square-linf"
attack = "square"
norm = "linf"
epsilon = 0.001
samples = 20
budget = 1500

[backdoor]
enabled = false

[grading.attack_success_rate]
worse = "higher"
medium = 0.5
high = 0.8
critical = 0.95
"""


def make_fleet(folder: Path, params: list, n: int = 3) -> list[Path]:
    """``n`` distinct tiny digits MLPs (the same weights, each with a different output head or batch dimension)."""
    folder.mkdir(parents=True, exist_ok=True)
    variants = [("logits", "N"), ("softmax", "N"), ("logits", 1), ("softmax", 1), ("logits", None)]
    paths = []
    for i, (out, batch) in enumerate(variants[:n]):
        m = zoo.mlp_to_onnx(params, (1, 8, 8), output=out, batch=batch, dtype=np.float32)
        p = folder / f"mlp{i}_{out}.onnx"
        onnx.save(m, p)
        paths.append(p)
    return paths


def keypair(tmp: Path) -> tuple[Path, Path]:
    from onnxguard.keys import write_keypair

    return write_keypair(tmp / "fleet-key")


def sandbox_children(parent: int | None = None) -> list[tuple[int, int]]:
    """(pid, parent pid) of every running ``python -m onnxguard.sandbox`` (descendants of ``parent`` if given)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if b"onnxguard.sandbox" not in cmd:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, ppid = fields[0], int(fields[1])
        if state in ("Z", "X"):
            continue
        if parent is None or ppid == parent or _is_descendant(ppid, parent):
            found.append((int(d.name), ppid))
    return found


def _is_descendant(pid: int, ancestor: int) -> bool:
    for _ in range(20):
        if pid <= 1:
            return False
        if pid == ancestor:
            return True
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


class Killer(threading.Thread):
    """Once ``ready()`` holds, SIGKILL the first live sandbox child (``parent=True``: its parent, the worker, instead)."""

    def __init__(self, ready, *, kill_parent: bool = False, ancestor: int | None = None, give_up_s: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.ready, self.kill_parent, self.ancestor, self.give_up_s = ready, kill_parent, ancestor, give_up_s
        self.killed: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        t_end = time.monotonic() + self.give_up_s
        while not self.stop.is_set() and time.monotonic() < t_end:
            if self.ready():
                for pid, ppid in sandbox_children(self.ancestor):
                    victim = ppid if self.kill_parent else pid
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    self.killed = victim
                    return
            time.sleep(0.01)
