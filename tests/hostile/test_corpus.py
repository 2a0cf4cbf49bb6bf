"""The hostile corpus, end to end through `onnxguard scan` (sandboxed): one test per case.

For every case: the secret outside the model's folder appears nowhere in stdout, stderr or
the report; the parent process survives (a documented exit code, no traceback); the
message says what was wrong; the scan finishes within its limits.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.hostile import build_corpus as bc


def _names() -> list[str]:
    d = Path(tempfile.mkdtemp(prefix="og-corpus-names-"))
    try:
        return [c.name for c in bc.build(d)[0]]
    finally:
        shutil.rmtree(d, ignore_errors=True)


CASES = _names()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile")
    cases, secret, secret_text = bc.build(out)
    with ThreadPoolExecutor(2) as ex:  # children are separate processes: two at a time on a small machine
        outcomes = list(ex.map(lambda c: bc.run_case(c, out, out / "policy.toml"), cases))
    return {o.case.name: o for o in outcomes}, secret, secret_text


def test_corpus_is_large_and_covers_the_brief():
    assert len(CASES) >= 75
    for must in ("ext_traversal", "ext_absolute", "ext_symlink", "ext_dir_symlink", "ext_hardlink", "ext_past_eof",
                 "bomb_constantofshape", "bomb_runtime", "endless_loop", "truncated_half", "random_bytes",
                 "custom_domain", "hostile_metadata", "deep_subgraphs", "zero_size", "directory", "no_inputs",
                 # issue 12: links and devices at the model path, huge and nested Loops, the watchdog, data bombs,
                 # out-of-range policies, escapes in file names
                 "model_symlink_secret", "model_symlink_dev_zero", "snapshot_link_followed", "ext_follow_confined",
                 "loop_1e12", "loop_nested", "loop_data_driven", "data_bomb_npz", "data_rows_npy", "data_longline_csv",
                 "data_bigfield_csv", "policy_inf_timeout", "policy_deep", "escape_in_filename"):
        assert must in CASES


@pytest.mark.parametrize("name", CASES)
def test_case(corpus, name):
    outcomes, _, secret_text = corpus
    o = outcomes[name]
    assert bc.problems(o, secret_text) == [], (o.rc, o.stdout[-500:], o.stderr[-500:])


def test_secret_is_intact_and_parent_memory_is_small(corpus):
    outcomes, secret, secret_text = corpus
    assert secret.read_bytes().startswith(secret_text.encode())
    rss = [o.parent_maxrss_kb for o in outcomes.values() if o.parent_maxrss_kb]
    assert rss and max(rss) < 400 * 1024, max(rss)  # the parent never holds the model's tensors
