"""Signed traffic for ``run_compare.py --signed``: every INVITE carries a valid Identity.

How this works: :func:`prepare` builds a throw-away STI PKI (root STI-CA ->
intermediate -> signer with a TNAuthList, P-256, tests/unit/shaken_pki.py; no
key is kept), writes the trust anchor, an (empty) CRL and the chain the
``x5u`` URL serves, and pre-signs one distinct PASSporT per call of the
largest step (distinct ``origid``, ``iat`` = the time of signing; ``orig.tn``
= the caller, ``dest.tn`` = the callee of the same line of gen_data's
callers.csv), into a SIPp injection file ``caller;callee;passport;x5u;``
(benchmarks/sipp/uac_signed.xml builds ``Identity: <passport>;info=<x5u>;
alg=ES256;ppt=shaken``: the header has ``;`` in it, SIPp's field separator).

Both proxies read the signer's certificate from a local cache and never go
to the network:

- sipscreen: ``[shaken] certs`` (the directory of certificates by x5u,
  proxy/shaken.py), the anchor in ``trust_anchors``, the CRL in ``crl``;
- Kamailio's ``secsipid`` module (libsecsipid; benchmarks/kamailio/
  secsipid_modules.cfg and secsipid_check.cfg, added to kamailio.cfg):
  ``cache_dir`` holding the file libsecsipid names after the URL (``https://h/p.pem`` ->
  ``https_h_p.pem``), ``cache_expire`` one day; ``libopt CertVerify=21``
  (validity dates, chain to ``CertCAFile`` = the same anchor, ``CertCRLFile``
  = the same CRL), so both do the same certificate work.

Freshness: a ladder lasts minutes while every PASSporT was signed at the
start, so both sides accept an ``iat`` up to ``IAT_WINDOW_S`` (3600 s) old:
sipscreen ``iat_window_s = 3600``, secsipid ``expire = 3600``; the headers
are signed again when older than half of it.

Verified or not: each proxy counts what it verified, read after the step
(before it is stopped): sipscreen ``sipscreen_shaken_results_total`` from its
metrics endpoint, Kamailio the ``shaken_verified`` / ``shaken_failed``
statistics (``update_stat``, read with ``kamcmd stats.get_statistics``). A
call the proxy did not verify counts as a failed call of the step.
Kamailio checks the signature, iat and the certificate (libsecsipid does not
compare orig/dest with the SIP headers); sipscreen also checks the claims.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

import harness

sys.path.insert(0, str(harness.REPO))

X5U = "https://sti.bench.invalid/shaken/signer.pem"
IAT_WINDOW_S = 3600


def secsipid_missing() -> str | None:
    """None when Kamailio's secsipid module is installed, else why not."""
    import glob

    if glob.glob("/usr/lib/*/kamailio/modules/secsipid.so"):
        return None
    return "Kamailio's secsipid module not found (apt-get install -y kamailio-secsipid-modules)"


class SignedData:
    """The PKI files, both certificate caches and the signed caller file."""

    def __init__(self, work: Path, base: Path, calls: int) -> None:
        from tests.unit.shaken_pki import PKI  # noqa: PLC0415

        self.dir = work / "signed"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.base = base  # gen_data's output: callers.csv, dbtext/, blocklist.txt
        self.calls = calls
        self.pki = PKI()
        self.anchors = self.dir / "anchors.pem"
        self.crl = self.dir / "crl.pem"
        self.anchors.write_bytes(self.pki.anchors)
        self.crl.write_bytes(self.pki.crl())
        self.certs = self.dir / "certs"  # sipscreen: file name = quote(x5u, safe="")
        self.kam_cache = self.dir / "secsipid-cache"  # libsecsipid: "://" and "/" -> "_"
        for d, name in (
            (self.certs, quote(X5U, safe="")),
            (self.kam_cache, X5U.replace("://", "_").replace("/", "_")),
        ):
            d.mkdir(exist_ok=True)
            (d / name).write_bytes(self.pki.chain)
        self.data = self.dir / "data"  # what Env.data points at for the signed run
        self.data.mkdir(exist_ok=True)
        for name in ("dbtext", "blocklist.txt"):
            link = self.data / name
            if not link.exists():
                link.symlink_to(base / name)
        self.signed_at = 0.0
        self.cert_verify = 21  # libsecsipid CertVerify (run_compare --secsipid-cert-verify)

    def sign(self) -> None:
        """callers.csv with one distinct PASSporT per line (iat = now)."""
        from tests.unit.shaken_pki import passport  # noqa: PLC0415

        t0 = time.monotonic()
        now = int(time.time())
        key = self.pki.signer_key
        out = ["SEQUENTIAL"]
        with open(self.base / "callers.csv") as fh:
            rows = [ln.strip().split(";")[:2] for ln in fh if ";" in ln]
        for i in range(self.calls):
            caller, callee = rows[i % len(rows)]
            token = passport(
                key,
                orig=caller.lstrip("+"),
                dest=(callee.lstrip("+"),),
                iat=now,
                x5u=X5U,
                payload={"origid": str(uuid.UUID(int=(now << 64) | i))},
            )
            out.append(f"{caller};{callee};{token.decode()};{X5U};")
        (self.data / "callers.csv").write_text("\n".join(out) + "\n")
        self.signed_at = time.time()
        print(
            f"signed {self.calls:,} distinct Identity headers in {time.monotonic() - t0:.1f} s",
            flush=True,
        )

    def fresh(self) -> None:
        """Sign again when the headers are older than half the freshness window."""
        if time.time() - self.signed_at > IAT_WINDOW_S / 2:
            self.sign()


class SignedSipscreen(harness.Sipscreen):
    """sipscreen with ``[shaken]`` on, certificates from the local directory."""

    signed: SignedData
    verified = 0
    not_verified = 0

    def render(self, env: harness.Env) -> Path:
        cfg = super().render(env)
        s = self.signed
        cfg.write_text(
            cfg.read_text()
            + "\n[shaken]\nenabled = true\n"
            + f'trust_anchors = "{s.anchors}"\ncrl = "{s.crl}"\ncerts = "{s.certs}"\n'
            + f"iat_window_s = {IAT_WINDOW_S}\n"
        )
        return cfg

    def start(self, env: harness.Env, tag: str) -> harness.subprocess.Popen[bytes] | None:
        self.verified = self.not_verified = 0
        return super().start(env, tag)

    def worker_split(self) -> str:
        """Also read the verification counts (run after the UAC, before the stop)."""
        split = super().worker_split()
        try:
            url = f"http://{harness.HOST}:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=3) as r:
                text = r.read().decode()
        except OSError:
            return split
        for m in re.finditer(
            r"^sipscreen_shaken_results_total\{([^}]*)\} ([0-9.e+]+)$", text, re.M
        ):
            n = int(float(m.group(2)))
            if 'result="passed"' in m.group(1):
                self.verified += n
            elif 'result="unsigned"' not in m.group(1):  # the unsigned probe is not a call
                self.not_verified += n
        return split


class SignedKamailio(harness.Kamailio):
    """Kamailio + secsipid_check_identity on every INVITE with an Identity header."""

    signed: SignedData
    verified = 0
    not_verified = 0
    ctl = ""

    def render(self, env: harness.Env) -> Path:
        cfg = super().render(env)
        s = self.signed
        run = env.work / "kamailio-run"
        self.ctl = f"unix:{run}/kamailio_ctl.sock"
        text = cfg.read_text()
        mods = (harness.HERE / "kamailio" / "secsipid_modules.cfg").read_text()
        for k, v in {
            "@IAT_WINDOW_S@": str(IAT_WINDOW_S),
            "@CACHE_DIR@": str(s.kam_cache),
            "@ANCHORS@": str(s.anchors),
            "@CRL@": str(s.crl),
            "@CERT_VERIFY@": str(s.cert_verify),
        }.items():
            mods = mods.replace(k, v)
        check = (harness.HERE / "kamailio" / "secsipid_check.cfg").read_text()
        check += "\troute(SCREEN);\n"
        if "\troute(SCREEN);\n" not in text or 'loadmodule "htable.so"\n' not in text:
            raise RuntimeError("benchmarks/kamailio/kamailio.cfg changed: cannot add secsipid")
        text = text.replace('loadmodule "htable.so"\n', 'loadmodule "htable.so"\n' + mods, 1)
        text = text.replace("\troute(SCREEN);\n", check, 1)
        cfg.write_text(text)
        return cfg

    def start(self, env: harness.Env, tag: str) -> harness.subprocess.Popen[bytes] | None:
        self.verified = self.not_verified = 0
        return super().start(env, tag)

    def worker_split(self) -> str:
        kamcmd = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
        try:
            r = subprocess.run(
                [kamcmd, "-s", self.ctl, "stats.get_statistics", "all"],
                capture_output=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        text = r.stdout.decode(errors="replace")
        for name, attr in (("shaken_verified", "verified"), ("shaken_failed", "not_verified")):
            m = re.search(rf"{name}\s*=\s*(\d+)", text)
            if m:
                setattr(self, attr, int(m.group(1)))
        return ""


def account(res: harness.StepResult, system: harness.System) -> None:
    """A call its proxy did not verify is a failed call of the step."""
    verified = int(getattr(system, "verified", 0))
    bad = int(getattr(system, "not_verified", 0))
    started = res.successful + res.failed
    # a call SIPp already failed is not counted twice: only successful calls move
    unverified = min(max(started - verified, bad, 0), res.successful)
    res.failed += unverified
    res.successful -= unverified
    note = f"verified {verified}/{started}" + (f", {bad} not verified" if bad else "")
    res.note = (res.note + "; " if res.note else "") + note


def signed_systems(wanted: list[str], signed: SignedData) -> list[harness.System]:
    out: list[harness.System] = []
    for name in wanted:
        cls = {"sipscreen": SignedSipscreen, "kamailio": SignedKamailio}.get(name)
        if cls is not None:
            s = cls()
            s.signed = signed
            out.append(s)
    return out


def report_lines(iat_window: int = IAT_WINDOW_S, cert_verify: int = 21) -> list[str]:
    """The setup lines of the signed section of RESULTS.md."""
    if cert_verify != 21:
        certs = (
            f"- **secsipid `CertVerify={cert_verify}`** (not 21): Kamailio does not do the "
            "certificate work sipscreen does (dates, chain, CRL); a sensitivity run, not "
            "the like-for-like comparison"
        )
    else:
        certs = (
            "- libsecsipid reads the cached certificate file, the CA file and the CRL file "
            "and checks the chain on every call (its design: no in-memory cache); sipscreen "
            "checks each certificate once per x5u and the signature per call"
        )
    return [
        "- every INVITE carries a valid, distinct Identity (RFC 8224 full form, SHAKEN "
        "PASSporT ES256, attest A, distinct origid; orig.tn/dest.tn = the caller/callee of "
        "the same line), pre-signed at the start by a test signer certificate with a "
        "TNAuthList (root -> intermediate -> signer, P-256); at least as many headers as "
        "calls in the largest step, so no header repeats within a step",
        "- certificates from a local cache on both sides, no network: sipscreen `[shaken] "
        "certs` directory; Kamailio secsipid `cache_dir` (`cache_expire` 86400). Both check "
        "validity dates, the chain to the same trust anchor and the same CRL (secsipid "
        "`libopt CertVerify=21`, `CertCAFile`, `CertCRLFile`)",
        f"- freshness window {iat_window} s on both sides (sipscreen `iat_window_s`, secsipid "
        "`expire`): a ladder lasts minutes and the headers are signed once (again when "
        "older than half the window)",
        "- verified calls counted by each proxy (sipscreen `sipscreen_shaken_results_total"
        '{result="passed"}`; Kamailio `update_stat` `shaken_verified`/`shaken_failed` after '
        "`secsipid_check_identity`, read with kamcmd) and a call not verified is counted as "
        "failed (the note column: verified/started calls). Kamailio verifies signature, iat "
        "and certificate; sipscreen also the orig/dest claims against From/R-URI",
        "- Kamailio relays a call whatever the result (as sipscreen's default policy "
        "`failed = pass`); the blocklist (603) stays in both",
        certs,
    ]
