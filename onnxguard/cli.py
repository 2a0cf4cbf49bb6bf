"""The command line. The one place where errors become messages and exit codes.

Exit codes: 0 ok / admitted; 1 rejected by policy (or a report that does not
verify); 2 bad input or usage; 3 scan failed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer

from .errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_REJECTED, EXIT_SCAN_FAILED, OnnxGuardError
from .outputs import write_atomic
from .text import sanitize

if TYPE_CHECKING:  # pragma: no cover
    from .outputs import Protected

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="onnxguard: security scanner for ONNX classifiers.",
)
policy_app = typer.Typer(add_completion=False, no_args_is_help=True, help="List, show and validate policies.")
app.add_typer(policy_app, name="policy")
report_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Render a report as a page, compare two reports.")
app.add_typer(report_app, name="report")


def err(msg: str, *, multiline: bool = False) -> None:
    """A message on stderr, sanitised; newlines (from an untrusted name) are shown escaped unless the message is
    a list by design (a broken policy names each bad key on its own line)."""
    text = sanitize(msg)
    typer.echo(text if multiline else text.replace("\n", "\\n"), err=True)


class ProgressBars:
    """One progress bar per check on stderr (a line per check when stderr is not a terminal)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()

    def __call__(self, name: str, total: int) -> Callable[[int, int], None]:
        state = {"last": -1}
        name = sanitize(name, 60).replace("\n", " ")  # a check id comes from the policy file

        def update(done: int, tot: int) -> None:
            if not self.enabled:
                return
            frac = min(1.0, done / max(tot, 1))
            pct = int(frac * 100)
            if self.tty:
                if pct != state["last"]:
                    bar = "#" * (pct // 4) + "-" * (25 - pct // 4)
                    end = "\n" if pct >= 100 else ""
                    sys.stderr.write(f"\r  {name:<22} [{bar}] {pct:3d}%{end}")
                    sys.stderr.flush()
            elif pct >= 100 and state["last"] < 100:
                sys.stderr.write(f"  {name:<22} done\n")
            state["last"] = pct

        return update


def _fmt_rate(rate: object) -> str:
    if rate is None:
        return "-"
    r = rate  # type: ignore[assignment]
    if r.n == 0:  # type: ignore[attr-defined]
        return "n=0"
    return f"{r.value:.1%} [{r.ci.low:.1%}, {r.ci.high:.1%}] n={r.n}"  # type: ignore[attr-defined]


def print_summary(report: "object", out: Callable[[str], None]) -> None:
    from .report import Report

    assert isinstance(report, Report)
    m = report.model
    shape = f"{m.output_kind}, {m.n_classes or '?'} classes, input {m.sample_shape}" if m.output_kind else "not loaded (see below)"
    out(f"model   {Path(m.path).name}  sha256:{m.sha256[:16]}…  {shape}")
    if report.data:
        d = report.data
        out(f"data    {d.source} ({d.n_samples} samples{', SYNTHETIC' if d.synthetic else ''}; labels: {d.labels})")
    if report.clean_accuracy:
        out(f"clean accuracy {_fmt_rate(report.clean_accuracy)}")
    rows = [("check", "eps", "success rate [95% CI]", "med. queries", "risk")]
    for c in report.checks:
        if c.status != "completed":
            rows.append((c.id, f"{c.epsilon:g}" if c.epsilon is not None else "-", f"not run: {c.reason}", "-", c.risk or "-"))
            continue
        q = c.queries
        rows.append((c.id, f"{c.epsilon:g}", _fmt_rate(c.success_rate), f"{q.median:.0f}" if q and q.median is not None else "-", c.risk or "-"))
    if report.backdoor is not None:
        b = report.backdoor
        mai = f"{b.max_anomaly_index:.2f}" if b.max_anomaly_index is not None else "-"
        flagged = ",".join(map(str, b.flagged_classes)) or "none"
        rows.append(("backdoor", "-", f"{b.status}; max anomaly {mai}; flagged {flagged}", str(b.queries), b.risk or "-"))
    for t in report.transfer:
        rows.append((f"transfer:{t.attack}-{t.norm}", f"{t.epsilon:g}" if t.epsilon is not None else "-", f"transfer {_fmt_rate(t.transfer_rate)} from {Path(t.source_model).name}", "-", t.risk or "-"))
    if report.static_findings:
        worst = max(report.static_findings, key=lambda f: ["info", "low", "medium", "high", "critical"].index(f.severity))
        rows.append(("static", "-", f"{len(report.static_findings)} finding(s), worst {worst.severity}", "-", "-"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    for r in rows:
        out("  ".join(str(v).ljust(widths[i]) for i, v in enumerate(r)))
    if report.notes:
        for n in report.notes:
            out(f"note: {n}")
    devs = report.policy.deviations if report.policy else []
    if devs:
        out(f"DEVIATES from policy '{report.policy.name}' in {len(devs)} setting(s) (command-line overrides): "  # type: ignore[union-attr]
            "this report does not verify as that policy")
        for d in devs[:12]:
            out(f"  ! {d.key}: {json.dumps(d.policy_value)} -> {json.dumps(d.effective_value)}")
        if len(devs) > 12:
            out(f"  ! ... and {len(devs) - 12} more")
    if report.summary:
        s = report.summary
        pol = report.policy.name if report.policy else "-"
        pol += f", with {len(devs)} deviation(s)" if devs else ""
        out(f"verdict {s.verdict.upper()}  (highest risk: {s.highest_risk}; policy {pol})")
        for r in s.reasons[:12]:
            out(f"  - {r}")
    if report.timing:
        t = report.timing
        share = f", {t.ort_share:.0%} inside onnxruntime" if t.ort_share is not None else ""
        out(f"time    {t.wall_s:.1f}s{share}; {t.queries_total} model queries")


def _parse_range(value: Optional[str]) -> Optional[tuple[float, float]]:
    from .data import parse_range

    return parse_range(value) if value else None


@app.command()
def scan(
    model: Path = typer.Argument(..., help="the ONNX model to scan"),
    data: Optional[Path] = typer.Option(None, "--data", help="samples: .npz (x, y), .npy or .csv"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the report here"),
    fmt: Optional[str] = typer.Option(None, "--format", help="instead of the signed envelope: 'json' (plain report) or 'sarif'; to --out, else to stdout"),
    policy: Optional[str] = typer.Option(None, "--policy", help="shipped policy name or a policy file (default: standard)"),
    seed: int = typer.Option(0, "--seed", help="random seed; the same seed gives the same report"),
    value_range: Optional[str] = typer.Option(None, "--range", help="valid input range 'lo,hi' (recorded as a deviation from the policy's threat model)"),
    budget: Optional[int] = typer.Option(None, "--budget", min=1, help="override every check's queries per sample (a deviation from the policy: the report no longer verifies as it)"),
    samples: Optional[int] = typer.Option(None, "--samples", min=1, help="override every check's sample count (a deviation from the policy)"),
    target: Optional[int] = typer.Option(None, "--target", min=0, help="run every attack targeted at this class (a deviation from the policy)"),
    save_adversarials: Optional[Path] = typer.Option(None, "--save-adversarials", help="folder for adversarial inputs (.npz per check)"),
    transfer_from: Optional[Path] = typer.Option(None, "--transfer-from", help="attack this (surrogate) model and replay its adversarials on MODEL"),
    backdoor_out: Optional[Path] = typer.Option(None, "--backdoor-out", help="folder for reversed backdoor triggers (.npy; .png for images)"),
    fail_on: str = typer.Option("fail", "--fail-on", help="verdict that makes the exit code 1: 'fail' or 'warn'"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    key: Optional[Path] = typer.Option(None, "--key", help="private key that signs the report written by --out (default: $ONNXGUARD_SIGNING_KEY, else your per-user key)"),
    passphrase_env: Optional[str] = typer.Option(None, "--passphrase-env", help="environment variable holding the signing key's passphrase"),
    no_sign: bool = typer.Option(False, "--no-sign", help="--out writes the plain, unsigned report instead of a signed envelope"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the plain (unsigned) report here"),
    html: Optional[Path] = typer.Option(None, "--html", help="also write the report as a self-contained HTML page (marked unsigned)"),
    max_memory: Optional[int] = typer.Option(None, "--max-memory", min=64, help="sandbox memory limit in MB (default: the policy's limits.max_memory_mb)"),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.1, help="sandbox wall-time limit in seconds (default: the policy's limits.timeout_s)"),
    no_sandbox: bool = typer.Option(False, "--no-sandbox", help="run the model in this process, without resource limits (trusted models only)"),
    inference_timeout: Optional[float] = typer.Option(None, "--inference-timeout", min=0.1, help="wall-time limit of one model run in seconds (default: the policy's limits.inference_timeout_s)"),
    follow_symlinks: bool = typer.Option(False, "--follow-symlinks", help="scan MODEL even when it is a symbolic link (e.g. a Hugging Face cache snapshot); the report names the resolved file, and external data must sit in its folder"),
) -> None:
    """Scan MODEL with the policy's checks and write a graded report (signed, with --out).

    The model runs in a sandboxed child process (memory, CPU and wall-time limits); if it crashes or
    runs out of a limit, the report says so and the exit code is 3."""
    from .policy import apply_overrides, load_policy
    from .scan import ScanOptions, run_scan

    if fail_on not in ("fail", "warn"):
        raise typer.BadParameter("--fail-on takes 'fail' or 'warn'")
    if fmt not in (None, "json", "sarif"):
        raise typer.BadParameter("--format takes 'json' or 'sarif'")
    # every override is applied once, here, to the loaded policy; the report records each as a deviation
    pol = apply_overrides(
        load_policy(policy), budget=budget, samples=samples, target=target, value_range=_parse_range(value_range),
        max_memory_mb=max_memory, timeout_s=timeout, inference_timeout_s=inference_timeout,
    )
    if fmt is not None and key is not None:
        raise typer.BadParameter("--key signs the default output (a DSSE envelope); --format json|sarif writes unsigned output")
    sign_plan = _signing_preflight(out if fmt is None else None, key, passphrase_env, no_sign)
    plan = _output_plan(
        model, data, follow_symlinks,
        files={"--out": out, "--json": json_out, "--html": html}, folders={"--save-adversarials": save_adversarials, "--backdoor-out": backdoor_out},
        inputs=(transfer_from,), names={"--save-adversarials": [f"{c.check_id}.npz" for c in pol.policy.checks]},
    )
    if transfer_from is not None:
        from .safeload import resolve_model_path

        resolve_model_path(transfer_from)  # a symlinked or device surrogate is refused here, before the scan
    _check_data(data)
    opts = ScanOptions(
        model_path=model, data_path=data, policy=pol, seed=seed, save_adversarials=save_adversarials,
        transfer_from=transfer_from, backdoor_out=backdoor_out, follow_symlinks=follow_symlinks,
    )
    crashed = None
    if no_sandbox:
        report = run_scan(opts, progress=ProgressBars(enabled=not quiet))
    else:
        from .sandbox import limits_for, run_isolated

        res = run_isolated(opts, limits_for(pol), progress=ProgressBars(enabled=not quiet))
        report, crashed = res.report, res.crashed
    if report.summary:
        report.summary.fail_on = fail_on  # type: ignore[assignment]
    to_stdout = fmt is not None and out is None  # machine output on stdout: humans read stderr
    say: Callable[[str], None] = _safe(err if to_stdout else typer.echo)
    plan = plan | _external_data_of(report)
    written = _write_reports(report, out if fmt is None else None, json_out, sign_plan, plan)
    if fmt is not None:
        from .formats.base import JsonFormat
        from .formats.sarif import SarifFormat

        text = (SarifFormat() if fmt == "sarif" else JsonFormat()).render(report)
        if out:
            write_atomic(out, text, flag="--out", protected=plan)
            written.append(f"report  {out}  ({'SARIF 2.1.0' if fmt == 'sarif' else 'plain report'}, unsigned)")
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    print_summary(report, say)
    for line in written:
        say(line)
    if html:
        from .formats.html import render

        write_atomic(html, render(report), flag="--html", protected=plan)
        say(f"page    {html}  (from the scan in memory, marked unsigned; `onnxguard report render --key` gives a verified page)")
    if crashed:
        err(f"onnxguard: error: scan failed: {crashed}")
        raise typer.Exit(EXIT_SCAN_FAILED)
    verdict = report.summary.verdict if report.summary else "pass"
    if verdict == "fail" or (fail_on == "warn" and verdict == "warn"):
        raise typer.Exit(EXIT_REJECTED)


def _passphrase(var: Optional[str]) -> Optional[str]:
    if var is None:
        return None
    value = os.environ.get(var)
    if value is None:
        from .errors import KeyFileError

        raise KeyFileError(f"--passphrase-env {var}: the environment variable {var} is not set")
    return value


def _signing_preflight(out: Optional[Path], key: Optional[Path], passphrase_env: Optional[str], no_sign: bool) -> Optional[dict]:
    """Before the scan: which key will sign, and a cheap check that it is usable. The key itself is
    loaded only after the scan, in this process (the scan may run in a sandboxed child)."""
    if no_sign:
        if key is not None:
            raise typer.BadParameter("--no-sign and --key contradict each other")
        return None
    if out is None:
        return None
    from .signing import ENV_KEY, preflight_private_key

    pw = _passphrase(passphrase_env)
    path = key or (Path(os.environ[ENV_KEY]) if os.environ.get(ENV_KEY) else None)
    if path is not None:
        preflight_private_key(path, have_passphrase=pw is not None)
    return {"key": path, "passphrase_env": passphrase_env}


def _safe(say: Callable[[str], None]) -> Callable[[str], None]:
    """Every line that may hold an untrusted string (a file name, a policy name, a check id) is sanitised here."""
    return lambda line: say(sanitize(line).replace("\n", "\\n"))  # one line stays one line: no forged log lines


def _output_plan(model: Path, data: Optional[Path], follow_symlinks: bool, *, files: dict[str, Optional[Path]],
                 folders: dict[str, Optional[Path]] | None = None, inputs: tuple[Optional[Path], ...] = (),
                 names: dict[str, list[str]] | None = None) -> "Protected":
    """Before anything runs: every output location can be written, and none is an input (exit 2 at once)."""
    from .outputs import Protected, check_distinct, check_file, check_folder, safe_name

    protected = Protected.of([model, data, *inputs])
    check_distinct({**files, **(folders or {})})
    for flag, p in files.items():
        if p is not None:
            check_file(p, flag, protected)
    for flag, p in (folders or {}).items():
        if p is not None:
            check_folder(p, flag, protected)
            for name in (names or {}).get(flag, []):  # the files it will hold, where their names are known now
                if p.is_dir():
                    check_file(p / safe_name(name), flag, protected)
    return protected


def _check_data(data: Optional[Path]) -> None:
    """Data bombs are refused from their headers here, before the sandbox starts (exit 2, naming the file)."""
    if data is not None and data.is_file():
        from .data import check_data_file

        check_data_file(data)


def _external_data_of(report: "object") -> "Protected":
    """The scanned model's external-data files (known once it was read), protected like the model."""
    from .outputs import Protected
    from .report import Report

    assert isinstance(report, Report)
    folder = Path(os.path.realpath(report.model.path)).parent
    return Protected.of([folder / f.path for f in report.model.external_data])


def _write_reports(report: "object", out: Optional[Path], json_out: Optional[Path], sign_plan: Optional[dict],
                   protected: "Protected | None" = None) -> list[str]:
    """Write --out (a signed DSSE envelope unless --no-sign) and --json (the plain report), atomically."""
    from .outputs import Protected
    from .report import Report

    assert isinstance(report, Report)
    prot = protected or Protected()
    lines = []
    if json_out is not None:  # first: a signing failure must not lose the scan
        write_atomic(json_out, report.to_json() + "\n", flag="--json", protected=prot)
        lines.append(f"plain   {json_out}  (plain report, unsigned)")
    if out is not None and sign_plan is None:
        write_atomic(out, report.to_json() + "\n", flag="--out", protected=prot)
        lines.append(f"report  {out}  (UNSIGNED plain report, --no-sign: not an attestation)")
    elif out is not None:
        from .signing import PREDICATE_TYPE, default_key, default_key_path, key_type, keyid, load_private_key, sign_report

        pw = _passphrase(sign_plan["passphrase_env"])
        path = sign_plan["key"]
        private = load_private_key(path, pw) if path is not None else default_key(pw, notify=err)
        envelope = sign_report(report, private)
        write_atomic(out, json.dumps(envelope, indent=2) + "\n", flag="--out", protected=prot)
        kid, kt = keyid(private), key_type(private)
        del private
        lines.append(f"report  {out}  (signed DSSE envelope, predicate {PREDICATE_TYPE})")
        lines.append(f"signed  {kt} key {path or default_key_path()}, keyid {kid}")
    return lines


@app.command()
def keygen(
    out: Path = typer.Option(..., "--out", help="NAME: writes NAME.pem (private, mode 0600) and NAME.pub.pem (public)"),
    key_type_: str = typer.Option("ecdsa-p256", "--type", help="ecdsa-p256 (default) or ed25519"),
    passphrase_env: Optional[str] = typer.Option(None, "--passphrase-env", help="encrypt the private key with the passphrase in this environment variable"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing key pair"),
) -> None:
    """Create a signing key pair for signed reports."""
    from .signing import KEY_TYPES, keyid, load_public_key, write_keypair

    if key_type_ not in KEY_TYPES:
        raise typer.BadParameter(f"--type takes one of {', '.join(KEY_TYPES)}")
    pw = _passphrase(passphrase_env)
    priv, pub = write_keypair(out, passphrase=pw, kind=key_type_, overwrite=force)
    typer.echo(sanitize(f"private key {priv}  ({key_type_}, mode 0600{', passphrase-protected' if pw else ''}): keep it secret"))
    typer.echo(sanitize(f"public key  {pub}  (give it to whoever verifies your reports)"))
    typer.echo(f"keyid       {keyid(load_public_key(pub))}")


_CHECK_LABELS = {"envelope": "envelope", "signature": "signature", "schema": "schema", "model-digest": "model digest", "policy": "policy"}


@app.command()
def verify(
    report: Path = typer.Argument(..., help="the signed report (DSSE envelope) written by scan --out"),
    key: list[Path] = typer.Option(..., "--key", help="trusted public key (NAME.pub.pem); repeat to trust several"),
    model: Optional[Path] = typer.Option(None, "--model", help="check that the report is about this model file"),
    policy: Optional[str] = typer.Option(None, "--policy", help="check that this policy (shipped name or file) was applied"),
    require_verdict: Optional[str] = typer.Option(None, "--require-verdict", help="worst acceptable verdict: pass, or warn (pass or warn)"),
) -> None:
    """Verify a signed report: signature, schema, model digest, policy; exit 0 only if all hold."""
    from .errors import BadInputError
    from .policy import load_policy
    from .report import VERDICTS
    from .signing import check_envelope, load_public_key

    if require_verdict is not None and require_verdict not in VERDICTS:
        raise typer.BadParameter(f"--require-verdict takes one of {', '.join(VERDICTS)}")
    keys = [load_public_key(k) for k in key]
    try:
        data = report.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {report}: {exc.strerror or exc}") from None
    if model is not None and not model.is_file():
        raise BadInputError(f"model file not found: {model}")
    pol = load_policy(policy) if policy is not None else None
    outcomes, verified = check_envelope(data, keys, model_path=model, policy=pol, require_verdict=require_verdict)
    for o in outcomes:
        if o.status == "not requested":
            continue
        status = {"ok": "OK", "failed": "FAILED", "skipped": "SKIPPED"}[o.status]
        typer.echo(sanitize(f"{_CHECK_LABELS[o.name]:<13} {status:<8} {o.detail}"))
    if verified is None:
        failed = [o.name for o in outcomes if o.status == "failed"]
        err(f"onnxguard: {report} does NOT verify (failed: {', '.join(failed)})")
        raise typer.Exit(EXIT_REJECTED)
    v = verified
    enforced = "" if require_verdict else " (not enforced: add --require-verdict pass)"
    typer.echo(sanitize(f"verified {report}: model {v.subjects[0]['name']}, verdict {v.verdict}{enforced}, signed by keyid {v.keyid[:16]}…"))


@app.command()
def inspect(
    model: Path = typer.Argument(..., help="the ONNX model to inspect (any ONNX model, not only classifiers)"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the report here"),
    policy: Optional[str] = typer.Option(None, "--policy", help="policy whose static grading applies (default: standard)"),
    fail_on: str = typer.Option("fail", "--fail-on", help="verdict that makes the exit code 1: 'fail' or 'warn'"),
    follow_symlinks: bool = typer.Option(False, "--follow-symlinks", help="inspect MODEL even when it is a symbolic link"),
) -> None:
    """Static checks of MODEL only: external data, custom operators, opsets, allocation bombs, metadata. Never runs it."""
    from .policy import load_policy
    from .static import static_report

    if fail_on not in ("fail", "warn"):
        raise typer.BadParameter("--fail-on takes 'fail' or 'warn'")
    protected = _output_plan(model, None, follow_symlinks, files={"--out": out})
    report = static_report(model, load_policy(policy), follow_symlinks=follow_symlinks)
    if report.summary:
        report.summary.fail_on = fail_on  # type: ignore[assignment]
    if out:
        write_atomic(out, report.to_json() + "\n", flag="--out", protected=protected | _external_data_of(report))
    m = report.model
    typer.echo(sanitize(f"model   {Path(m.path).name}  sha256:{m.sha256[:16]}…  {m.size_bytes} bytes, IR {m.ir_version}, opsets {m.opset}"))
    if not report.static_findings:
        typer.echo("no static findings")
    for f in report.static_findings:
        typer.echo(sanitize(f"{f.severity:<8} {f.id:<24} {f.title}"))
        typer.echo(sanitize(f"         {f.detail}"))
    s = report.summary
    verdict = s.verdict if s else "pass"
    typer.echo(f"verdict {verdict.upper()}  (static checks only; the model was not run)")
    if out:
        typer.echo(sanitize(f"report  {out}"))
    if verdict == "fail" or (fail_on == "warn" and verdict == "warn"):
        raise typer.Exit(EXIT_REJECTED)


@app.command()
def attack(
    name: str = typer.Argument(..., help="attack: square, fd-pgd, fgsm, hopskipjump, sparse-rs, one-pixel"),
    model: Path = typer.Argument(..., help="the ONNX model"),
    data: Optional[Path] = typer.Option(None, "--data", help="samples: .npz (x, y), .npy or .csv"),
    norm: str = typer.Option("linf", "--norm", help="linf, l2 (l0 for L0 attacks)"),
    epsilon: str = typer.Option(..., "--epsilon", help="fraction of the valid range (L0: number of pixels/features); a comma list gives a robustness curve"),
    min_perturbation: bool = typer.Option(False, "--min-perturbation", help="also locate each sample's smallest breaking perturbation"),
    budget: int = typer.Option(1000, "--budget", min=1, help="model queries per sample"),
    samples: int = typer.Option(100, "--samples", min=1),
    seed: int = typer.Option(0, "--seed"),
    value_range: Optional[str] = typer.Option(None, "--range", help="valid input range 'lo,hi'"),
    target: Optional[int] = typer.Option(None, "--target", min=0, help="targeted attack towards this class"),
    labels_only: bool = typer.Option(False, "--labels-only", help="the attacker sees only labels"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the check's result as JSON"),
    save_adversarials: Optional[Path] = typer.Option(None, "--save-adversarials"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    policy: Optional[str] = typer.Option(None, "--policy", help="policy whose limits and static refusals apply (default: standard)"),
    max_memory: Optional[int] = typer.Option(None, "--max-memory", min=64, help="sandbox memory limit in MB (default: the policy's limits.max_memory_mb)"),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.1, help="sandbox wall-time limit in seconds (default: the policy's limits.timeout_s)"),
    inference_timeout: Optional[float] = typer.Option(None, "--inference-timeout", min=0.1, help="wall-time limit of one model run in seconds (default: the policy's limits.inference_timeout_s)"),
    no_sandbox: bool = typer.Option(False, "--no-sandbox", help="run the model in this process, without resource limits (trusted models only)"),
    follow_symlinks: bool = typer.Option(False, "--follow-symlinks", help="attack MODEL even when it is a symbolic link"),
) -> None:
    """Run one attack ad hoc and print its success rate, queries and time.

    The model gets the same protection as in `scan`: a safe read, the static refusals (memory bombs,
    huge Loops, unsafe external data) and a sandboxed child process with the policy's limits."""
    from pydantic import ValidationError

    from .errors import BadInputError
    from .policy import CheckSpec, apply_overrides, load_policy
    from .scan import ScanOptions, run_attack

    try:
        eps_vals = [float(e) for e in epsilon.split(",") if e.strip()]
    except ValueError:
        raise BadInputError(f"--epsilon takes a number or a comma list of numbers, got '{sanitize(epsilon)}'") from None
    try:
        spec = CheckSpec(
            id=f"{name}-{norm}", attack=name, norm=norm, epsilon=eps_vals[0] if len(eps_vals) == 1 else eps_vals,  # type: ignore[arg-type]
            samples=samples, budget=budget, min_perturbation=min_perturbation, target=target,
        )
    except ValidationError as exc:
        raise BadInputError("; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors())) from None
    pol = apply_overrides(load_policy(policy), value_range=_parse_range(value_range), max_memory_mb=max_memory,
                          timeout_s=timeout, inference_timeout_s=inference_timeout)
    _output_plan(model, data, follow_symlinks, files={"--out": out}, folders={"--save-adversarials": save_adversarials},
                 names={"--save-adversarials": [f"{spec.check_id}.npz"]})
    _check_data(data)
    opts = ScanOptions(model_path=model, data_path=data, policy=pol, seed=seed, save_adversarials=save_adversarials,
                       follow_symlinks=follow_symlinks)
    bars = ProgressBars(enabled=not quiet)
    say = _safe(typer.echo)
    if no_sandbox:
        chk = run_attack(opts, spec, labels_only=labels_only, progress=bars)
    else:
        from .sandbox import limits_for, run_attack_isolated

        chk = run_attack_isolated(opts, spec, labels_only=labels_only, limits=limits_for(pol), progress=bars)
    if chk.status != "completed":
        raise BadInputError(f"{name} could not run: {chk.reason}")
    say(f"attack        {chk.attack} ({norm}, epsilon {epsilon}{', target ' + str(target) if target is not None else ''})")
    say(f"samples       {chk.n_samples} ({chk.n_attacked} correctly classified and attacked)")
    say(f"success rate  {_fmt_rate(chk.success_rate)}")
    if chk.queries:
        say(f"queries       median {chk.queries.median:.0f}, mean {chk.queries.mean:.1f}, max {chk.queries.max} (budget {budget})" if chk.queries.median is not None else "queries       0")
    if chk.perturbation and chk.perturbation.median is not None:
        say(f"perturbation  median {chk.perturbation.median:.4g} ({norm})")
    mp = chk.min_perturbation
    if mp is not None and mp.n:
        med = f"{mp.median:.4g}" if mp.median is not None else "inf"
        ci = f" [{mp.ci.low:.4g}, {mp.ci.high:.4g}]" if mp.ci is not None else ""
        say(f"min. perturb. median {med}{ci} ({norm}; {mp.n_infinite} of {mp.n} not broken)")
    for pt in chk.robustness_curve:
        say(f"  eps {pt.epsilon:<8g} robust accuracy {_fmt_rate(pt.robust_accuracy)}")
    share = chk.ort_time_s / chk.wall_time_s if chk.wall_time_s else 0.0
    say(f"wall time     {chk.wall_time_s:.2f}s ({share:.0%} inside onnxruntime)")
    say(f"finding       {chk.finding}")
    if out:
        write_atomic(out, chk.model_dump_json(indent=2) + "\n", flag="--out", protected=_output_plan(model, data, follow_symlinks, files={}))


@policy_app.command("list")
def policy_list() -> None:
    """List the shipped policies."""
    from .policy import load_policy, shipped_policies

    for name in shipped_policies():
        p = load_policy(name).policy
        typer.echo(sanitize(f"{name:<10} v{p.version:<5} {p.policy.description}"))


@policy_app.command("show")
def policy_show(name: str = typer.Argument(..., help="shipped policy name or file")) -> None:
    """Print a policy's file, as written (with its comments)."""
    from .policy import POLICY_DIR, load_policy

    lp = load_policy(name)
    src = Path(name) if Path(name).exists() else POLICY_DIR / f"{name}.toml"
    typer.echo(f"# sha256 {lp.sha256}")
    typer.echo(sanitize(src.read_text(encoding="utf-8", errors="replace")))


@policy_app.command("validate")
def policy_validate(file: Path = typer.Argument(..., help="policy file (.toml or .json)")) -> None:
    """Validate a policy file; exit 2 with the offending keys if it is invalid."""
    from .policy import load_policy

    lp = load_policy(str(file))
    p = lp.policy
    typer.echo(sanitize(f"{file}: valid policy '{p.name}' v{p.version}, {len(p.checks)} checks, sha256 {lp.sha256}"))


@report_app.command("render")
def report_render(
    report_file: Path = typer.Argument(..., help="a report (plain JSON, or a signed envelope)"),
    out: Path = typer.Option(..., "--out", help="the HTML page to write"),
    key: Optional[list[Path]] = typer.Option(None, "--key", help="trusted public key (NAME.pub.pem): verify the signed report before rendering; repeatable"),
    model: Optional[Path] = typer.Option(None, "--model", help="with --key: also check that the report is about this model file"),
    no_verify: bool = typer.Option(False, "--no-verify", help="render a signed report without verifying it (marked NOT VERIFIED)"),
    adversarials: Optional[Path] = typer.Option(None, "--adversarials", help="folder of saved adversarial examples (<check>.npz)"),
) -> None:
    """Render a report as one self-contained HTML page for reviewers."""
    from .formats.envelope import load_for_render
    from .formats.html import render

    if key and no_verify:
        raise typer.BadParameter("--key and --no-verify contradict each other")
    protected = _output_plan(report_file, None, False, files={"--out": out}, inputs=(model,))
    report, verification = load_for_render(report_file, key or None, allow_unverified=no_verify, model_path=model)
    # files the report names are embedded only from inside the report's own folder, never through a link
    page = render(report, verified=verification, adversarials=adversarials, base_dir=report_file.parent if str(report_file.parent) else Path("."))
    write_atomic(out, page, flag="--out", protected=protected)
    state = "unsigned" if verification is None else ("signature verified, key " + verification.keyid if verification.verified else "signature NOT verified")
    typer.echo(sanitize(f"page    {out} ({state})"))


@report_app.command("diff")
def report_diff(
    old: Path = typer.Argument(..., help="the earlier report"),
    new: Path = typer.Argument(..., help="the later report"),
    fmt: str = typer.Option("text", "--format", help="'text' or 'json'"),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression", help="exit 1 when a verdict, risk level or figure got significantly worse"),
) -> None:
    """What changed between two reports of a model: verdict, risk levels, figures beyond their intervals."""
    from .diff import diff_reports, format_text
    from .formats.envelope import report_from_json

    if fmt not in ("text", "json"):
        raise typer.BadParameter("--format takes 'text' or 'json'")
    (a, ea), (b, eb) = report_from_json(old.read_bytes()), report_from_json(new.read_bytes())
    d = diff_reports(a, b)
    typer.echo(d.to_json() if fmt == "json" else format_text(d))
    if (ea is not None or eb is not None) and fmt == "text":
        typer.echo("note: signed envelopes were compared by their payloads; their signatures were not verified (use `onnxguard verify`)")
    if fail_on_regression and d.regressions:
        raise typer.Exit(EXIT_REJECTED)


@app.command()
def schema() -> None:
    """Print the report's JSON Schema."""
    from .report import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


def run_app(typer_app: typer.Typer, argv: list[str] | None, prog: str) -> int:
    """Run a typer app and map every error to its exit code (shared with the plugins' commands)."""
    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # typer releases that still use click
        from click import ClickException  # type: ignore[no-redef]
        from click.exceptions import NoArgsIsHelpError  # type: ignore[no-redef]

    try:
        rv = typer_app(args=argv, standalone_mode=False, prog_name=prog)
        return int(rv) if isinstance(rv, int) else EXIT_OK
    except OnnxGuardError as exc:
        from .errors import PolicyError

        err(f"{prog}: error: {exc}", multiline=isinstance(exc, PolicyError))
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err(f"{prog}: aborted")
        return EXIT_SCAN_FAILED
    except NoArgsIsHelpError as exc:
        exc.show()
        return EXIT_BAD_INPUT
    except ClickException as exc:
        exc.show()
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        err(f"{prog}: interrupted")
        return 130
    except MemoryError:
        err(f"{prog}: error: out of memory")
        return EXIT_SCAN_FAILED
    except Exception as exc:  # the last line of defence: never a traceback for the user
        if os.environ.get("ONNXGUARD_DEBUG"):
            raise
        err(f"{prog}: internal error: {type(exc).__name__}: {sanitize(str(exc))[:300]} (set ONNXGUARD_DEBUG=1 for a traceback)")
        return EXIT_SCAN_FAILED


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the typer app and maps every error to its exit code."""
    return run_app(app, argv, "onnxguard")


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
