"""The gate's one attestation per model version, and its verification.

After scanning a version the gate signs ONE in-toto Statement (in a DSSE envelope, with
onnxguard's signing) that binds:

- the version: registry kind, model name, version and artifact identity (so it cannot be
  replayed onto another version);
- every model file of the version, by path and sha256, exactly once (the statement's subjects);
- which of them the registry loads;
- the policy the scans ran under;
- each file's signed risk report (the DSSE envelope itself, embedded), with its verdict.

Admission re-reads the artifact, and admits only when the attestation verifies with a trusted
key, names this version, covers exactly the model files the artifact holds now (none missing,
none extra, none twice), was made under an admission policy, and each embedded report verifies
through :func:`onnxguard.verify.check_envelope` against its file with verdict ``pass`` and no
deviation from the policy.

Format::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": PATH, "digest": {"sha256": ...}}, ...],          # every model file, sorted
     "predicateType": "https://onnxguard.dev/attestation/admission/v1",
     "predicate": {"version": {"registry", "model", "version", "artifact"},
                   "policy": {"name", "version", "sha256"},
                   "loadable": [PATH, ...],
                   "verdict": ..., "highest_risk": ...,
                   "files": [{"path", "sha256", "verdict", "highest_risk", "report": <DSSE envelope>}, ...]}}
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import AdmissionDenied, VerificationError
from ..grading import worst_level, worst_verdict
from ..policy import LoadedPolicy
from ..report import Report, load_report
from .artifact import ModelFiles, show

PREDICATE_TYPE = "https://onnxguard.dev/attestation/admission/v1"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


@dataclass(frozen=True)
class VersionId:
    """Which version of which model, in which registry, with which artifact."""

    registry: str
    model: str
    version: str
    artifact: str

    def describe(self) -> str:
        return f"{self.registry} models:/{show(self.model)}/{show(self.version)} (artifact {show(self.artifact)})"


class Sealer:
    """Signs with the gate's key; without a key (library use only) writes plain, unsigned JSON."""

    def __init__(self, key_path: Path | None = None, passphrase: str | None = None) -> None:
        from .. import keys

        self.key: Any = keys.load_private_key(key_path, passphrase) if key_path is not None else None

    @property
    def signs(self) -> bool:
        return self.key is not None

    def seal_report(self, report: Report) -> dict[str, Any]:
        from .. import signing

        return signing.sign_report(report, self.key) if self.key is not None else json.loads(report.to_json())

    def seal(self, statement: dict[str, Any]) -> bytes:
        from .. import signing

        doc = signing.sign_statement(statement, self.key) if self.key is not None else statement
        return json.dumps(doc, indent=2, sort_keys=True).encode("utf-8") + b"\n"


def statement(vid: VersionId, policy: LoadedPolicy, files: ModelFiles, reports: dict[str, Report], sealed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The attestation for ``vid``: every file of ``files``, once, with its report."""
    if set(reports) != set(files.files) or set(sealed) != set(files.files):
        raise ValueError("one report per model file is needed")
    entries = []
    for path in sorted(files.files):
        s = reports[path].summary
        entries.append({"path": path, "sha256": files.files[path], "verdict": s.verdict if s else "fail",
                        "highest_risk": s.highest_risk if s else "critical", "report": sealed[path]})
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": p, "digest": {"sha256": files.files[p]}} for p in sorted(files.files)],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "version": asdict(vid),
            "policy": {"name": policy.policy.name, "version": policy.policy.version, "sha256": policy.sha256},
            "loadable": sorted(files.loadable),
            "verdict": worst_verdict([e["verdict"] for e in entries]),
            "highest_risk": worst_level([e["highest_risk"] for e in entries]),
            "files": entries,
        },
    }


def deviations_of(predicate_report: Any) -> list[Any]:
    """``policy.deviations`` of a report (its JSON as a dict): the overrides it ran under, if any."""
    pol = predicate_report.get("policy") if isinstance(predicate_report, dict) else None
    dev = pol.get("deviations") if isinstance(pol, dict) else None
    return list(dev) if isinstance(dev, list) else ([dev] if dev else [])


class Verifier:
    """Checks an attestation against the artifact as it is now. Every failure is ``AdmissionDenied``."""

    def __init__(self, trusted_key_paths: list[Path] | None = None, allow_unsigned: bool = False) -> None:
        from .. import keys

        self.keys = [keys.load_public_key(p) for p in (trusted_key_paths or [])]
        self.allow_unsigned = allow_unsigned

    def verify(self, data: bytes, vid: VersionId, actual: ModelFiles, root: Path, policies: list[LoadedPolicy]) -> str:
        """What was verified, in words; ``AdmissionDenied`` with the reason otherwise."""
        from .. import verify

        try:
            doc = verify._strict_json(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise AdmissionDenied("the attestation is not valid JSON") from None
        signed = isinstance(doc, dict) and "payloadType" in doc
        if signed:
            if not self.keys:
                raise AdmissionDenied("the attestation is signed but no trusted key is configured (give --trust KEY, or the receiver's --state-dir)")
            try:
                st, kid, kt = verify.open_statement(doc, self.keys)
            except VerificationError as exc:
                raise AdmissionDenied(f"the attestation does not verify ({exc.check}): {exc.detail}") from None
            how = f"attestation signed by {kt} keyid {kid[:16]}…"
        else:
            if not self.allow_unsigned:
                raise AdmissionDenied("the attestation is not signed (plain JSON): refused (only `check --allow-unsigned` accepts that, digests only)")
            st, how = doc, "UNSIGNED attestation accepted (--allow-unsigned: nothing is authenticated, digests only)"
        if not isinstance(st, dict) or st.get("_type") != STATEMENT_TYPE or st.get("predicateType") != PREDICATE_TYPE:
            raise AdmissionDenied(f"the attestation is not an onnxguard admission statement ({PREDICATE_TYPE})")
        pred = st.get("predicate")
        if not isinstance(pred, dict):
            raise AdmissionDenied("the attestation has no predicate")

        # 1. this version, this artifact
        if pred.get("version") != asdict(vid):
            other = pred.get("version") if isinstance(pred.get("version"), dict) else {}
            raise AdmissionDenied(f"the attestation is for {show(other.get('registry'))} models:/{show(other.get('model'))}/{show(other.get('version'))} "
                                  f"(artifact {show(other.get('artifact'))}), not for {vid.describe()}")
        # 2. an admission policy, as named, with no deviation
        pp = pred.get("policy") if isinstance(pred.get("policy"), dict) else {}
        lp = next((p for p in policies if p.sha256 == pp.get("sha256") and p.policy.name == pp.get("name")), None)
        if lp is None:
            want = ", ".join(f"'{p.policy.name}' v{p.policy.version} (sha256 {p.sha256[:16]}…)" for p in policies)
            raise AdmissionDenied(f"the scans ran under policy '{show(pp.get('name'))}' (sha256 {show(pp.get('sha256'))[:16]}…), not an admission policy: {want}")
        if deviations_of(pred):
            raise AdmissionDenied(f"the scans deviated from policy '{lp.policy.name}': {show(json.dumps(deviations_of(pred)))}")
        # 3. exactly the model files of the artifact, each once, with the same bytes
        entries = pred.get("files")
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("path"), str) for e in entries):
            raise AdmissionDenied("the attestation's file list is malformed")
        counts = Counter(e["path"] for e in entries)
        twice = sorted(p for p, n in counts.items() if n > 1)
        if twice:
            raise AdmissionDenied(f"the attestation lists {', '.join(map(show, twice))} more than once")
        missing = sorted(set(actual.files) - set(counts))
        if missing:
            raise AdmissionDenied(f"model file(s) not covered by the attestation: {', '.join(map(show, missing))}")
        extra = sorted(set(counts) - set(actual.files))
        if extra:
            raise AdmissionDenied(f"the attestation covers file(s) the artifact does not hold as model files: {', '.join(map(show, extra))}")
        for e in entries:
            if e.get("sha256") != actual.files[e["path"]]:
                raise AdmissionDenied(f"{show(e['path'])} has changed since it was scanned (sha256 {actual.files[e['path']][:16]}…, attested {show(e.get('sha256'))[:16]}…)")
        subjects = st.get("subject")
        if not isinstance(subjects, list) or sorted((s.get("name"), (s.get("digest") or {}).get("sha256")) for s in subjects if isinstance(s, dict)) != sorted(actual.files.items()) \
                or len(subjects) != len(actual.files):
            raise AdmissionDenied("the attestation's subjects differ from its file list")
        if sorted(pred.get("loadable") or []) != sorted(actual.loadable):
            raise AdmissionDenied(f"the attestation says the registry loads {show(pred.get('loadable'))}, but it loads {', '.join(map(show, actual.loadable))}")
        # 4. each file's own report, through core verification
        said = []
        for e in sorted(entries, key=lambda e: e["path"]):
            said.append(self._check_report(e, root / e["path"], lp, signed))
        files = ", ".join(f"{show(p)} sha256 {d[:12]}…{' (loaded)' if p in actual.loadable else ''}" for p, d in sorted(actual.files.items()))
        return (f"{how} for {vid.describe()}; covers exactly the {len(actual.files)} model file(s) of the artifact: {files}; "
                f"each report {said[0] if len(set(said)) == 1 else '; '.join(said)}")

    def _check_report(self, entry: dict[str, Any], path: Path, lp: LoadedPolicy, signed: bool) -> str:
        from .. import verify

        rel = show(entry["path"])
        rep = entry.get("report")
        if signed:
            if not isinstance(rep, dict) or "payloadType" not in rep:
                raise AdmissionDenied(f"the report for {rel} is not a signed DSSE envelope")
            try:  # the signed payload, read as a dict: its deviations, whatever the report schema's version
                inner, _, _ = verify.open_statement(rep, self.keys)
            except VerificationError as exc:
                raise AdmissionDenied(f"the report for {rel} does not verify ({exc.check}): {exc.detail}") from None
            dev = deviations_of(inner.get("predicate"))
            if dev:
                raise AdmissionDenied(f"the report for {rel} deviates from policy '{lp.policy.name}': {show(json.dumps(dev))}")
            outcomes, verified = verify.check_envelope(rep, self.keys, model_path=path, policy=lp, require_verdict="pass")
            if verified is None:
                bad = next(o for o in outcomes if o.status == "failed")
                raise AdmissionDenied(f"the report for {rel} does not verify ({bad.name}): {bad.detail}")
            return (f"signed by keyid {verified.keyid[:16]}…, model digest matched, policy '{lp.policy.name}' v{lp.policy.version} "
                    f"(sha256 {lp.sha256[:16]}…), verdict {verified.verdict}, no deviations")
        # --allow-unsigned: digests and figures only, nothing authenticated
        if not isinstance(rep, dict):
            raise AdmissionDenied(f"the report for {rel} is missing")
        if deviations_of(rep):
            raise AdmissionDenied(f"the report for {rel} deviates from policy '{lp.policy.name}': {show(json.dumps(deviations_of(rep)))}")
        try:
            report = load_report(rep)
        except Exception:  # noqa: BLE001 - any malformed report is a refusal
            raise AdmissionDenied(f"the report for {rel} is not a valid onnxguard report") from None
        from ..digest import sha256_file

        if report.model.sha256 != sha256_file(path):
            raise AdmissionDenied(f"the report for {rel} is about another file")
        if report.policy is None or report.policy.sha256 != lp.sha256:
            raise AdmissionDenied(f"the report for {rel} was not made under policy '{lp.policy.name}'")
        verdict = report.summary.verdict if report.summary else None
        if verdict != "pass":
            raise AdmissionDenied(f"the report for {rel} has verdict {verdict}")
        return f"UNSIGNED, model digest matched, policy '{lp.policy.name}' (sha256 {lp.sha256[:16]}…), verdict pass, no deviations"
