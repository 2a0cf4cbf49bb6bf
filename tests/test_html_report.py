"""The governance page: structure of rendered reports (passing, failing, backdoored),
escaping of untrusted text, charts and images, the CLI, and a headless-browser check."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from onnxguard.cli import main
from onnxguard.formats.html import check_sentence, render
from onnxguard.verify import Verification
from onnxguard.formats.png import png_bytes
from onnxguard.report import EvasionCheck, QueryStats, Rate, load_report
from tests import report_fixtures as rf
from tests.conftest import EXAMPLE_DATA, EXAMPLE_MODEL

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    """Collects elements (tag, attrs, parent stack) and text; records unbalanced tags."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None], tuple[str, ...]]] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text_by_tag: dict[str, list[str]] = {}
        self.texts: list[str] = []
        self.doctype = None
        self.feed(text)
        self.close()
        if self.stack:
            self.errors.append(f"unclosed: {self.stack}")

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), tuple(self.stack)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), tuple(self.stack)))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()

    def handle_data(self, data):
        if self.stack:
            self.text_by_tag.setdefault(self.stack[-1], []).append(data)
        self.texts.append(data)

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.texts))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a, _ in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def ids(self) -> set[str]:
        return {a["id"] for _, a, _ in self.elements if a.get("id")}


def decode_png(uri: str) -> tuple[int, int, int]:
    """(width, height, colour type) of a data-URI PNG, checking every chunk's CRC and the pixel data's length."""
    assert uri.startswith("data:image/png;base64,")
    raw = base64.b64decode(uri.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(raw):
        (n,) = struct.unpack(">I", raw[pos : pos + 4])
        kind, data = raw[pos + 4 : pos + 8], raw[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", raw[pos + 8 + n : pos + 12 + n])
        assert zlib.crc32(kind + data) & 0xFFFFFFFF == crc
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat += data
        pos += 12 + n
    assert ihdr is not None
    w, h, depth, colour = ihdr[:4]
    channels = {0: 1, 2: 3}[colour]
    assert len(zlib.decompress(idat)) == h * (1 + w * channels * depth // 8)
    return w, h, colour


def assert_self_contained(page: Page, html: str) -> None:
    assert page.errors == []
    assert page.doctype and page.doctype.lower() == "doctype html"
    assert not page.find("script") and "<script" not in html.lower()
    assert len([a for t, a, st in page.elements if t == "title" and "svg" not in st]) == 1
    csp = [a for a in page.find("meta") if (a.get("http-equiv") or "").lower() == "content-security-policy"]
    assert csp and "default-src 'none'" in (csp[0]["content"] or "")
    for _, attrs, _ in page.elements:
        for k, v in attrs.items():
            assert not k.startswith("on"), f"event handler attribute {k}"
            if k in ("src", "href", "xlink:href") and v:
                assert v.startswith(("data:image/png;base64,", "#", "url(#")), f"external reference {k}={v[:60]}"
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html


def assert_charts_accessible(page: Page) -> None:
    svgs = [(i, a) for i, (t, a, _) in enumerate(page.elements) if t == "svg"]
    for i, a in svgs:
        assert a.get("role") == "img"
        ids = (a.get("aria-labelledby") or "").split()
        assert len(ids) == 2 and all(x in page.ids() for x in ids)
    for tag in ("title", "desc"):
        in_svg = [a for t, a, st in page.elements if t == tag and "svg" in st]
        assert len(in_svg) == len(svgs)
    for img in page.find("img"):
        assert img.get("alt"), "every image has alt text"


# ---------------------------------------------------------------- fixtures: real scans


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    d = tmp_path_factory.mktemp("html")
    failing = rf.scan(EXAMPLE_MODEL, EXAMPLE_DATA, rf.write_policy(d / "failing.toml", rf.FAILING_POLICY), d / "failing")
    passing = rf.scan(EXAMPLE_MODEL, EXAMPLE_DATA, rf.write_policy(d / "passing.toml", rf.PASSING_POLICY), d / "passing")
    bpol = rf.write_policy(d / "backdoor.toml", rf.BACKDOOR_POLICY)
    back = rf.scan(EXAMPLE_MODEL, EXAMPLE_DATA, d / "failing.toml", d / "backdoored")  # the section is added, not searched
    back = rf.add_backdoor(back, bpol, d / "backdoored")
    return {"dir": d, "failing": failing, "passing": passing, "backdoored": back}


def test_failing_report_page(scans):
    r = scans["failing"]
    assert r.summary.verdict == "fail"
    html = render(r)
    page = Page(html)
    assert_self_contained(page, html)
    assert_charts_accessible(page)
    assert {"summary", "model", "data", "evasion", "static", "limits", "repro", "check-square-linf", "check-square-l2"} <= page.ids()
    assert "backdoor" not in page.ids()
    text = page.text
    assert "✗ FAIL" in text and "UNSIGNED REPORT" in text
    assert r.model.sha256 in text and "review-demo" in text and r.policy.sha256 in text
    # the plain-language sentence with the real counts
    c = r.checks[0]
    assert f"An attacker who can query scores flipped {c.success_rate.successes} of {c.success_rate.n} correctly classified inputs " \
           "while changing no pixel by more than 10% of its valid range" in text
    # robustness curve: one chart, its desc lists every epsilon, and a data table
    svgs = page.find("svg")
    assert len(svgs) == 1
    desc = "".join(page.text_by_tag.get("desc", []))
    for p in c.robustness_curve:
        assert f"at epsilon {p.epsilon * 100:g}%" in desc
    # image triplets from the saved adversarials, decodable PNGs
    imgs = page.find("img")
    assert imgs and len(imgs) % 3 == 0
    for img in imgs:
        w, h, colour = decode_png(img["src"])
        assert (w, h, colour) == (96, 96, 0)
    assert "Reproducing this report" in text and f"--seed {r.seed}" in text
    assert "backdoor search: not part of this report" in text


def test_passing_report_page(scans):
    r = scans["passing"]
    assert r.summary.verdict == "pass", r.summary.reasons
    html = render(r)
    page = Page(html)
    assert_self_contained(page, html)
    assert "✓ PASS" in page.text
    assert "every graded figure is within the policy's thresholds" in page.text
    c = r.checks[0]
    if c.success_rate.successes == 0:
        assert "flipped none of the" in page.text and "this is not a proof of robustness" in page.text
    assert not page.find("svg")  # a single epsilon: no curve


def test_backdoored_report_page(scans):
    r = scans["backdoored"]
    b = r.backdoor
    assert b.flagged_classes == [7] and r.summary.verdict == "fail"
    html = render(r)
    page = Page(html)
    assert_self_contained(page, html)
    assert_charts_accessible(page)
    assert "backdoor" in page.ids()
    text = page.text
    assert "anomalously small trigger for class 7" in text
    svg_text = " ".join(page.text_by_tag.get("text", []))
    assert "FLAGGED" in svg_text and "threshold 2" in svg_text
    # bars: one label per class in each of the two charts
    for c in range(10):
        assert svg_text.count(f"class {c}") >= 2
    # the flagged class's reversed trigger: the search's PNG is preferred to its raw arrays
    trig = [i for i in page.find("img") if "reversed trigger for class 7" in (i.get("alt") or "")]
    assert len(trig) == 1 and "class7_trigger.png" in trig[0]["alt"]
    decode_png(trig[0]["src"])
    assert "Per-class figures" in text
    # without the PNG, the mask and pattern arrays are drawn
    r2 = r.model_copy(deep=True)
    r2.backdoor.trigger_files = [f for f in b.trigger_files if f.endswith(".npy")]
    trig2 = [i for i in Page(render(r2)).find("img") if "reversed trigger for class 7" in (i.get("alt") or "")]
    assert len(trig2) == 2
    for i in trig2:
        decode_png(i["src"])


def test_a_margin_flag_stays_off_the_size_chart(scans):
    """A class flagged by the maximum-margin family carries a margin, not a trigger size (larger is more anomalous):
    the size chart leaves its bar out and says so, and the index chart names the margin family's scale."""
    r = scans["backdoored"].model_copy(deep=True)
    row = r.backdoor.classes[7]
    row.trigger_kind, row.trigger_size, row.attack_success = "margin", 400.0, None
    page = Page(render(r))
    svg_text = " ".join(page.text_by_tag.get("text", []))
    assert "score margin 400: larger is more anomalous" in svg_text
    desc = " ".join(page.text_by_tag.get("desc", []))
    assert "class 7: score margin 400 (maximum-margin family)" in desc and "class 7: trigger size" not in desc
    assert "margin family: -log10 p" in svg_text or "margin family: -log10 p" in page.text


def test_real_backdoor_scan_page(tmp_path):
    """A real scan of a BadNets-backdoored fixture (target 3, top-right patch): the search flags class 3 and the
    page shows the bars, the threshold and the reversed trigger the search saved."""
    pol = rf.write_policy(tmp_path / "p.toml", rf.BACKDOOR_POLICY.replace("samples = 24", "samples = 10").replace("budget = 150", "budget = 50"))
    model = rf.BACKDOOR_FIXTURES / "badnets_t3_tr.onnx"
    r = rf.scan(model, rf.BACKDOOR_FIXTURES / "digits16.npz", pol, tmp_path / "out")
    assert r.backdoor is not None and r.backdoor.status == "completed" and r.backdoor.flagged_classes == [3]
    html = render(load_report((tmp_path / "out" / "report.json").read_text()), base_dir=tmp_path / "out")
    page = Page(html)
    assert_self_contained(page, html)
    assert_charts_accessible(page)
    assert "anomalously small trigger for class 3" in page.text
    svg_text = " ".join(page.text_by_tag.get("text", []))
    assert "FLAGGED" in svg_text and f"threshold {r.backdoor.anomaly_threshold:g}" in svg_text
    trig = [i for i in page.find("img") if "reversed trigger for class 3" in (i.get("alt") or "")]
    assert len(trig) == 1 and decode_png(trig[0]["src"])[2] in (0, 2)


def test_paths_relative_to_the_report_folder(scans, tmp_path):
    """A report moved with its files renders its triplets and triggers from the new place."""
    src = scans["dir"] / "backdoored"
    dst = tmp_path / "moved"
    shutil.copytree(src, dst)
    r = load_report((dst / "report.json").read_text())
    r.backdoor.trigger_files = [Path(f).name for f in r.backdoor.trigger_files]
    for c in r.checks:
        c.adversarials = Path(c.adversarials).name if c.adversarials else None
    page = Page(render(r, base_dir=dst / "adv"))
    assert len(page.find("img")) > 0
    page2 = Page(render(r, base_dir=dst / "triggers"))
    assert any("reversed trigger" in (i.get("alt") or "") for i in page2.find("img"))
    page3 = Page(render(r, base_dir=tmp_path / "nowhere"))
    assert not page3.find("img") and "could not be found next to the report" in page3.text


def test_hostile_metadata_is_escaped(scans):
    r = scans["failing"].model_copy(deep=True)
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>\x1b[31m\u202e'
    r.model.path = evil
    r.model.producer = evil
    r.model.inputs[0].name = evil
    r.notes.append(evil)
    r.summary.reasons.append(evil)
    html = render(r)
    page = Page(html)
    assert_self_contained(page, html)
    assert "<script>alert(1)</script>" in page.text  # shown as text, never as markup
    assert "\x1b" not in html and "\u202e" not in html


def test_verified_and_unverified_banners(scans):
    r = scans["passing"]
    v = Page(render(r, verified=Verification(keyid="SHA256:abc123", key_source="pub.pem", checks=("signature", "schema"))))
    assert "SIGNED AND VERIFIED" in v.text and "SHA256:abc123" in v.text and "UNSIGNED" not in v.text
    u = Page(render(r, verified=Verification(keyid="SHA256:abc123", verified=False)))
    assert "SIGNATURE NOT VERIFIED" in u.text and "SIGNED AND VERIFIED" not in u.text


# ---------------------------------------------------------------- wording and images


def _check(**kw) -> EvasionCheck:
    base = dict(id="c", attack="square", norm="linf", epsilon=0.03, epsilons=[0.03], threat_model="scores", status="completed",
                n_samples=100, n_attacked=100, success_rate=Rate.of(87, 100), queries=QueryStats.of(np.full(100, 50), 1000))
    base.update(kw)
    return EvasionCheck(**base)


def test_check_sentences(scans):
    r = scans["failing"]
    assert check_sentence(_check(), r) == ("An attacker who can query scores flipped 87 of 100 correctly classified inputs while changing no pixel "
                                          "by more than 3% of its valid range, using at most 50 model queries per input.")
    s = check_sentence(_check(norm="l2", epsilon=1.0, epsilons=[1.0], threat_model="labels"), r)
    assert s.startswith("An attacker who sees only the predicted label flipped 87 of 100")
    assert "L2 norm" in s and "every one of the 64 pixels by 12.5%" in s
    assert "by changing at most 3 pixels" in check_sentence(_check(norm="l0", epsilon=3, epsilons=[3.0]), r)
    assert "forced 87 of 100 correctly classified inputs into class 4" in check_sentence(_check(targeted=True, target=4), r)
    assert "flipped none of the 100" in check_sentence(_check(success_rate=Rate.of(0, 100)), r)
    assert check_sentence(_check(status="not_run", reason="hopskipjump is not available"), r) == "This check was not run: hopskipjump is not available."
    assert check_sentence(_check(attack="hopskipjump", norm="l2", epsilon=1.0), r).startswith("An attacker who sees only the predicted label")


def test_min_perturbation_with_unbounded_interval(scans):
    """More than half the inputs never broke: the median is not reached and the interval is unbounded."""
    from onnxguard.report import Quantity

    r = scans["failing"].model_copy(deep=True)
    c = r.checks[0]
    c.min_perturbation = Quantity.of(np.array([0.02, 0.05, np.inf, np.inf, np.inf]))
    text = Page(render(r)).text
    assert "median not reached (more than half never broke)" in text and "3 of 5 never broke within the budget" in text
    assert "inf%" not in text and "nan" not in text.lower().split()


@pytest.mark.parametrize("shape", [(5, 7), (4, 6, 3)])
def test_png_writer(shape):
    img = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    raw = png_bytes(img)
    w, h, colour = decode_png("data:image/png;base64," + base64.b64encode(raw).decode())
    assert (w, h, colour) == (shape[1], shape[0], 0 if len(shape) == 2 else 2)
    # the filtered scanlines decode back to the pixels
    body = zlib.decompress(raw[raw.index(b"IDAT") + 4 : raw.index(b"IEND") - 8])
    rows = np.frombuffer(body, dtype=np.uint8).reshape(h, -1)
    assert (rows[:, 0] == 0).all() and (rows[:, 1:].reshape(img.shape) == img).all()


# ---------------------------------------------------------------- CLI


def test_cli_render_plain_and_signed(scans, tmp_path, capsys):
    rep = scans["dir"] / "failing" / "report.json"
    out = tmp_path / "page.html"
    assert main(["report", "render", str(rep), "--out", str(out)]) == 0
    assert "UNSIGNED REPORT" in out.read_text()
    # a plain report cannot be presented as verified
    key = tmp_path / "pub.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
    assert main(["report", "render", str(rep), "--out", str(tmp_path / "x.html"), "--key", str(key)]) == 1
    assert "nothing to verify" in capsys.readouterr().err
    # an envelope is never rendered silently without verification
    statement = {"_type": "https://in-toto.io/Statement/v1", "subject": [], "predicateType": "x", "predicate": json.loads(rep.read_text())}
    env = {"payloadType": "application/vnd.in-toto+json", "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
           "signatures": [{"keyid": "SHA256:feedface", "sig": "AAAA"}]}
    envf = tmp_path / "signed.json"
    envf.write_text(json.dumps(env))
    assert main(["report", "render", str(envf), "--out", str(tmp_path / "y.html")]) == 2
    assert "--key" in capsys.readouterr().err and not (tmp_path / "y.html").exists()
    assert main(["report", "render", str(envf), "--out", str(tmp_path / "z.html"), "--no-verify"]) == 0
    z = Page((tmp_path / "z.html").read_text()).text
    assert "SIGNATURE NOT VERIFIED" in z and "SHA256:feedface" in z and "SIGNED AND VERIFIED" not in z
    # a forged signature never verifies
    rc = main(["report", "render", str(envf), "--out", str(tmp_path / "w.html"), "--key", str(key)])
    assert rc != 0 and not (tmp_path / "w.html").exists()
    # not a report
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    assert main(["report", "render", str(bad), "--out", str(tmp_path / "b.html")]) == 2


def test_cli_scan_html(tmp_path):
    pol = rf.write_policy(tmp_path / "p.toml", rf.PASSING_POLICY)
    out = tmp_path / "scan.html"
    rc = main(["scan", str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--policy", str(pol), "--html", str(out), "-q"])
    assert rc == 0
    page = Page(out.read_text())
    assert page.errors == [] and "✓ PASS" in page.text


# ---------------------------------------------------------------- headless browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    return None


def screenshot(browser: str, page: Path, png: Path, profile: Path, height: int = 2400) -> list[str]:
    """Open ``page`` headless, write a screenshot; return the console messages Chromium logged."""
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           f"--window-size=1100,{height}", f"--screenshot={png}", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.is_file(), f"no screenshot; chromium said: {proc.stderr[-2000:]}"
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def browser():
    b = _chromium()
    if b is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it where it can)")
    try:
        ok = subprocess.run([b, "--version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pytest.skip(f"{b} is installed but does not start (`{b} --version` failed)")
    return b


def test_page_in_headless_chromium(browser, scans, tmp_path):
    page = tmp_path / "backdoored.html"
    page.write_text(render(scans["backdoored"]), encoding="utf-8")
    png = tmp_path / "shot.png"
    console = screenshot(browser, page, png, tmp_path / "profile")
    assert console == []
    raw = png.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", raw[16:24])
    assert (w, h) == (1100, 2400) and len(raw) > 50_000


def test_console_errors_are_detected(browser, tmp_path):
    """The check above can fail: a page loading an outside image is reported through the console."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">"
                    "<title>x</title></head><body><img src=\"https://example.invalid/x.png\" alt=\"x\"></body></html>")
    console = screenshot(browser, page, tmp_path / "bad.png", tmp_path / "profile", height=300)
    assert console and "Content Security Policy" in " ".join(console)


LABELS_ONLY_POLICY = """
[policy]
name = "labels-only"
version = "1"

[threat_model]
access = "labels"

[[checks]]
id = "sparse-l0"
attack = "sparse-rs"
norm = "l0"
epsilon = 2
samples = 10
budget = 50

[backdoor]
enabled = false
"""


def test_tabular_model_with_checks_that_could_not_run(tabular, tmp_path):
    """No images for a tabular model; a check that could not run is stated, with its reason, and drives a WARN."""
    mp, dp, _, _ = tabular
    r = rf.scan(mp, dp, rf.write_policy(tmp_path / "p.toml", LABELS_ONLY_POLICY), tmp_path / "out")
    assert r.checks[0].status == "not_run" and r.summary.verdict == "warn"
    html = render(r)
    page = Page(html)
    assert_self_contained(page, html)
    assert not page.find("img") and not page.find("svg")
    text = page.text
    assert "! WARN" in text and "(treated as an image)" not in text
    assert f"This check was not run: {r.checks[0].reason}." in text
    assert "What could not be tested, and why" in text and "check sparse-l0" in text
    assert "feature" in check_sentence(_check(), r) and "pixel" not in check_sentence(_check(), r)


def test_cli_render_verifies_signed_reports(scans, tmp_path, capsys):
    """A signed report is verified before rendering; the page names the key; any failure writes no page."""
    from onnxguard.keys import keyid, load_private_key, write_keypair
    from onnxguard.signing import sign_report

    priv, pub = write_keypair(tmp_path / "reviewer")
    _, other_pub = write_keypair(tmp_path / "stranger")
    key = load_private_key(priv)
    r = scans["failing"]
    env = sign_report(r, key)
    signed = tmp_path / "signed.json"
    signed.write_text(json.dumps(env))
    out = tmp_path / "verified.html"
    assert main(["report", "render", str(signed), "--out", str(out), "--key", str(pub), "--model", str(EXAMPLE_MODEL)]) == 0
    page = Page(out.read_text())
    assert page.errors == []
    banner = " ".join(page.text.split("Verdict")[:1])
    assert "SIGNED AND VERIFIED" in banner and keyid(key) in banner and "model-digest" in banner and "UNSIGNED" not in page.text
    capsys.readouterr()

    def refused(args: list[str], code: int, words: str) -> None:
        dst = tmp_path / "refused.html"
        assert main(["report", "render", *args, "--out", str(dst)]) == code
        assert words in capsys.readouterr().err
        assert not dst.exists()

    refused([str(signed), "--key", str(other_pub)], 1, "signature")
    tampered = json.loads(signed.read_text())
    payload = json.loads(base64.b64decode(tampered["payload"]))
    payload["predicate"]["summary"]["verdict"] = "pass"
    tampered["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    refused([str(tmp_path / "tampered.json"), "--key", str(pub)], 1, "signature")
    other_model = tmp_path / "other.onnx"
    other_model.write_bytes(EXAMPLE_MODEL.read_bytes() + b"\0")
    refused([str(signed), "--key", str(pub), "--model", str(other_model)], 1, "model")
    refused([str(signed), "--model", str(EXAMPLE_MODEL)], 2, "--model needs --key")


def test_tabular_trigger_table(tabular, tmp_path):
    """A flagged class of a tabular model: its trigger (feature indices and values) is shown as a table."""
    from onnxguard.report import BackdoorSection, ClassTrigger

    mp, dp, _, _ = tabular
    r = rf.scan(mp, dp, rf.write_policy(tmp_path / "p.toml", rf.PASSING_POLICY), tmp_path / "out")
    np.save(tmp_path / "class1-features.npy", np.array([[3.0, 17.0], [4.5, -2.0]]))
    r.backdoor = BackdoorSection(status="completed", classes=[ClassTrigger(cls=0, full_search=True, trigger_size=5.0, anomaly_index=-0.7),
                                                              ClassTrigger(cls=1, full_search=True, trigger_size=2.0, anomaly_index=3.5)],
                                 flagged_classes=[1], anomaly_threshold=2.0, max_anomaly_index=3.5, trigger_files=[str(tmp_path / "class1-features.npy")])
    page = Page(render(r))
    assert page.errors == [] and not page.find("img")
    assert "The reversed trigger for class 1 (class1-features.npy)" in page.text
    cells = [c.strip() for c in page.text_by_tag.get("td", [])]
    assert {"3", "17", "4.5", "-2"} <= set(cells)


def test_page_prints_to_pdf(browser, scans, tmp_path):
    """Printable: Chromium's print path (print CSS, page breaks) produces a multi-page PDF."""
    page = tmp_path / "failing.html"
    page.write_text(render(scans["failing"]), encoding="utf-8")
    pdf = tmp_path / "page.pdf"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--no-pdf-header-footer",
           f"--print-to-pdf={pdf}", page.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120)
    raw = pdf.read_bytes()
    assert raw.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page[^s]", raw)) >= 2


@pytest.mark.parametrize("shape,colour", [((3, 8, 8), 2), ((8, 8, 3), 2), ((8, 8), 0)])
def test_triplets_for_colour_and_channels_last_images(scans, tmp_path, shape, colour):
    """Images in (C, H, W), (H, W, C) and (H, W): triplets decode with the right colour type; per-feature ranges apply."""
    r = scans["failing"].model_copy(deep=True)
    r.model.sample_shape = list(shape)
    n = int(np.prod(shape))
    r.data.value_range.lo = [0.0] * n
    r.data.value_range.hi = [255.0] * n
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(3, *shape))
    xa = np.clip(x + rng.uniform(-8, 8, size=x.shape), 0, 255)
    path = tmp_path / "adv.npz"
    np.savez(path, x=x, x_adv=xa, y=np.array([1, 2, 3]), success=np.array([True, False, True]))
    r.checks = r.checks[:1]
    page = Page(render(r, adversarials={r.checks[0].id: path}))
    imgs = page.find("img")
    assert len(imgs) == 6  # two successful examples, three images each
    for i in imgs:
        w, h, c = decode_png(i["src"])
        assert c == colour and w == h == 96
