"""Fleet scans on a local Ray (2 CPUs, started and shut down here): reports, a killed Ray worker, a split scan."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'onnxguard[ray]'); the Ray executor tests need it")

from onnxguard.fleet import get_executor  # noqa: E402
from onnxguard.fleet.driver import FleetSettings, run_fleet  # noqa: E402
from onnxguard.fleet.manifest import resolve  # noqa: E402
from onnxguard.fleet.split import scan_split  # noqa: E402
from onnxguard.fleet.store import Layout  # noqa: E402
from onnxguard.policy import load_policy  # noqa: E402
from onnxguard.report import stable_view  # noqa: E402
from onnxguard.sandbox import limits_for, run_isolated  # noqa: E402
from onnxguard.scan import ScanOptions  # noqa: E402
from onnxguard.keys import load_private_key  # noqa: E402
from onnxguard.verify import verify_envelope  # noqa: E402
from tests.fleet_helpers import POLICIES, ROOT, SLOWISH_POLICY, Killer, keypair, make_fleet  # noqa: E402

TINY = str(POLICIES / "tiny-pass.toml")


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    pp = str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": pp}})
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, digits_params):
    d = tmp_path_factory.mktemp("rayfleet")
    models = make_fleet(d / "models", digits_params[0], n=3)
    priv, _pub = keypair(d)
    return d, models, priv, _pub


def test_ray_fleet_reports_summary_and_resume(local_ray, fleet, tmp_path):
    d, models, priv, pub = fleet
    out = tmp_path / "out"
    entries = resolve([str(models[0].parent)], out / ".cache")
    key = load_private_key(priv)
    with get_executor("ray") as ex:
        assert ex.workers == 2
        res = run_fleet(entries, out, ex, key, FleetSettings(policy=TINY))
        assert res.exit_code == 0 and len(res.scanned) == 3
        s = json.loads((out / "summary.json").read_text())
        assert s["executor"] == "ray" and {r["status"] for r in s["rows"]} == {"scanned"}
        for r in s["rows"]:
            verify_envelope((out / r["report"]).read_bytes(), [pub], model_path=Path(r["path"]))
            assert (out / r["page"]).is_file()
        res = run_fleet(entries, out, ex, key, FleetSettings(policy=TINY))
        assert res.scanned == [] and len(res.reused) == 3
    assert ray.is_initialized()  # an executor does not shut down a Ray it did not start


def test_a_killed_ray_worker_is_retried(local_ray, fleet, tmp_path):
    d, models, priv, pub = fleet
    pol = tmp_path / "slowish.toml"
    pol.write_text(SLOWISH_POLICY)
    out = tmp_path / "out"
    entries = resolve([str(p) for p in models[:2]], out / ".cache")
    killer = Killer(lambda: True, kill_parent=True, ancestor=os.getpid())  # the Ray worker process running a scan
    killer.start()
    with get_executor("ray") as ex:
        res = run_fleet(entries, out, ex, load_private_key(priv), FleetSettings(policy=str(pol), retries=2))
    killer.stop.set()
    assert killer.killed is not None
    assert res.exit_code == 0 and {r.status for r in res.summary.rows} == {"scanned"}
    assert max(r.attempts for r in res.summary.rows) == 2
    lay = Layout(out)
    for e in entries:
        verify_envelope(lay.report(e.slug).read_bytes(), [pub], model_path=e.path)


def test_ray_split_scan_equals_the_single_process_scan(local_ray):
    model, data = ROOT / "examples" / "digits_mlp.onnx", ROOT / "examples" / "digits.npz"
    pol = load_policy("baseline")
    lim = limits_for(pol)
    opts = ScanOptions(model_path=model, data_path=data, policy=pol, seed=3)
    single = run_isolated(opts, lim, threads=1).report
    with get_executor("ray") as ex:
        merged = scan_split(opts, lim, ex).report
    assert stable_view(merged) == stable_view(single)
    assert merged.timing.queries_total == single.timing.queries_total


def test_infeasible_resources_are_an_error_not_a_hang(local_ray, fleet):
    d, models, priv, pub = fleet
    from onnxguard.fleet import Resources, ScanJob

    pol = load_policy(TINY)
    with get_executor("ray") as ex:
        job = ScanJob("big", ScanOptions(model_path=models[0], policy=pol), limits_for(pol), Resources(cpus=64))
        out = next(iter(ex.map([job])))
    assert out.kind == "error" and "64 CPUs" in out.message
