"""TLS for the emulator: a local certificate authority and a server certificate it signs.

Graph and Entra are HTTPS only, and msal refuses an authority that is not https, so the
emulator serves TLS from a certificate authority it generates itself (SPEC section 6).

Files, all in the state directory (the directory of the emulator's database):

    emulator-ca.key.pem   CA private key followed by the CA certificate (mode 0600). Created once
                          and reused on every restart, so a client that trusts the CA keeps trusting
                          the emulator. Regenerated only when it has expired.
    emulator-ca.pem       the CA certificate alone: what clients pass as `--ca-bundle`
                          (also copied wherever `--ca-out FILE` says).
    emulator-server.pem   server private key followed by a fresh server certificate for the host
                          names asked for (always 127.0.0.1, ::1 and localhost), issued at each start.

Every file is written atomically (temporary file, then rename), and the CA is created with an
exclusive link, so two emulators starting at once in the same directory agree on one CA.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_BUNDLE_NAME = "emulator-ca.key.pem"
CA_CERT_NAME = "emulator-ca.pem"
SERVER_BUNDLE_NAME = "emulator-server.pem"

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")

_CA_LIFETIME = dt.timedelta(days=3650)
_SERVER_LIFETIME = dt.timedelta(days=397)
_CLOCK_SKEW = dt.timedelta(minutes=5)
# a CA closer than this to its expiry is replaced rather than used to sign a new server certificate
_CA_RENEW_BEFORE = dt.timedelta(days=1)


@dataclass(frozen=True)
class TlsMaterial:
    """Where the emulator's TLS files are, and SSL contexts built from them."""

    ca_cert_path: Path
    """The CA certificate (PEM) in the state directory."""
    ca_out_path: Path
    """Where the CA certificate was also written for clients (`--ca-out`); may equal ca_cert_path."""
    server_bundle_path: Path
    """Server private key + certificate (PEM) for uvicorn's `ssl_certfile` (no separate key file)."""
    hosts: tuple[str, ...]

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.server_bundle_path))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only the emulator's CA."""
        return ssl.create_default_context(cafile=str(self.ca_cert_path))


def prepare_tls(
    state_dir: Path | str,
    *,
    hosts: Iterable[str] = (),
    ca_out: Path | str | None = None,
) -> TlsMaterial:
    """Load or create the CA in `state_dir`, issue a server certificate, write the CA where asked.

    `hosts` are extra host names or IP addresses the server certificate must be valid for, on top
    of 127.0.0.1, ::1 and localhost (wildcard addresses such as 0.0.0.0 are skipped).
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    all_hosts = _unique_hosts([*DEFAULT_HOSTS, *hosts])
    ca_key, ca_cert = load_or_create_ca(state)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    ca_cert_path = state / CA_CERT_NAME
    if not ca_cert_path.exists() or ca_cert_path.read_bytes() != ca_pem:
        _write_atomic(ca_cert_path, ca_pem, mode=0o644)
    out = Path(ca_out) if ca_out is not None else ca_cert_path
    if out.resolve() != ca_cert_path.resolve():
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(out, ca_pem, mode=0o644)
    server_key, server_cert = issue_server_certificate(ca_key, ca_cert, all_hosts)
    bundle = _key_pem(server_key) + server_cert.public_bytes(serialization.Encoding.PEM)
    server_path = state / SERVER_BUNDLE_NAME
    _write_atomic(server_path, bundle, mode=0o600)
    return TlsMaterial(
        ca_cert_path=ca_cert_path, ca_out_path=out, server_bundle_path=server_path, hosts=all_hosts
    )


def load_or_create_ca(state_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA of this state directory: loaded when present and valid, created otherwise."""
    path = state_dir / CA_BUNDLE_NAME
    for _ in range(3):
        loaded = _load_ca(path)
        if loaded is not None:
            key, cert = loaded
            if cert.not_valid_after_utc - _CA_RENEW_BEFORE > _now():
                return key, cert
            # expired (or about to): replace it
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        key, cert = _new_ca()
        data = _key_pem(key) + cert.public_bytes(serialization.Encoding.PEM)
        if _create_exclusive(path, data, mode=0o600):
            return key, cert
        # someone else created it meanwhile: use theirs
    loaded = _load_ca(path)
    if loaded is None:
        raise OSError(f"{path}: cannot create or read the emulator's certificate authority")
    return loaded


def issue_server_certificate(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, hosts: Iterable[str]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server certificate for `hosts` (IP addresses as IP SANs, names as DNS SANs) signed by the CA."""
    names: list[x509.GeneralName] = []
    for host in _unique_hosts(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + _SERVER_LIFETIME, ca_cert.not_valid_after_utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reconciler emulator")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def load_or_create_key_file(path: Path, nbytes: int = 32) -> bytes:
    """A random secret kept in `path` (mode 0600), created on first use; e.g. the token signing key,
    so access tokens stay valid across emulator restarts as Entra's do."""
    for _ in range(3):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        if len(data) >= nbytes:
            return data[:nbytes]
        if data:  # truncated or foreign: replace
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        if _create_exclusive(path, os.urandom(nbytes), mode=0o600):
            continue  # read back what is on disk
    raise OSError(f"{path}: cannot create or read the key file")


def _new_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "reconciler"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"reconciler emulator local CA {now.strftime('%Y-%m-%d %H:%M:%S')}"
            ),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _load_ca(path: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or len(certs) != 1:
        return None
    if certs[0].public_key() != key.public_key():
        return None
    return key, certs[0]


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _unique_hosts(hosts: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for raw in hosts:
        host = raw.strip().strip("[]")
        if not host:
            continue
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            seen.setdefault(host.lower(), None)
            continue
        if not addr.is_unspecified:
            seen.setdefault(str(addr), None)
    return tuple(seen)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _temp_file(directory: Path, data: bytes, mode: int) -> Path:
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".pem")
    try:
        os.chmod(name, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return Path(name)


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    tmp = _temp_file(path.parent, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _create_exclusive(path: Path, data: bytes, *, mode: int) -> bool:
    """Write `path` only if it does not exist yet; False when another writer got there first."""
    tmp = _temp_file(path.parent, data, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:
        # file systems without hard links: fall back to an exclusive open
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return True
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return True
