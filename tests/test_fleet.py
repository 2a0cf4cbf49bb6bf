"""Fleet scans on the local executor: one signed report per model, the summary, resume, kills, a split scan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onnxguard.cli import main
from onnxguard.fleet import get_executor
from onnxguard.fleet.driver import FleetSettings, run_fleet
from onnxguard.fleet.manifest import resolve
from onnxguard.fleet.split import merge_reports, plan_shards, scan_split
from onnxguard.fleet.store import Layout
from onnxguard.policy import load_policy
from onnxguard.report import stable_view
from onnxguard.sandbox import limits_for, run_isolated
from onnxguard.scan import ScanOptions
from onnxguard.keys import load_private_key
from onnxguard.verify import verify_envelope
from tests.fleet_helpers import POLICIES, ROOT, SLOWISH_POLICY, Killer, keypair, make_fleet

TINY = str(POLICIES / "tiny-pass.toml")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, digits_params):
    d = tmp_path_factory.mktemp("fleet")
    models = make_fleet(d / "models", digits_params[0], n=3)
    priv, pub = keypair(d)
    return d, models, priv, pub


def _verify_all(out: Path, models: list[Path], pub: Path) -> dict[str, dict]:
    s = json.loads((out / "summary.json").read_text())
    rows = {Path(r["path"]).name: r for r in s["rows"]}
    for m in models:
        r = rows[m.name]
        env = (out / r["report"]).read_bytes()
        vr = verify_envelope(env, [pub], model_path=m)
        assert vr.report.summary.verdict == r["verdict"]
        assert (out / r["page"]).is_file()
    return rows


def test_fleet_one_signed_report_per_model_and_a_summary(fleet, tmp_path):
    d, models, priv, pub = fleet
    out = tmp_path / "out"
    code = main(["fleet", "scan", str(models[0].parent), "--out", str(out), "--policy", TINY, "--workers", "2", "--key", str(priv), "-q"])
    assert code == 0
    rows = _verify_all(out, models, pub)
    assert {r["status"] for r in rows.values()} == {"scanned"}
    assert len(list((out / "reports").glob("*.dsse.json"))) == len(models)
    page = (out / "index.html").read_text()
    for r in rows.values():
        assert f'href="{r["page"]}"' in page and f'href="{r["report"]}"' in page
    assert "✓ PASS" in page and "SIGNED AND VERIFIED" in (out / rows[models[0].name]["page"]).read_text()

    # a rerun scans nothing: every report verifies, so it is reused and left as it was
    before = {p.name: p.read_bytes() for p in (out / "reports").iterdir()}
    code = main(["fleet", "scan", str(models[0].parent), "--out", str(out), "--policy", TINY, "--key", str(priv), "-q"])
    assert code == 0
    rows = _verify_all(out, models, pub)
    assert {r["status"] for r in rows.values()} == {"reused"}
    assert before == {p.name: p.read_bytes() for p in (out / "reports").iterdir()}


def test_resume_trusts_signatures_and_digests_not_file_names(fleet, tmp_path):
    d, models, priv, pub = fleet
    key = load_private_key(priv)
    out = tmp_path / "out"
    folder = tmp_path / "models"
    folder.mkdir()
    mine = []
    for m in models:
        (folder / m.name).write_bytes(m.read_bytes())
        mine.append(folder / m.name)
    entries = resolve([str(folder)], out / ".cache")
    st = FleetSettings(policy=TINY)
    with get_executor("local", workers=2) as ex:
        assert run_fleet(entries, out, ex, key, st).exit_code == 0
    lay = Layout(out)
    # forge one report (a changed payload), swap another one's model file, and change the policy of nothing else
    e0, e1, e2 = entries
    env = json.loads(lay.report(e0.slug).read_text())
    env["payload"] = env["payload"][:-8] + ("A" * 8 if not env["payload"].endswith("A" * 8) else "B" * 8)
    lay.report(e0.slug).write_text(json.dumps(env))
    import onnx

    m1 = onnx.load(str(e1.path))
    m1.producer_name = "changed"
    onnx.save(m1, str(e1.path))
    with get_executor("local", workers=2) as ex:
        res = run_fleet(entries, out, ex, key, st)
    assert res.exit_code == 0
    assert sorted(res.scanned) == sorted([e0.slug, e1.slug]) and res.reused == [e2.slug]
    rows = {r.slug: r for r in res.summary.rows}
    assert "does not verify" in rows[e0.slug].message and "model-digest" in rows[e1.slug].message
    # another policy, or another seed: every model is scanned again
    with get_executor("local", workers=2) as ex:
        res = run_fleet(entries, out, ex, key, FleetSettings(policy=TINY, seed=1))
    assert len(res.scanned) == 3 and "seed" in res.summary.rows[0].message


def test_a_killed_worker_loses_only_its_scan_and_the_rerun_finishes(fleet, tmp_path):
    d, models, priv, pub = fleet
    key = load_private_key(priv)
    pol = tmp_path / "slowish.toml"
    pol.write_text(SLOWISH_POLICY)
    out = tmp_path / "out"
    entries = resolve([str(models[0].parent)], out / ".cache")
    lay = Layout(out)
    killer = Killer(lambda: lay.reports.is_dir() and any(lay.reports.glob("*.dsse.json")), ancestor=os.getpid())
    killer.start()
    with get_executor("local", workers=1) as ex:
        res = run_fleet(entries, out, ex, key, FleetSettings(policy=str(pol), retries=0))
    killer.stop.set()
    assert killer.killed is not None
    st = {r.slug: r.status for r in res.summary.rows}
    assert sorted(st.values()) == ["crashed", "scanned", "scanned"] and res.exit_code == 3
    crashed = next(s for s, v in st.items() if v == "crashed")
    assert "killed" in next(r.message for r in res.summary.rows if r.slug == crashed)
    finished = {s: lay.report(s).read_bytes() for s, v in st.items() if v == "scanned"}

    with get_executor("local", workers=1) as ex:
        res = run_fleet(entries, out, ex, key, FleetSettings(policy=str(pol), retries=0))
    assert res.exit_code == 0 and res.scanned == [crashed] and sorted(res.reused) == sorted(finished)
    assert all(lay.report(s).read_bytes() == b for s, b in finished.items())
    _verify_all(out, models, pub)


def test_a_killed_worker_is_retried_within_the_bound(fleet, tmp_path):
    d, models, priv, pub = fleet
    pol = tmp_path / "slowish.toml"
    pol.write_text(SLOWISH_POLICY)
    out = tmp_path / "out"
    entries = resolve([str(p) for p in models[:2]], out / ".cache")
    lay = Layout(out)
    killer = Killer(lambda: lay.reports.is_dir(), ancestor=os.getpid())
    killer.start()
    with get_executor("local", workers=1) as ex:
        res = run_fleet(entries, out, ex, load_private_key(priv), FleetSettings(policy=str(pol), retries=1))
    killer.stop.set()
    assert killer.killed is not None and res.exit_code == 0
    assert sorted(r.attempts for r in res.summary.rows) == [1, 2]
    assert {r.status for r in res.summary.rows} == {"scanned"}


def test_killing_the_driver_loses_no_finished_report(fleet, tmp_path):
    d, models, priv, pub = fleet
    pol = tmp_path / "slowish.toml"
    pol.write_text(SLOWISH_POLICY)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "onnxguard", "fleet", "scan", str(models[0].parent), "--out", str(out), "--policy", str(pol),
           "--workers", "1", "--key", str(priv), "-q"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "reports").glob("*.dsse.json")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done = sorted((out / "reports").glob("*.dsse.json"))
    assert 1 <= len(done) < len(models)
    for p in done:  # every report on disk is whole and verifies
        vr = verify_envelope(p.read_bytes(), [pub])
        assert vr.report.summary is not None
    # the driver's sandbox child died with it (no orphan keeps scanning)
    time.sleep(0.2)
    from tests.fleet_helpers import sandbox_children

    assert not [c for c in sandbox_children() if c[1] == proc.pid or c[1] == 1 and _scans(c[0], models)]
    code = main(["fleet", "scan", str(models[0].parent), "--out", str(out), "--policy", str(pol), "--workers", "1", "--key", str(priv), "-q"])
    assert code == 0
    rows = _verify_all(out, models, pub)
    assert sorted(r["status"] for r in rows.values()).count("reused") == len(done)


def _scans(pid: int, models: list[Path]) -> bool:
    try:
        return any(str(m.parent) in os.readlink(f"/proc/{pid}/cwd") for m in models)
    except OSError:
        return False


def test_manifests_in_toml_json_and_csv(fleet, tmp_path):
    d, models, priv, pub = fleet
    base = models[0].parent
    (tmp_path / "m.toml").write_text(
        f'[[model]]\npath = "{models[0]}"\npolicy = "{POLICIES / "tiny-strict.toml"}"\n\n[[model]]\npath = "{models[1]}"\nseed = 3\nsamples = 5\n')
    (tmp_path / "m.json").write_text(json.dumps({"models": [{"path": str(models[2]), "budget": 10, "range": "0,1"}]}))
    (tmp_path / "m.csv").write_text(f"path,seed\n{models[0]},0\n")
    out = tmp_path / "out"
    code = main(["fleet", "scan", str(tmp_path / "m.toml"), str(tmp_path / "m.json"), "--out", str(out), "--policy", TINY, "--key", str(priv), "-q"])
    assert code == 1  # tiny-strict fails the first model: the exit code follows the worst verdict
    rows = _verify_all(out, models, pub)
    assert rows[models[0].name]["verdict"] == "fail" and rows[models[0].name]["policy"] == "tiny-strict@1.0"
    r2 = verify_envelope((out / rows[models[2].name]["report"]).read_bytes(), [pub]).report
    assert r2.checks[0].queries.budget_per_sample == 10
    entries = resolve([str(tmp_path / "m.csv")], out)
    assert [e.path for e in entries] == [models[0]]
    # a manifest listing the same file twice with different settings is refused, as is a row with an unknown key
    (tmp_path / "bad.json").write_text(json.dumps([{"path": str(models[0])}, {"path": str(models[0]), "seed": 9}]))
    assert main(["fleet", "scan", str(tmp_path / "bad.json"), "--out", str(out), "--key", str(priv), "-q"]) == 2
    (tmp_path / "bad.toml").write_text(f'[[model]]\npath = "{models[0]}"\nbudgte = 3\n')
    assert main(["fleet", "scan", str(tmp_path / "bad.toml"), "--out", str(out), "--key", str(priv), "-q"]) == 2
    assert base.is_dir()


def test_a_hostile_file_is_refused_and_the_fleet_goes_on(fleet, tmp_path):
    d, models, priv, pub = fleet
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "good.onnx").write_bytes(models[0].read_bytes())
    (folder / "junk.onnx").write_bytes(b"PK\x03\x04 not an onnx model")
    (folder / "link.onnx").symlink_to(models[1])  # never followed
    out = tmp_path / "out"
    code = main(["fleet", "scan", str(folder), "--out", str(out), "--policy", TINY, "--key", str(priv), "-q"])
    assert code == 2
    s = json.loads((out / "summary.json").read_text())
    st = {r["name"]: r["status"] for r in s["rows"]}
    assert st == {"good.onnx": "scanned", "junk.onnx": "refused"}


def test_split_scan_equals_the_single_process_scan(tmp_path):
    model, data = ROOT / "examples" / "digits_mlp.onnx", ROOT / "examples" / "digits.npz"
    pol = load_policy("baseline")  # its checks (image/tabular, text, regressor) and the backdoor search, in three shards
    lim = limits_for(pol)
    opts = ScanOptions(model_path=model, data_path=data, policy=pol, seed=7)
    single = run_isolated(opts, lim, threads=1).report
    shards = plan_shards(pol, 3, opts)
    assert len(shards) == 3 and sorted(sum(shards, [])) == sorted([c.check_id for c in pol.policy.checks] + ["backdoor"])
    with get_executor("local", workers=3) as ex:
        res = scan_split(opts, lim, ex)
    assert res.crashed is None
    merged = res.report
    assert stable_view(merged) == stable_view(single)
    assert merged.timing.queries_total == single.timing.queries_total  # the clean pass counted once
    # two workers: the same report again
    with get_executor("local", workers=2) as ex:
        assert stable_view(scan_split(opts, lim, ex).report) == stable_view(single)
    # the merge refuses shards that disagree
    other = single.model_copy(deep=True)
    other.seed = 8
    with pytest.raises(Exception, match="disagree"):
        merge_reports([single, other], pol, 1.0)


def test_scan_command_with_executor(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # relative paths: the split scan records them as given, like the single-process scan
    model, data = Path("examples/digits_mlp.onnx"), Path("examples/digits.npz")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["scan", str(model), "--data", str(data), "--policy", TINY, "--json", str(a), "-q"]) == 0
    assert main(["scan", str(model), "--data", str(data), "--policy", TINY, "--json", str(b), "-q", "--executor", "local", "--workers", "2"]) == 0
    from onnxguard.report import load_report

    assert stable_view(load_report(a.read_text())) == stable_view(load_report(b.read_text()))
    assert main(["scan", str(model), "--workers", "2", "-q"]) == 2  # --workers needs --executor
    assert main(["scan", str(model), "--executor", "local", "--no-sandbox", "-q"]) == 2


def test_executor_scan_is_a_drop_in_for_scan_isolated(fleet):
    d, models, priv, pub = fleet
    pol = load_policy(TINY)
    with get_executor("local", workers=1) as ex:
        rep = ex.scan(ScanOptions(model_path=models[0], policy=pol))
        assert rep.summary.verdict == "pass"
        from onnxguard.errors import ModelLoadError

        junk = d / "junk.onnx"
        junk.write_bytes(b"not a model")
        with pytest.raises(ModelLoadError):
            ex.scan(ScanOptions(model_path=junk, policy=pol))


def test_closing_the_executor_on_an_error_kills_the_running_scans(fleet, tmp_path):
    from onnxguard.fleet import ScanJob, Resources

    d, models, priv, pub = fleet
    pol = tmp_path / "slowish.toml"
    pol.write_text(SLOWISH_POLICY.replace("budget = 1500", "budget = 200000"))  # minutes, unless cancelled
    lp = load_policy(str(pol))
    ex = get_executor("local", workers=1)
    futs = [ex.submit(ScanJob(f"j{i}", ScanOptions(model_path=models[0], policy=lp), limits_for(lp), Resources())) for i in range(2)]
    from tests.fleet_helpers import sandbox_children

    deadline = time.monotonic() + 60
    while not sandbox_children(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.01)
    ex.close(wait=False)
    out = futs[0].result(timeout=30)
    assert out.kind == "cancelled" and futs[1].cancelled()
    assert not sandbox_children(os.getpid())


def test_an_unreachable_ray_address_fails_fast_with_a_message():
    from onnxguard.errors import BadInputError, ScanFailed
    from onnxguard.fleet.executors import _reachable

    with pytest.raises(ScanFailed, match="cannot reach the Ray cluster"):
        _reachable("127.0.0.1:1", timeout_s=2)
    with pytest.raises(ScanFailed, match="cannot reach"):
        _reachable("ray://127.0.0.1:1", timeout_s=2)
    with pytest.raises(BadInputError):
        _reachable("ray://127.0.0.1:port")
    _reachable("auto")  # left to Ray
