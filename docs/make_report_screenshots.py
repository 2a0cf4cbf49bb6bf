"""Rebuild the governance-page examples and their screenshots under docs/ (needs headless Chromium).

    python docs/make_report_screenshots.py

* ``report-failing.html/.png``     a real scan of examples/digits_cnn.onnx under the ``standard`` policy (it fails),
  signed with a throwaway key and verified before rendering
* ``report-backdoored.html/.png``  a real scan, backdoor search included, of the BadNets fixture
  tests/backdoor/fixtures/badnets_t3_tr.onnx (patch trigger, target class 3) under ``standard``
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from onnxguard.verify import load_for_render  # noqa: E402
from onnxguard.formats.html import render  # noqa: E402
from onnxguard.keys import load_private_key, write_keypair  # noqa: E402
from onnxguard.signing import sign_report  # noqa: E402
from tests import report_fixtures as rf  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--hide-scrollbars"]
WIDTH = 1100


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    sys.exit("headless Chromium is needed (Debian: apt-get install chromium)")


def page_height(browser: str, html: str, tmp: Path) -> int:
    """The page's full height, measured on a throwaway copy that may run one line of script."""
    probe = tmp / "probe.html"
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    probe.write_text(html.replace("</body>", "<script>document.title = 'H' + document.documentElement.scrollHeight;</script></body>"))
    out = subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp / 'p1'}", f"--window-size={WIDTH},1000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"<title>H(\d+)</title>", out)
    return int(m.group(1)) + 16 if m else 6000


def shoot(browser: str, html_path: Path, png: Path, tmp: Path) -> None:
    h = page_height(browser, html_path.read_text(encoding="utf-8"), tmp)
    subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp / 'p2'}", f"--window-size={WIDTH},{h}", f"--screenshot={png}", html_path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    print(f"{png.relative_to(ROOT)}: {WIDTH}x{h}")


def relative_files(report, base: Path):
    """Record the report's files relative to its folder, as when a report is filed with its files."""
    for c in report.checks:
        if c.adversarials:
            c.adversarials = str(Path(c.adversarials).relative_to(base))
    if report.backdoor is not None:
        report.backdoor.trigger_files = [str(Path(f).relative_to(base)) for f in report.backdoor.trigger_files]
    return report


def main() -> None:
    browser = chromium()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        model, data = ROOT / "examples" / "digits_cnn.onnx", ROOT / "examples" / "digits16.npz"
        rel_model, rel_data = Path("examples/digits_cnn.onnx"), Path("examples/digits16.npz")
        import os

        os.chdir(ROOT)  # so the report records repository-relative paths
        failing = relative_files(rf.scan(rel_model, rel_data, Path("standard"), tmp / "failing"), tmp / "failing")
        # the failing page goes the reviewer's way: signed with a throwaway key, verified, then rendered
        priv, pub = write_keypair(tmp / "demo-key")
        signed = tmp / "failing" / "signed.json"
        signed.write_text(json.dumps(sign_report(failing, load_private_key(priv))), encoding="utf-8")
        verified_report, verification = load_for_render(signed, pub, model_path=rel_model)
        (HERE / "report-failing.html").write_text(render(verified_report, verified=verification, base_dir=tmp / "failing"), encoding="utf-8")
        bd_model = Path("tests/backdoor/fixtures/badnets_t3_tr.onnx")  # BadNets patch, target class 3, top-right corner
        back = rf.scan(bd_model, Path("tests/backdoor/fixtures/digits16.npz"), Path("standard"), tmp / "backdoored")
        back = relative_files(back, tmp / "backdoored")
        (HERE / "report-backdoored.html").write_text(render(back, base_dir=tmp / "backdoored"), encoding="utf-8")
        assert model.is_file() and data.is_file()
        for name in ("report-failing", "report-backdoored"):
            shoot(browser, HERE / f"{name}.html", HERE / f"{name}.png", tmp)


if __name__ == "__main__":
    main()
