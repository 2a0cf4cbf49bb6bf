"""``onnxguard-mlflow``: the webhook receiver (``serve``) and pull mode (``scan``, ``check``).

Exit codes follow onnxguard's: 0 admitted / ok, 1 rejected by policy,
2 bad input or usage, 3 scan failed.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

import typer

from onnxguard.errors import EXIT_REJECTED

from .config import Settings

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="onnxguard admission control for the MLflow model registry.")

SECRET_ENV = "ONNXGUARD_MLFLOW_SECRET"

TrackingUri = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="the MLflow server (default: $MLFLOW_TRACKING_URI)")
StateDir = typer.Option(Path(".onnxguard-mlflow"), "--state-dir", help="queue database and scratch space")
DefaultPolicy = typer.Option("standard", "--default-policy", help="policy for models without an 'onnxguard.policy' tag (name or file)")
PolicyDir = typer.Option(None, "--policy-dir", help="folder of NAME.toml policies that model tags may name (besides the shipped ones)")
Protect = typer.Option(["champion", "production"], "--protect", help="protected alias (repeat for several)")
Key = typer.Option(None, "--key", help="private key (NAME.pem) that signs the stored reports (default: STATE_DIR/receiver.pem, made on first start)")
AdmissionPolicy = typer.Option(None, "--admission-policy", help="policy a version's scans must have run under to hold a protected alias, whatever the model's tag says (name or file; repeatable; default: --default-policy)")
Trust = typer.Option(None, "--trust", help="public key(s) whose signed reports admission accepts, repeatable (default: the signing key's NAME.pub.pem)")


def _settings(tracking_uri: Optional[str], state_dir: Path, default_policy: str, policy_dir: Optional[Path], protect: List[str],
              key: Optional[Path], trust: Optional[List[Path]], sign: bool = True, **kw: object) -> Settings:
    if not tracking_uri:
        raise typer.BadParameter("give --tracking-uri or set MLFLOW_TRACKING_URI")
    from onnxguard.keys import keypair_paths, write_keypair

    trusted = list(trust or [])
    if key is None and sign:  # the receiver's own key, made on first start
        key, pub = keypair_paths(state_dir / "receiver")
        if not key.exists():
            write_keypair(state_dir / "receiver")
            typer.echo(f"onnxguard-mlflow: created signing key {key}; reviewers verify with {pub}", err=True)
    own_pub = keypair_paths(key or state_dir / "receiver")[1]
    if not trusted and own_pub.is_file():
        trusted.append(own_pub)
    adm = kw.pop("admission_policy", None)
    if adm:
        kw["admission_policies"] = tuple(adm)  # type: ignore[arg-type]
    return Settings(tracking_uri=tracking_uri, state_dir=state_dir, default_policy=default_policy, policy_dir=policy_dir,
                    protected_aliases=tuple(protect), key_path=key, key_passphrase=os.environ.get("ONNXGUARD_KEY_PASSPHRASE"),
                    trusted_keys=trusted, **kw)  # type: ignore[arg-type]


def _worker(settings: Settings, scanner: object = None):
    from onnxguard.admission.worker import Worker

    from .registry import Registry

    return Worker(settings, None, Registry(settings.tracking_uri, settings.experiment), scanner=scanner)  # type: ignore[arg-type]


@app.command()
def serve(
    tracking_uri: Optional[str] = TrackingUri,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8765, "--port"),
    secret_file: Optional[Path] = typer.Option(None, "--secret-file", help=f"file holding the webhook secret (else ${SECRET_ENV})"),
    register_webhook: Optional[str] = typer.Option(None, "--register-webhook", metavar="URL",
                                                   help="create or update the MLflow webhook 'onnxguard' to post to URL (this receiver's address as MLflow sees it)"),
    state_dir: Path = StateDir,
    default_policy: str = DefaultPolicy,
    policy_dir: Optional[Path] = PolicyDir,
    protect: List[str] = Protect,
    key: Optional[Path] = Key,
    trust: Optional[List[Path]] = Trust,
    admission: Optional[List[str]] = AdmissionPolicy,
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, help="tries per job before it is tagged failed"),
    retry_delay: float = typer.Option(30.0, "--retry-delay", min=0.0, help="seconds before the first retry (doubles each time)"),
    tolerance: float = typer.Option(300.0, "--tolerance", min=1.0, help="accepted clock skew of webhook timestamps, seconds"),
    check_timeout: float = typer.Option(120.0, "--check-timeout", min=1.0, help="seconds an alias check may take; a slower one removes the alias"),
    executor: Optional[str] = typer.Option(None, "--executor", help="hand the scans to a fleet executor: local (a process pool) or ray; default: one sandboxed scan at a time in this process"),
    address: Optional[str] = typer.Option(None, "--address", help="with --executor ray: the cluster's address (default: start a local Ray)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="with --executor: scans at once (default: the CPUs)"),
) -> None:
    """Receive MLflow registry webhooks, scan new versions, guard protected aliases.

    The receiver keeps its durable queue for deliveries and status; with --executor it hands only the scans
    to the executor, so a receiver restart neither loses nor duplicates one."""
    from .server import Receiver

    secret = secret_file.read_text(encoding="utf-8").strip() if secret_file else os.environ.get(SECRET_ENV)
    if not secret:
        raise typer.BadParameter(f"a webhook secret is required: --secret-file or ${SECRET_ENV}")
    settings = _settings(tracking_uri, state_dir, default_policy, policy_dir, protect, key, trust, secret=secret,
                         admission_policy=admission, max_attempts=max_attempts, retry_delay_s=retry_delay, tolerance_s=tolerance,
                         admission_timeout_s=check_timeout)
    if executor is None and (address is not None or workers is not None):
        raise typer.BadParameter("--address and --workers go with --executor local|ray")
    pool = None
    scanner = None
    if executor is not None:
        from onnxguard.admission.engine import ExecutorScanner
        from onnxguard.fleet import get_executor

        pool = get_executor(executor, address, workers)  # closed when the receiver stops
        scanner = ExecutorScanner(pool)
    worker = _worker(settings, scanner)
    if register_webhook:
        wid = worker.registry.ensure_webhook(register_webhook, secret)
        logging.getLogger("onnxguard_mlflow").info("MLflow webhook %s posts to %s", wid, register_webhook)
    receiver = Receiver(settings, worker, host=host, port=port)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    receiver.start()
    h, p = receiver.address
    from onnxguard.keys import keyid

    signed = f"signed with keyid {keyid(worker.sealer.key)[:16]}…" if worker.sealer.signs else "UNSIGNED (no --key)"
    typer.echo(f"onnxguard-mlflow: listening on http://{h}:{p}/webhook; reports {signed}; protected aliases: {', '.join(protect) or 'none'}", err=True)
    done.wait()
    receiver.stop()
    if pool is not None:
        pool.close()


@app.command()
def scan(
    model_uri: str = typer.Argument(..., metavar="models:/NAME/VERSION"),
    tracking_uri: Optional[str] = TrackingUri,
    state_dir: Path = StateDir,
    default_policy: str = DefaultPolicy,
    policy_dir: Optional[Path] = PolicyDir,
    key: Optional[Path] = Key,
    write_back: bool = typer.Option(True, "--write/--no-write", help="write tags and store the report in MLflow"),
    fail_on: str = typer.Option("fail", "--fail-on", help="verdict that makes the exit code 1: 'fail' or 'warn'"),
) -> None:
    """Pull mode: scan one registered model version now, tag it, exit by the verdict."""
    from .registry import parse_model_uri

    try:
        name, version = parse_model_uri(model_uri)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = _settings(tracking_uri, state_dir, default_policy, policy_dir, [], key, None, sign=write_back)
    from onnxguard.admission.artifact import show

    out = _worker(settings).scan_version(name, version, write_back=write_back)
    if out.error:
        typer.echo(f"models:/{show(name)}/{version}: refused: {show(out.error, 1000)}")
    for rel, rep in out.reports.items():
        s = rep.summary
        loaded = " (loaded by MLflow)" if out.files and rel in out.files.loadable else ""
        typer.echo(f"{show(rel)}{loaded}: {s.verdict if s else '?'} (highest risk {s.highest_risk if s else '?'})")
    typer.echo(f"models:/{show(name)}/{version}: verdict {out.verdict.upper()} (highest risk {out.highest_risk})")
    if out.location:
        typer.echo(f"attestation  {show(out.location)}  sha256:{out.attestation_sha256}")
    if out.verdict == "fail" or (fail_on == "warn" and out.verdict == "warn"):
        raise typer.Exit(EXIT_REJECTED)


@app.command()
def check(
    model_uri: str = typer.Argument(..., metavar="models:/NAME/VERSION"),
    tracking_uri: Optional[str] = TrackingUri,
    state_dir: Path = StateDir,
    default_policy: str = DefaultPolicy,
    policy_dir: Optional[Path] = PolicyDir,
    trust: Optional[List[Path]] = Trust,
    allow_unsigned: bool = typer.Option(False, "--allow-unsigned", help="also accept an UNSIGNED attestation (nothing authenticated: digests only); never used by the receiver"),
    admission: Optional[List[str]] = AdmissionPolicy,
) -> None:
    """Would this version be admitted to a protected alias? Exit 0 if yes, 1 with the reason if not."""
    from .registry import parse_model_uri

    name, version = parse_model_uri(model_uri)
    settings = _settings(tracking_uri, state_dir, default_policy, policy_dir, [], None, trust, sign=False,
                         allow_unsigned=allow_unsigned, admission_policy=admission)
    from onnxguard.admission.artifact import show

    d = _worker(settings).admissible(name, version)
    typer.echo(f"models:/{show(name)}/{version}: {'admitted' if d.admitted else 'not admitted'}: {d.reason}")
    if not d.admitted:
        raise typer.Exit(EXIT_REJECTED)


def _bounded_mlflow_http() -> None:
    """MLflow's client retries a failing request 7 times with exponential backoff (minutes) by default; the gate
    would hold a protected alias on an unchecked version all that time. Bound it, unless the operator set it."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def main(argv: list[str] | None = None) -> int:
    _bounded_mlflow_http()
    logging.basicConfig(level=os.environ.get("ONNXGUARD_MLFLOW_LOG", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from onnxguard.cli import run_app

    return run_app(app, argv, "onnxguard-mlflow")


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
