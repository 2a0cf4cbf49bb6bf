"""Signed reports: DSSE envelope around an in-toto Statement, keys, verification checks, CLI."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization

from onnxguard import keys as K
from onnxguard import signing as S
from onnxguard import verify as V
from onnxguard.cli import main
from onnxguard.errors import BadInputError, KeyFileError, VerificationError
from onnxguard.report import Interval, Quantity, Report
from onnxguard.scan import ScanOptions, run_scan
from tests.conftest import EXAMPLE_DATA, EXAMPLE_MODEL

KINDS = ("ecdsa-p256", "ed25519")


@pytest.fixture(scope="module")
def small_policy(tmp_path_factory) -> str:
    """The shipped 'standard' policy with tiny budgets, as a policy file of its own (so reports carry no deviation)."""
    from onnxguard.policy import POLICY_DIR

    text = (POLICY_DIR / "standard.toml").read_text()
    text = re.sub(r"(?m)^samples = \d+", "samples = 5", re.sub(r"(?m)^budget = 1000\b", "budget = 20", text))
    p = tmp_path_factory.mktemp("policy") / "standard-small.toml"
    p.write_text(text)
    return str(p)


@pytest.fixture(scope="module")
def report(small_policy) -> Report:
    """One real scan of the bundled example with tiny budgets (well under a second)."""
    from onnxguard.policy import load_policy

    return run_scan(ScanOptions(model_path=EXAMPLE_MODEL, data_path=EXAMPLE_DATA, policy=load_policy(small_policy)))


@pytest.fixture(scope="module")
def keys():
    return {k: K.generate_key(k) for k in KINDS}


@pytest.fixture(scope="module")
def envelopes(report, keys):
    return {k: S.sign_report(report, keys[k]) for k in KINDS}


def _payload(env) -> bytes:
    return base64.b64decode(env["payload"])


def _with_payload(env, payload: bytes) -> dict:
    return {**env, "payload": base64.b64encode(payload).decode()}


def _with_sig(env, sig: bytes) -> dict:
    return {**env, "signatures": [{**env["signatures"][0], "sig": base64.b64encode(sig).decode()}]}


def _independent_pae(payload_type: str, body: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding, written out from the spec (not onnxguard's code)."""
    t = payload_type.encode()
    return b"DSSEv1 " + str(len(t)).encode() + b" " + t + b" " + str(len(body)).encode() + b" " + body


def _check(exc_info) -> str:
    return exc_info.value.check


def _sign_raw(payload: bytes, key) -> dict:
    """An envelope around arbitrary payload bytes, validly signed (for schema-check tests)."""
    sig = K.sign_bytes(key, S.pae(S.PAYLOAD_TYPE, payload))
    return {"payload": base64.b64encode(payload).decode(), "payloadType": S.PAYLOAD_TYPE, "signatures": [{"keyid": K.keyid(key), "sig": base64.b64encode(sig).decode()}]}


# -- format and round trip ---------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip(kind, report, keys, envelopes, small_policy):
    v = V.verify_envelope(envelopes[kind], [keys[kind].public_key()], model_path=EXAMPLE_MODEL, policy=small_policy)
    assert v.report.model_dump() == report.model_dump()
    assert v.keyid == K.keyid(keys[kind]) and v.key_type == kind
    assert [c.name for c in v.checks] == list(V.CHECKS) and all(c.ok for c in v.checks)
    assert v.verdict == report.summary.verdict
    # also from the JSON text, as written to disk
    assert V.verify_envelope(json.dumps(envelopes[kind]), keys[kind].public_key()).report.model.sha256 == report.model.sha256


def test_trusted_keys_as_files(tmp_path, keys, envelopes):
    pub = tmp_path / "k.pub.pem"
    pub.write_bytes(K.public_pem(keys["ed25519"]))
    assert V.verify_envelope(envelopes["ed25519"], str(pub)).key_type == "ed25519"
    assert V.verify_envelope(envelopes["ed25519"], [pub]).key_type == "ed25519"


def test_statement_format(report, keys, envelopes):
    env = envelopes["ecdsa-p256"]
    assert set(env) == {"payload", "payloadType", "signatures"} and env["payloadType"] == "application/vnd.in-toto+json"
    payload = _payload(env)
    st = json.loads(payload)
    assert rfc8785.dumps(st) == payload  # RFC 8785 canonical
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://onnxguard.dev/attestation/risk-report/v1"
    assert st["subject"] == [{"name": "digits_mlp.onnx", "digest": {"sha256": hashlib.sha256(EXAMPLE_MODEL.read_bytes()).hexdigest()}}]
    assert st["predicate"] == json.loads(report.model_dump_json())
    spki = keys["ecdsa-p256"].public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert env["signatures"][0]["keyid"] == hashlib.sha256(spki).hexdigest()


def test_external_data_files_are_subjects(report, keys):
    from onnxguard.report import FileDigest

    r = report.model_copy(deep=True)
    r.model.external_data = [FileDigest(path="weights.bin", sha256="ab" * 32, size_bytes=3)]
    st = json.loads(_payload(S.sign_report(r, keys["ed25519"])))
    assert st["subject"][1] == {"name": "weights.bin", "digest": {"sha256": "ab" * 32}}


def test_external_data_digest_is_checked(tmp_path, report, keys):
    from onnxguard.report import FileDigest

    model = tmp_path / "m.onnx"
    shutil.copy(EXAMPLE_MODEL, model)
    (tmp_path / "weights.bin").write_bytes(b"abc")
    r = report.model_copy(deep=True)
    r.model.external_data = [FileDigest(path="weights.bin", sha256=hashlib.sha256(b"abc").hexdigest(), size_bytes=3)]
    env = S.sign_report(r, keys["ed25519"])
    V.verify_envelope(env, keys["ed25519"].public_key(), model_path=model)
    (tmp_path / "weights.bin").write_bytes(b"abd")
    with pytest.raises(VerificationError) as e:
        V.verify_envelope(env, keys["ed25519"].public_key(), model_path=model)
    assert _check(e) == "model-digest" and "weights.bin" in str(e.value)


def test_unbounded_interval_survives_signing(report, keys):
    """A median CI with an infinite upper end is null in JSON; the signed report still verifies."""
    r = report.model_copy(deep=True)
    chk = r.checks[0]
    chk.min_perturbation = Quantity(median=0.5, mean=0.5, ci=Interval(low=0.1, high=float("inf"), method="order-statistics"), n=5, n_infinite=3)
    v = V.verify_envelope(S.sign_report(r, keys["ecdsa-p256"]), keys["ecdsa-p256"].public_key())
    assert v.report.checks[0].min_perturbation.ci.high == float("inf")


# -- tampering ---------------------------------------------------------------


def _spread(n: int, head: int, tail: int) -> list[int]:
    """Positions 0..n-1 to tamper with: all of the first ``head`` and the last ``tail``, every third between
    (no stretch of 3 goes untouched)."""
    return sorted(set(range(min(head, n))) | set(range(0, n, 3)) | set(range(max(0, n - tail), n)))


@pytest.mark.parametrize("kind", KINDS)
def test_payload_byte_flips_fail_signature(kind, keys, envelopes):
    """A flipped bit anywhere in the payload fails the signature check: every byte of the statement's head (type,
    subject, digests, predicate type: the first 2 KiB) and of its tail, and every third byte between, so that
    no stretch of 3 bytes or more goes unchecked (a verifier that signed or parsed only part of the payload would
    pass some flip there). Every byte would take ~25 s per key on a 29 kB report."""
    env, pub = envelopes[kind], keys[kind].public_key()
    payload = _payload(env)
    assert len(payload) < 64_000  # bounds the loop below (a report with a backdoor section is ~29 kB)
    for i in _spread(len(payload), head=2048, tail=256):
        bad = bytearray(payload)
        bad[i] ^= 0x01
        with pytest.raises(VerificationError) as e:
            V.verify_envelope(_with_payload(env, bytes(bad)), [pub])
        assert e.value.check == "signature", i


def test_changed_base64_payload_characters_fail(keys, envelopes):
    """The payload as it stands in the file: changing a base64 character never verifies (the first and last 1,024
    characters and every third between: no stretch of 3 characters goes unchanged)."""
    env, pub = envelopes["ecdsa-p256"], keys["ecdsa-p256"].public_key()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    text = env["payload"]
    seen = set()
    for i in _spread(len(text), head=1024, tail=1024):
        ch = text[i]
        if ch == "=":
            continue
        swapped = text[:i] + alphabet[(alphabet.index(ch) + 1) % 64] + text[i + 1 :]
        with pytest.raises(VerificationError) as e:
            V.verify_envelope({**env, "payload": swapped}, [pub])
        seen.add(e.value.check)
    assert seen <= {"signature", "envelope"} and "signature" in seen


@pytest.mark.parametrize("kind", KINDS)
def test_every_signature_byte_flip_fails_signature(kind, keys, envelopes):
    env, pub = envelopes[kind], keys[kind].public_key()
    sig = base64.b64decode(env["signatures"][0]["sig"])
    for mask in (0x01, 0x80, 0xFF):
        for i in range(len(sig)):
            bad = bytearray(sig)
            bad[i] ^= mask
            with pytest.raises(VerificationError) as e:
                V.verify_envelope(_with_sig(env, bytes(bad)), [pub])
            assert e.value.check == "signature", (i, mask)
    for bad in (b"", sig[:-1], sig + b"\0"):
        with pytest.raises(VerificationError) as e:
            V.verify_envelope(_with_sig(env, bad), [pub])
        assert e.value.check == "signature"


def test_every_model_byte_flip_fails_model_digest(tmp_path, keys, envelopes):
    env, pub = envelopes["ecdsa-p256"], keys["ecdsa-p256"].public_key()
    model = tmp_path / "digits_mlp.onnx"
    shutil.copy(EXAMPLE_MODEL, model)
    V.verify_envelope(env, [pub], model_path=model)
    subjects = json.loads(_payload(env))["subject"]
    size = model.stat().st_size
    # every byte through the digest check that verify_envelope runs ...
    with open(model, "r+b") as f:
        for i in range(size):
            f.seek(i)
            b = f.read(1)
            f.seek(i)
            f.write(bytes([b[0] ^ 0x01]))
            f.flush()
            with pytest.raises(VerificationError) as e:
                V._check_model(model, subjects)
            assert e.value.check == "model-digest", i
            f.seek(i)
            f.write(b)
            f.flush()
    # ... and a spread of positions through the whole public verification
    data = EXAMPLE_MODEL.read_bytes()
    for i in sorted({0, 1, size // 2, size - 1, *range(7, size, size // 25)}):
        bad = bytearray(data)
        bad[i] ^= 0xFF
        model.write_bytes(bytes(bad))
        with pytest.raises(VerificationError) as e:
            V.verify_envelope(env, [pub], model_path=model)
        assert e.value.check == "model-digest", i
    model.write_bytes(data + b"\0")
    with pytest.raises(VerificationError) as e:
        V.verify_envelope(env, [pub], model_path=model)
    assert e.value.check == "model-digest"


def test_other_key_fails(keys, envelopes):
    env = envelopes["ecdsa-p256"]
    other = K.generate_key("ecdsa-p256")
    with pytest.raises(VerificationError) as e:
        V.verify_envelope(env, [other.public_key()])
    assert _check(e) == "signature" and "not a trusted key" in str(e.value)
    # a forged keyid does not help: the signature itself must verify
    forged = {**env, "signatures": [{**env["signatures"][0], "keyid": K.keyid(other)}]}
    with pytest.raises(VerificationError) as e:
        V.verify_envelope(forged, [other.public_key()])
    assert _check(e) == "signature"
    # nor does an Ed25519 key, nor the envelope of the other kind
    with pytest.raises(VerificationError) as e:
        V.verify_envelope(envelopes["ed25519"], [keys["ecdsa-p256"].public_key()])
    assert _check(e) == "signature"
    # any one of several trusted keys is enough
    assert V.verify_envelope(env, [other.public_key(), keys["ecdsa-p256"].public_key()]).keyid == K.keyid(keys["ecdsa-p256"])


# -- independent verifiers ---------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_securesystemslib_verifies(kind, keys, envelopes):
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError as SslibVerificationError
    from securesystemslib.signer import SSlibKey

    env = envelopes[kind]
    kid = env["signatures"][0]["keyid"]
    key = SSlibKey.from_crypto(keys[kind].public_key(), keyid=kid)
    assert key.scheme == {"ecdsa-p256": "ecdsa-sha2-nistp256", "ed25519": "ed25519"}[kind]
    e = Envelope.from_dict(copy.deepcopy(env))  # from_dict consumes the signature dicts it is given
    assert e.pae() == _independent_pae(env["payloadType"], _payload(env))
    assert set(e.verify([key], 1)) == {kid}
    bad = bytearray(_payload(env))
    bad[len(bad) // 2] ^= 1
    with pytest.raises(SslibVerificationError):
        Envelope.from_dict(copy.deepcopy(_with_payload(env, bytes(bad)))).verify([key], 1)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize("kind", KINDS)
def test_openssl_verifies(kind, tmp_path, keys, envelopes):
    env = envelopes[kind]
    pub = tmp_path / "pub.pem"
    pub.write_bytes(K.public_pem(keys[kind]))
    sig = tmp_path / "sig.bin"
    sig.write_bytes(base64.b64decode(env["signatures"][0]["sig"]))
    good = _independent_pae(env["payloadType"], _payload(env))
    bad = bytearray(good)
    bad[-5] ^= 1

    def openssl_verify(data: bytes) -> subprocess.CompletedProcess:
        msg = tmp_path / "pae.bin"
        msg.write_bytes(data)
        if kind == "ecdsa-p256":
            cmd = ["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(sig), str(msg)]
        else:
            cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin", "-in", str(msg), "-sigfile", str(sig)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    ok = openssl_verify(good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Verified" in ok.stdout
    assert openssl_verify(bytes(bad)).returncode != 0
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"], capture_output=True, timeout=30).stdout
    assert hashlib.sha256(der).hexdigest() == env["signatures"][0]["keyid"]


# -- the other checks ----------------------------------------------------------


def test_envelope_check(report, keys, envelopes):
    pub = keys["ecdsa-p256"].public_key()
    env = envelopes["ecdsa-p256"]
    cases = [
        report.model_dump_json(),  # a plain report
        "not json {",
        json.dumps([1, 2]),
        {**env, "payloadType": "application/json"},
        {**env, "signatures": []},
        {k: v for k, v in env.items() if k != "payload"},
        {**env, "payload": env["payload"][:-3] + "!!!"},
        {**env, "signatures": [{"keyid": "x", "sig": "%%%"}]},
    ]
    for case in cases:
        with pytest.raises(VerificationError) as e:
            V.verify_envelope(case, [pub])
        assert _check(e) == "envelope", case if not isinstance(case, str) else case[:40]
    with pytest.raises(VerificationError, match="plain, unsigned"):
        V.verify_envelope(report.model_dump_json(), [pub])
    # DSSE allows URL-safe base64 and unpadded base64: still the same signed bytes
    urlsafe = {**env, "payload": base64.urlsafe_b64encode(_payload(env)).decode().rstrip("=")}
    V.verify_envelope(urlsafe, [pub])
    # but not a second spelling of the same bytes (non-zero padding bits)
    assert V._b64decode("QQ==", "x") == V._b64decode("QQ", "x") == b"A" and base64.b64decode("QR==") == b"A"
    with pytest.raises(VerificationError):
        V._b64decode("QR==", "x")
    p = env["payload"]
    if p.endswith("="):
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        last = p.rstrip("=")
        twin = last[:-1] + alphabet[alphabet.index(last[-1]) ^ 1] + p[len(last):]
        assert base64.b64decode(twin) == _payload(env)
        with pytest.raises(VerificationError) as e:
            V.verify_envelope({**env, "payload": twin}, [pub])
        assert _check(e) == "envelope"


def test_schema_check(report, keys):
    key = keys["ed25519"]
    st = S.statement_for(report)
    cases = {
        "wrong predicateType": {**st, "predicateType": "https://example.com/other/v1"},
        "wrong _type": {**st, "_type": "https://in-toto.io/Statement/v0.1"},
        "no subject": {**st, "subject": []},
        "subject digest differs from report": {**st, "subject": [{"name": "digits_mlp.onnx", "digest": {"sha256": "0" * 64}}]},
        "bad digest": {**st, "subject": [{"name": "digits_mlp.onnx", "digest": {"sha256": "xyz"}}]},
        "invalid report": {**st, "predicate": {**st["predicate"], "unknown_field": 1}},
        "not a report": {**st, "predicate": "hello"},
    }
    for what, bad in cases.items():
        with pytest.raises(VerificationError) as e:
            V.verify_envelope(_sign_raw(rfc8785.dumps(bad), key), [key.public_key()])
        assert _check(e) == "schema", what
    # a signed payload that means two things to two parsers is refused
    dup = b'{"_type":"x",' + rfc8785.dumps(st)[1:]
    with pytest.raises(VerificationError, match="duplicate key") as e:
        V.verify_envelope(_sign_raw(dup, key), [key.public_key()])
    assert _check(e) == "schema"


def test_policy_check(tmp_path, report, keys, envelopes, small_policy):
    pub = keys["ecdsa-p256"].public_key()
    env = envelopes["ecdsa-p256"]
    assert report.policy.name == "standard" and report.summary.verdict == "fail"
    V.verify_envelope(env, [pub], policy=small_policy, require_verdict="fail")
    for kwargs in ({"policy": "strict"}, {"require_verdict": "pass"}, {"require_verdict": "warn"}):
        with pytest.raises(VerificationError) as e:
            V.verify_envelope(env, [pub], **kwargs)
        assert _check(e) == "policy", kwargs
    # same name, different content: not the policy that was required
    from onnxguard.policy import POLICY_DIR

    edited = tmp_path / "standard.toml"
    edited.write_text((POLICY_DIR / "standard.toml").read_text() + "\n# edited\n")
    with pytest.raises(VerificationError) as e:
        V.verify_envelope(env, [pub], policy=str(edited))
    assert _check(e) == "policy"


def test_check_envelope_reports_each_check(tmp_path, keys, envelopes):
    model = tmp_path / "m.onnx"
    model.write_bytes(EXAMPLE_MODEL.read_bytes() + b"x")
    outcomes, verified = V.check_envelope(envelopes["ecdsa-p256"], [keys["ecdsa-p256"].public_key()], model_path=model)
    assert verified is None
    assert [(o.name, o.status) for o in outcomes] == [
        ("envelope", "ok"), ("signature", "ok"), ("schema", "ok"), ("model-digest", "failed"), ("policy", "not requested"),
    ]
    with pytest.raises(BadInputError):
        V.check_envelope(envelopes["ecdsa-p256"], [keys["ecdsa-p256"].public_key()], model_path=tmp_path / "missing.onnx")


# -- keys ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("umask", (0o000, 0o022, 0o077))
def test_keypair_files_and_modes(tmp_path, kind, umask):
    old = os.umask(umask)
    try:
        priv, pub = K.write_keypair(tmp_path / "k", kind=kind)
    finally:
        os.umask(old)
    assert (priv.name, pub.name) == ("k.pem", "k.pub.pem")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    k = K.load_private_key(priv)
    assert K.key_type(k) == kind and K.keyid(K.load_public_key(pub)) == K.keyid(k)
    with pytest.raises(KeyFileError, match="already exists"):
        K.write_keypair(tmp_path / "k", kind=kind)
    K.write_keypair(tmp_path / "k.pem", kind=kind, overwrite=True)  # a trailing .pem is tolerated
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600 and K.keyid(K.load_private_key(priv)) != K.keyid(k)


def test_passphrase_protected_key(tmp_path, report):
    priv, pub = K.write_keypair(tmp_path / "p", passphrase="correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in priv.read_bytes()
    with pytest.raises(KeyFileError, match="passphrase-protected"):
        K.load_private_key(priv)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        K.load_private_key(priv, "battery staple")
    key = K.load_private_key(priv, "correct horse")
    V.verify_envelope(S.sign_report(report, key), [K.load_public_key(pub)])


def test_key_loading_errors(tmp_path):
    priv, pub = K.write_keypair(tmp_path / "k")
    with pytest.raises(KeyFileError, match="private key"):
        K.load_public_key(priv)
    with pytest.raises(KeyFileError, match="public key"):
        K.load_private_key(pub)
    with pytest.raises(KeyFileError, match="cannot read"):
        K.load_public_key(tmp_path / "missing.pub.pem")
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(KeyFileError):
        K.load_public_key(tmp_path / "junk.pem")
    from cryptography.hazmat.primitives.asymmetric import ec

    p384 = tmp_path / "p384.pub.pem"
    p384.write_bytes(ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(KeyFileError, match="unsupported"):
        K.load_public_key(p384)


def test_default_key_created_once_with_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    k1 = K.default_key()
    msg = capsys.readouterr().err
    path = tmp_path / "cfg" / "onnxguard" / "signing-key.pem"
    assert str(path) in msg and "created" in msg
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert (path.parent / "signing-key.pub.pem").is_file()
    k2 = K.default_key()
    assert K.keyid(k1) == K.keyid(k2) and capsys.readouterr().err == ""
    # the environment variable wins, and is never created
    other, _ = K.write_keypair(tmp_path / "other")
    monkeypatch.setenv("ONNXGUARD_SIGNING_KEY", str(other))
    assert K.keyid(K.default_key()) == K.keyid(K.load_private_key(other))
    monkeypatch.setenv("ONNXGUARD_SIGNING_KEY", str(tmp_path / "nope.pem"))
    with pytest.raises(KeyFileError):
        K.default_key()


# -- CLI -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, report, keys, small_policy):
    """A key pair from `onnxguard keygen` and a signed report from `onnxguard scan --key`."""
    d = tmp_path_factory.mktemp("cli")
    assert main(["keygen", "--out", str(d / "k")]) == 0
    out = d / "report.json"
    code = main(["scan", str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--policy", small_policy, "-q",
                 "--key", str(d / "k.pem"), "--out", str(out), "--json", str(d / "plain.json")])
    assert code in (0, 1)
    return d, out, small_policy


def test_cli_scan_signs_and_verify_passes(cli_env, capsys):
    d, out, small = cli_env
    env = json.loads(out.read_text())
    assert set(env) == {"payload", "payloadType", "signatures"}
    assert Report.model_validate_json((d / "plain.json").read_text()).model.sha256 == json.loads(_payload(env))["subject"][0]["digest"]["sha256"]
    capsys.readouterr()
    assert main(["verify", str(out), "--key", str(d / "k.pub.pem"), "--model", str(EXAMPLE_MODEL), "--policy", small]) == 0
    text = capsys.readouterr().out
    for label in ("signature", "schema", "model digest", "policy"):
        assert any(line.startswith(label) and " OK " in line for line in text.splitlines()), label


def test_cli_verify_failures_exit_1(cli_env, tmp_path, capsys):
    d, out, small = cli_env
    pub = str(d / "k.pub.pem")
    model = tmp_path / "digits_mlp.onnx"
    model.write_bytes(EXAMPLE_MODEL.read_bytes()[:-1] + b"\0")
    capsys.readouterr()
    assert main(["verify", str(out), "--key", pub, "--model", str(model)]) == 1
    text = capsys.readouterr().out
    assert "model digest  FAILED" in text and "signature     OK" in text
    assert main(["verify", str(out), "--key", pub, "--require-verdict", "pass"]) == 1
    assert "policy        FAILED" in capsys.readouterr().out
    assert main(["verify", str(out), "--key", pub, "--policy", "strict"]) == 1
    K.write_keypair(tmp_path / "other")
    assert main(["verify", str(out), "--key", str(tmp_path / "other.pub.pem")]) == 1
    assert "signature     FAILED" in capsys.readouterr().out
    env = json.loads(out.read_text())
    bad = bytearray(_payload(env))
    bad[100] ^= 1
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(_with_payload(env, bytes(bad))))
    assert main(["verify", str(tampered), "--key", pub]) == 1
    assert main(["verify", str(d / "plain.json"), "--key", pub]) == 1
    assert "envelope      FAILED" in capsys.readouterr().out


def test_cli_verify_unreadable_inputs_exit_2(cli_env, tmp_path):
    d, out, small = cli_env
    pub = str(d / "k.pub.pem")
    assert main(["verify", str(tmp_path / "missing.json"), "--key", pub]) == 2
    assert main(["verify", str(out), "--key", str(tmp_path / "missing.pub.pem")]) == 2
    assert main(["verify", str(out), "--key", str(d / "k.pem")]) == 2  # a private key is not a trust anchor
    assert main(["verify", str(out), "--key", pub, "--model", str(tmp_path / "missing.onnx")]) == 2
    assert main(["verify", str(out), "--key", pub, "--policy", "no-such-policy"]) == 2
    assert main(["verify", str(out), "--key", pub, "--require-verdict", "great"]) == 2
    assert main(["verify", str(out)]) == 2  # --key is required


def test_cli_no_sign_and_default_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    base = ["scan", str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--budget", "20", "--samples", "5", "-q"]
    assert main([*base, "--no-sign", "--out", str(tmp_path / "plain.json")]) in (0, 1)
    cap = capsys.readouterr()
    assert "UNSIGNED" in cap.out and "signed DSSE" not in cap.out
    Report.model_validate_json((tmp_path / "plain.json").read_text())
    assert not (tmp_path / "cfg").exists()  # no key needed, none created
    assert main([*base, "--no-sign", "--key", "x.pem", "--out", str(tmp_path / "p2.json")]) == 2
    # no --key: the per-user default key, created with a message saying where
    assert main([*base, "--out", str(tmp_path / "signed.json")]) in (0, 1)
    cap = capsys.readouterr()
    key = tmp_path / "cfg" / "onnxguard" / "signing-key.pem"
    assert str(key) in cap.err and "signed DSSE envelope" in cap.out
    assert main(["verify", str(tmp_path / "signed.json"), "--key", str(key.with_name("signing-key.pub.pem"))]) == 0


def test_cli_keygen_passphrase_and_scan(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OG_PASS", "s3cret")
    assert main(["keygen", "--out", str(tmp_path / "ed"), "--type", "ed25519", "--passphrase-env", "OG_PASS"]) == 0
    priv = tmp_path / "ed.pem"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600 and b"ENCRYPTED" in priv.read_bytes()
    assert main(["keygen", "--out", str(tmp_path / "ed")]) == 2  # exists
    assert main(["keygen", "--out", str(tmp_path / "x"), "--type", "rsa"]) == 2
    base = ["scan", str(EXAMPLE_MODEL), "--data", str(EXAMPLE_DATA), "--budget", "20", "--samples", "5", "-q", "--key", str(priv)]
    capsys.readouterr()
    # refused before the scan runs: no passphrase for an encrypted key
    assert main([*base, "--out", str(tmp_path / "r.json")]) == 2
    cap = capsys.readouterr()
    assert "passphrase" in cap.err and "verdict" not in cap.out and not (tmp_path / "r.json").exists()
    assert main([*base, "--out", str(tmp_path / "r.json"), "--passphrase-env", "OG_PASS"]) in (0, 1)
    assert main(["verify", str(tmp_path / "r.json"), "--key", str(tmp_path / "ed.pub.pem"), "--model", str(EXAMPLE_MODEL)]) == 0
