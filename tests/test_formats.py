"""Every output format behind one interface, in one registry that the CLI's choices come from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onnxguard.cli import main
from onnxguard.formats import FORMATS, get_format
from onnxguard.formats.base import OutputFormat, RenderContext
from onnxguard.keys import generate_key, public_key_of
from onnxguard.verify import verify_envelope
from tests import report_fixtures as rf


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    return rf.scan(EXAMPLES / "digits_mlp.onnx", EXAMPLES / "digits.npz", rf.write_policy(d / "p.toml", rf.FAILING_POLICY), d / "out")


def test_registry_holds_every_format_behind_one_interface(report):
    assert set(FORMATS) == {"json", "dsse", "sarif", "html", "text"}
    key = generate_key()
    for name in FORMATS:
        fmt = get_format(name)
        assert isinstance(fmt, OutputFormat) and fmt.name == name and fmt.description
        out = fmt.render(report, RenderContext(key=key))
        assert isinstance(out, str) and out.endswith("\n") or name == "html"
    assert json.loads(get_format("json").render(report))["model"]["sha256"] == report.model.sha256
    assert get_format("html").render(report).lstrip().lower().startswith("<!doctype html>")
    assert "verdict" in get_format("text").render(report)
    env = json.loads(get_format("dsse").render(report, RenderContext(key=key)))
    assert verify_envelope(env, [public_key_of(key)]).report.model.sha256 == report.model.sha256


def test_signed_format_without_a_key_refuses(report):
    from onnxguard.errors import SigningError

    with pytest.raises(SigningError):
        get_format("dsse").render(report)


def test_cli_format_choices_come_from_the_registry(tmp_path: Path, capsys):
    code = main(["scan", str(EXAMPLES / "digits_mlp.onnx"), "--format", "nope", "-q"])
    assert code == 2
    cap = capsys.readouterr()
    assert all(name in cap.out + cap.err for name in FORMATS), cap
