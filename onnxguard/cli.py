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
from .formats import FORMATS, get_format
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
fleet_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Scan many models on a local process pool or Ray.")
app.add_typer(fleet_app, name="fleet")


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


def _parse_range(value: Optional[str]) -> Optional[tuple]:
    """'lo,hi' (every channel or feature) or 'lo,hi;lo,hi;lo,hi' (one pair per channel)."""
    from .conventions import parse_channel_ranges
    from .data import parse_range

    if not value:
        return None
    if ";" in value:
        return parse_channel_ranges(value)
    return parse_range(value)


def _parse_shape(value: Optional[str]) -> Optional[tuple[int, ...]]:
    from .conventions import parse_shape

    return parse_shape(value) if value else None


@app.command()
def scan(
    model: Path = typer.Argument(..., help="the ONNX model to scan"),
    data: Optional[Path] = typer.Option(None, "--data", help="samples: .npz (x, y; one array per input name for multi-input models), .npy or .csv; text models: .csv (a text column), .jsonl or .npz (texts / input_ids), labels optional"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the report here"),
    fmt: Optional[str] = typer.Option(None, "--format", help="output format: " + ", ".join(FORMATS) + " (default with --out: dsse, the signed envelope); other formats are unsigned and go to --out, else to stdout"),
    policy: Optional[str] = typer.Option(None, "--policy", help="shipped policy name or a policy file (default: standard)"),
    seed: int = typer.Option(0, "--seed", help="random seed; the same seed gives the same report"),
    value_range: Optional[str] = typer.Option(None, "--range", help="valid input range 'lo,hi', or one 'lo,hi' per channel separated by ';' (recorded as a deviation from the policy's threat model)"),
    layout: Optional[str] = typer.Option(None, "--layout", help="image layout NCHW or NHWC (default: model metadata, then the shape)"),
    normalize: Optional[str] = typer.Option(None, "--normalize", help="the model takes (pixel - mean) / std: 'imagenet' or 'mean=M1,M2,M3,std=S1,S2,S3' (pixels in [0,1]; [0,255] when a mean exceeds 1)"),
    channels: Optional[str] = typer.Option(None, "--channels", help="channel order rgb, bgr or gray (with --normalize imagenet)"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="per-sample shape for dynamic axes, e.g. 3,224,224 (after the data and the model's metadata)"),
    bounds: Optional[Path] = typer.Option(None, "--bounds", help="per-feature bounds of a tabular input: JSON [[lo,hi],...] or CSV lo,hi rows"),
    provider: Optional[str] = typer.Option(None, "--provider", help="onnxruntime execution provider (any the installed onnxruntime offers; default CPU)"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="onnxruntime intra-op threads"),
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
    executor: Optional[str] = typer.Option(None, "--executor", help="split the policy's checks over workers: local or ray (the report equals the unsplit one)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="with --executor: workers to split over (default: the CPUs)"),
    address: Optional[str] = typer.Option(None, "--address", help="with --executor ray: the cluster's address (default: start a local Ray)"),
    inference_timeout: Optional[float] = typer.Option(None, "--inference-timeout", min=0.1, help="wall-time limit of one model run in seconds (default: the policy's limits.inference_timeout_s)"),
    follow_symlinks: bool = typer.Option(False, "--follow-symlinks", help="scan MODEL even when it is a symbolic link (e.g. a Hugging Face cache snapshot); the report names the resolved file, and external data must sit in its folder"),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Hugging Face tokenizer.json of a token-id text model (default: tokenizer.json beside MODEL)"),
) -> None:
    """Scan MODEL with the policy's checks and write a graded report (signed, with --out).

    The model runs in a sandboxed child process (memory, CPU and wall-time limits); if it crashes or
    runs out of a limit, the report says so and the exit code is 3."""
    from .formats.text import print_summary
    from .policy import apply_overrides, load_policy
    from .scan import ScanOptions, run_scan

    if fail_on not in ("fail", "warn"):
        raise typer.BadParameter("--fail-on takes 'fail' or 'warn'")
    if fmt is not None and fmt not in FORMATS:
        raise typer.BadParameter(f"--format takes one of {', '.join(FORMATS)}")
    if fmt == "dsse" and out is None:
        raise typer.BadParameter("--format dsse writes the signed envelope to --out")
    signed_out = fmt in (None, "dsse")
    # every override is applied once, here, to the loaded policy; the report records each as a deviation
    pol = apply_overrides(
        load_policy(policy), budget=budget, samples=samples, target=target, value_range=_parse_range(value_range),
        max_memory_mb=max_memory, timeout_s=timeout, inference_timeout_s=inference_timeout,
    )
    if not signed_out and key is not None:
        raise typer.BadParameter(f"--key signs the default output (a DSSE envelope); --format {fmt} writes unsigned output")
    sign_plan = _signing_preflight(out if signed_out else None, key, passphrase_env, no_sign)
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
        transfer_from=transfer_from, backdoor_out=backdoor_out, follow_symlinks=follow_symlinks, tokenizer_path=tokenizer,
        layout=layout, normalize=normalize, channels=channels,
        input_shape=_parse_shape(input_shape), bounds_path=bounds, provider=provider, threads=threads,
    )
    crashed = None
    if executor is None and (workers is not None or address is not None):
        raise typer.BadParameter("--workers and --address go with --executor local|ray")
    if executor is not None:
        from .fleet import get_executor
        from .fleet.split import scan_split
        from .sandbox import limits_for

        if no_sandbox:
            raise typer.BadParameter("--executor runs every shard in the sandbox; it cannot be combined with --no-sandbox")
        with get_executor(executor, address, workers) as ex:
            res = scan_split(opts, limits_for(pol), ex, workers=workers)
        report, crashed = res.report, res.crashed
    elif no_sandbox:
        report = run_scan(opts, progress=ProgressBars(enabled=not quiet))
    else:
        from .sandbox import limits_for, run_isolated

        res = run_isolated(opts, limits_for(pol), progress=ProgressBars(enabled=not quiet))
        report, crashed = res.report, res.crashed
    if report.summary:
        report.summary.fail_on = fail_on  # type: ignore[assignment]
    to_stdout = not signed_out and out is None  # machine output on stdout: humans read stderr
    say: Callable[[str], None] = _safe(err if to_stdout else typer.echo)
    plan = plan | _external_data_of(report)
    written = _write_reports(report, out if signed_out else None, json_out, sign_plan, plan)
    if not signed_out:
        assert fmt is not None
        text = get_format(fmt).render(report)
        if out:
            write_atomic(out, text, flag="--out", protected=plan)
            written.append(f"report  {out}  ({get_format(fmt).description})")
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    print_summary(report, say)
    for line in written:
        say(line)
    if html:
        write_atomic(html, get_format("html").render(report), flag="--html", protected=plan)
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
    from .keys import ENV_KEY, preflight_private_key

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
        from .keys import default_key, default_key_path, key_type, keyid, load_private_key
        from .signing import PREDICATE_TYPE, sign_report

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
    from .keys import KEY_TYPES, keyid, load_public_key, write_keypair

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
    from .keys import load_public_key
    from .verify import check_envelope

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
    from .assemble import static_report

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


def _attack_names() -> list[str]:
    from .attacks import ATTACKS

    return list(ATTACKS)


@app.command()
def attack(
    name: str = typer.Argument(..., help="attack: " + ", ".join(_attack_names())),
    model: Path = typer.Argument(..., help="the ONNX model"),
    data: Optional[Path] = typer.Option(None, "--data", help="samples: .npz (x, y), .npy or .csv"),
    norm: str = typer.Option("linf", "--norm", help="linf, l2 (l0 for L0 attacks)"),
    epsilon: Optional[str] = typer.Option(None, "--epsilon", help="fraction of the valid range (L0: number of pixels/features); a comma list gives a robustness curve; optional for minimisation attacks (hopskipjump), which report the smallest perturbation they find"),
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

    from .attacks import ATTACKS
    from .errors import BadInputError
    from .formats.text import fmt_rate
    from .policy import CheckSpec, apply_overrides, load_policy
    from .scan import ScanOptions, run_attack

    known = ATTACKS.get(name)
    if epsilon is None and (known is None or not known.minimisation):
        raise BadInputError(f"--epsilon is required: {sanitize(name)} is a fixed-epsilon attack" if known else
                            f"unknown attack '{sanitize(name)}': one of {', '.join(ATTACKS)}")
    try:
        # a minimisation attack without an epsilon: any adversarial inside the valid box counts (L-inf 1 is the
        # whole range; an L2 radius of 1e6 holds every box up to 10^12 features), and the smallest one found is reported
        eps_vals = [float(e) for e in epsilon.split(",") if e.strip()] if epsilon is not None else [1.0 if norm == "linf" else 1e6]
    except ValueError:
        raise BadInputError(f"--epsilon takes a number or a comma list of numbers, got '{sanitize(epsilon)}'") from None
    try:
        spec = CheckSpec(
            id=f"{name}-{norm}", attack=name, norm=norm, epsilon=eps_vals[0] if len(eps_vals) == 1 else eps_vals,  # type: ignore[arg-type]
            samples=samples, budget=budget, min_perturbation=min_perturbation, target=target,
        )
    except ValidationError as exc:
        raise BadInputError("; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors())) from None
    if name in ATTACKS and ("box" not in ATTACKS[name].spaces or "classifier" not in ATTACKS[name].tasks):
        raise BadInputError(f"`onnxguard attack` runs the image/tabular classifier attacks; {sanitize(name)} runs through `onnxguard scan` "
                            "as a policy check (see `onnxguard policy show standard`)")
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
    eps_text = f"epsilon {epsilon}" if epsilon is not None else "no epsilon: the smallest perturbation found is reported"
    say(f"attack        {chk.attack} ({norm}, {eps_text}{', target ' + str(target) if target is not None else ''})")
    say(f"samples       {chk.n_samples} ({chk.n_attacked} correctly classified and attacked)")
    say(f"success rate  {fmt_rate(chk.success_rate)}")
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
        say(f"  eps {pt.epsilon:<8g} robust accuracy {fmt_rate(pt.robust_accuracy)}")
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
    typer.echo(applicability(lp))


_TASK_TEXT = {"classifier": "image/tabular classifiers (a float input; several float inputs are attacked jointly)",
              "regressor": "regressors (a float output per sample)", "text-classifier": "text classifiers"}


def applicability(lp: "object") -> str:
    """Which of a policy's checks apply to which models (``policy show``)."""
    from .attacks import ATTACKS

    pol = lp.policy  # type: ignore[attr-defined]
    lines = ["# which checks apply to which models (a model gets the checks that fit it; the others are listed",
             "# in its report as not applicable, and a model no check fits is graded by grading.not_run):"]
    for c in pol.checks:
        a = ATTACKS[c.attack]
        space = {"box": "float inputs", "text": "text (string input, or token ids with a tokenizer.json)", "tokens": "token ids without a tokenizer (id space)"}
        where = "; ".join(_TASK_TEXT.get(t, t) for t in a.tasks)
        lines.append(f"#   {c.check_id:<20} {c.attack:<11} {where}; space: {', '.join(space.get(s, s) for s in a.spaces)}")
    if pol.backdoor.enabled:
        lines.append(f"#   {'backdoor':<20} {'search':<11} single-input image/tabular classifiers (graded not run for text and multi-input classifiers; not applicable to regressors)")
    lines.append("#   static checks apply to every model; a model that cannot be run gets a static-only report")
    return "\n".join(lines)


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
    from .verify import load_for_render
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
    from .verify import report_from_json

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


@fleet_app.command("scan")
def fleet_scan(
    paths: list[str] = typer.Argument(..., help="folders of models, manifests (.toml/.json/.csv), .onnx files, or models:/NAME[/VERSION]"),
    out: Path = typer.Option(..., "--out", help="folder for the signed reports, their pages and the summary (index.html, summary.json)"),
    executor: str = typer.Option("local", "--executor", help="local (a pool of sandboxed processes) or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (auto, ray://HOST:10001); default: start a local Ray"),
    policy: Optional[str] = typer.Option(None, "--policy", help="policy for models whose manifest row names none (default: standard)"),
    data: Optional[Path] = typer.Option(None, "--data", help="samples for models whose manifest row names none"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="scans at once (local) / CPUs of a local Ray (default: the CPUs)"),
    retries: int = typer.Option(2, "--retries", min=0, help="tries again when a worker or its sandbox dies (not on a FAIL verdict)"),
    cpus_per_task: Optional[int] = typer.Option(None, "--cpus-per-task", min=1, help="CPUs (and onnxruntime threads) per scan"),
    seed: int = typer.Option(0, "--seed", help="random seed for models whose manifest row names none"),
    key: Optional[Path] = typer.Option(None, "--key", help="private key that signs every report (default: $ONNXGUARD_SIGNING_KEY, else your per-user key)"),
    passphrase_env: Optional[str] = typer.Option(None, "--passphrase-env", help="environment variable holding the signing key's passphrase"),
    max_memory: Optional[int] = typer.Option(None, "--max-memory", min=64, help="sandbox memory limit per scan in MB (default: the policy's)"),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.1, help="sandbox wall-time limit per scan in seconds (default: the policy's)"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow registry for models:/ targets (default: $MLFLOW_TRACKING_URI)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no line per model"),
) -> None:
    """Scan many models; one signed report per model and a summary page. A rerun reuses every
    report that still verifies for the same model, policy, tool version and options.

    Exit code: 3 if a scan failed, else 2 if a model was refused as bad input, else 1 if a verdict
    is FAIL, else 0."""
    from .fleet import get_executor
    from .fleet.driver import FleetSettings, run_fleet
    from .fleet.manifest import resolve
    from .fleet.store import Layout
    from .policy import load_policy
    from .keys import default_key, load_private_key

    load_policy(policy)  # a broken default policy is a usage error before anything runs
    if data is not None and not data.is_file():
        from .errors import DataError

        raise DataError(f"data file not found: {data}")
    plan = _signing_preflight(out, key, passphrase_env, False)
    assert plan is not None
    pw = _passphrase(passphrase_env)
    private = load_private_key(plan["key"], pw) if plan["key"] is not None else default_key(pw, notify=err)
    entries = resolve(paths, Path(out) / ".cache", tracking_uri)
    if not entries:
        from .errors import BadInputError

        raise BadInputError("no model to scan")
    settings = FleetSettings(policy=policy, data=data, seed=seed, retries=retries, cpus_per_task=cpus_per_task,
                             max_memory_mb=max_memory, timeout_s=timeout)
    with get_executor(executor, address, workers) as ex:
        res = run_fleet(entries, out, ex, private, settings, log=None if quiet else (lambda m: err(m)))
    del private
    s = res.summary
    c = s.counts()
    typer.echo(sanitize(
        f"fleet   {len(s.rows)} model(s): {len(res.scanned)} scanned, {len(res.reused)} reused; "
        f"verdicts {c.get('verdict:pass', 0)} pass, {c.get('verdict:warn', 0)} warn, {c.get('verdict:fail', 0)} fail; "
        f"{sum(c.get(k, 0) for k in ('crashed', 'error', 'refused'))} without a verdict; {s.wall_s or 0:.1f}s"
    ))
    lay = Layout(Path(out))
    typer.echo(sanitize(f"summary {lay.summary_html}  ({lay.summary_json}; signed reports in {lay.reports})"))
    code = s.exit_code()
    if code:
        raise typer.Exit(code)


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
