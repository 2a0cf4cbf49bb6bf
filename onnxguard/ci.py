"""Scanning several files for CI gates: the pre-commit hook and the GitHub Action.

``onnxguard-precommit [SCAN OPTIONS] FILE.onnx...`` scans each file with
``onnxguard scan`` and exits with the worst exit code (1: a policy rejected a
file; 2: bad input; 3: a scan failed). ``--sarif PATH`` also writes one SARIF
2.1.0 log holding a run per file, for code-scanning upload.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from .cli import main as cli_main


def split_args(argv: list[str]) -> tuple[list[str], list[str], Path | None]:
    """(scan options, model files, SARIF path): the files are the trailing ``.onnx`` arguments."""
    args = list(argv)
    sarif = None
    if "--sarif" in args:
        i = args.index("--sarif")
        if i + 1 >= len(args):
            raise SystemExit("onnxguard-precommit: --sarif needs a path")
        sarif = Path(args[i + 1])
        del args[i : i + 2]
    files: list[str] = []
    while args and args[-1].lower().endswith(".onnx"):
        files.insert(0, args.pop())
    return args, files, sarif


def scan_files(options: list[str], files: list[str], sarif: Path | None = None) -> int:
    worst = 0
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="onnxguard-ci-") as tmp:
        for i, f in enumerate(files):
            sys.stderr.write(f"== onnxguard scan {f}\n")
            extra = ["--format", "sarif", "--out", str(Path(tmp) / f"{i}.sarif")] if sarif else []
            code = cli_main(["scan", f, *options, *extra])
            worst = max(worst, code)
            out = Path(tmp) / f"{i}.sarif"
            if sarif and out.is_file():
                runs += json.loads(out.read_text(encoding="utf-8"))["runs"]
    if sarif is not None:
        from .formats.sarif import SARIF_SCHEMA

        sarif.parent.mkdir(parents=True, exist_ok=True)
        sarif.write_text(json.dumps({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": runs}, indent=2) + "\n", encoding="utf-8")
    return worst


def precommit(argv: list[str] | None = None) -> int:
    options, files, sarif = split_args(sys.argv[1:] if argv is None else argv)
    if not files and sarif is None:
        return 0
    return scan_files(options, files, sarif)


if __name__ == "__main__":
    sys.exit(precommit())
