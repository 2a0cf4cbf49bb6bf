"""Policies are bounded: infinities, NaN, absurd values and deep nesting are refused with exit 2 naming the key."""

from __future__ import annotations

import pytest

from onnxguard.cli import main
from onnxguard.errors import PolicyError
from onnxguard.policy import MAX_POLICY_DEPTH, parse_policy

from .conftest import TINY_POLICY


@pytest.mark.parametrize("old,new,key", [
    ("timeout_s = 30", "timeout_s = inf", "limits.timeout_s"),
    ("timeout_s = 30", "timeout_s = nan", "limits.timeout_s"),
    ("timeout_s = 30", "timeout_s = 1e300", "limits.timeout_s"),
    ("timeout_s = 30", "timeout_s = 30\ninference_timeout_s = inf", "limits.inference_timeout_s"),
    ("timeout_s = 30", "timeout_s = 30\ninference_timeout_s = 0", "limits.inference_timeout_s"),
    ("max_memory_mb = 1024", "max_memory_mb = 100000000000", "limits.max_memory_mb"),
    ("budget = 10", "budget = 10\n[checks.success_rate]\nworse = 'higher'\nmedium = 0.1\nhigh = inf\ncritical = inf", "checks.0.success_rate.high"),
    ("[backdoor]\nenabled = false", "[backdoor]\nenabled = false\ntime_limit_s = inf", "backdoor.time_limit_s"),
])
def test_out_of_range_values_name_the_key(old, new, key):
    assert old in TINY_POLICY
    with pytest.raises(PolicyError) as e:
        parse_policy(TINY_POLICY.replace(old, new).encode(), "p.toml")
    assert key in str(e.value)


@pytest.mark.parametrize("text", [
    TINY_POLICY + "x = " + "[" * 100_000 + "]" * 100_000 + "\n",
    TINY_POLICY + "y = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n",
    '{"policy": ' * 50_000 + "1" + "}" * 50_000,
])
def test_deep_nesting_is_refused_before_parsing(text):
    with pytest.raises(PolicyError, match="nested"):
        parse_policy(text.encode(), "deep.toml")


def test_nesting_inside_strings_and_comments_does_not_count():
    text = TINY_POLICY.replace('version = "1"', 'version = "1"\ndescription = "' + "[" * 500 + '" # ' + "{" * 500)
    assert parse_policy(text.encode(), "p.toml").policy.policy.description.startswith("[[[")
    assert MAX_POLICY_DEPTH >= 8


def test_cli_exit_2_naming_the_key(tmp_path, capsys):
    p = tmp_path / "bad.toml"
    p.write_text(TINY_POLICY.replace("timeout_s = 30", "timeout_s = inf"))
    assert main(["policy", "validate", str(p)]) == 2
    assert "limits.timeout_s" in capsys.readouterr().err
