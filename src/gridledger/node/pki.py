"""A local certificate authority (X.509 with ``cryptography``) for a cluster's TLS: etcd, node APIs and MQTT.

``LocalCA.create(folder)`` makes ``ca.key`` (mode 0600) and ``ca.crt`` (ECDSA P-256, valid ``CA_DAYS``) in
``folder``; ``issue(name, hosts)`` makes ``name.key`` (0600) and ``name.crt`` signed by it, with the common name
``name`` (mosquitto's device identity) and the subject alternative names 127.0.0.1, localhost and ``hosts`` (IP
addresses or DNS names), usable both as a TLS server and a TLS client (``out`` puts the two files in another folder,
e.g. a meter's). ``revoke(cert)`` adds the certificate's serial to ``crl.pem`` (the revocation list the MQTT broker
checks). Nothing here is hand-made crypto:
keys, signatures and encodings are the library's.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Days a CA certificate is valid; leaf certificates last ``LEAF_DAYS``.
CA_DAYS = 3650
LEAF_DAYS = 825
DEFAULT_HOSTS = ("127.0.0.1", "localhost")
REVOKED_FILE = "revoked.json"


def write_private(path: Path, data: str | bytes) -> None:
    """Write a secret readable by its owner only (mode 0600 from its creation on; an existing file is replaced)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files one party uses: the CA certificate to verify others, its own certificate and key."""

    ca: Path
    cert: Path
    key: Path


def _name(name: str, common: bool = True) -> x509.Name:
    """``O=gridledger`` and ``name`` as the common name (or, with ``common=False``, as the organizational unit)."""
    oid = NameOID.COMMON_NAME if common else NameOID.ORGANIZATIONAL_UNIT_NAME
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gridledger"), x509.NameAttribute(oid, name)])


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in dict.fromkeys((*DEFAULT_HOSTS, *hosts)):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LocalCA:
    """A CA whose files live in ``folder`` (see the module docstring)."""

    def __init__(self, folder: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.folder, self.key, self.cert = folder, key, cert

    @property
    def ca_path(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def crl_path(self) -> Path:
        return self.folder / "crl.pem"

    @classmethod
    def create(cls, folder: Path, name: str | None = None) -> LocalCA:
        """A new CA in ``folder`` (created), named ``name`` (default: ``gridledger CA`` and a random tag, so that two
        clusters' CAs never share a name); ``FileExistsError`` if one is there already."""
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / "ca.key").exists():
            raise FileExistsError(f"{folder} already holds a CA (ca.key)")
        name = name or f"gridledger CA {os.urandom(4).hex()}"
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca = cls(folder, key, cert)
        write_private(folder / "ca.key", _key_pem(key))
        ca.ca_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        ca.write_crl()
        return ca

    @classmethod
    def load(cls, folder: Path) -> LocalCA:
        """The CA in ``folder`` (``FileNotFoundError`` if there is none)."""
        key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{folder / 'ca.key'} is not an EC key")
        return cls(folder, key, x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes()))

    def files(self, name: str) -> TlsFiles:
        """The files of ``name``'s certificate (issued or not)."""
        return TlsFiles(self.ca_path, self.folder / f"{name}.crt", self.folder / f"{name}.key")

    def issue(self, name: str, hosts: tuple[str, ...] = (), out: Path | None = None, common: bool = True) -> TlsFiles:
        """A key and certificate for ``name`` (its common name), valid for TLS server and client use on
        127.0.0.1, localhost and ``hosts``, written as ``name.key``/``name.crt`` in ``out`` (default: the CA's
        folder); files issued before under that name are replaced. ``common=False``: no common name (``name`` is
        the organizational unit): etcd's JSON gateway refuses client certificates with one once its access control
        is on (their common name would not be the user, the token would)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name, common))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        files = self.files(name) if out is None else TlsFiles(self.ca_path, out / f"{name}.crt", out / f"{name}.key")
        files.cert.parent.mkdir(parents=True, exist_ok=True)
        write_private(files.key, _key_pem(key))
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return files

    def revoked(self) -> dict[str, str]:
        """Revoked certificates: serial number (decimal text) -> common name."""
        path = self.folder / REVOKED_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def revoke(self, cert_path: Path) -> None:
        """Revoke the certificate in ``cert_path`` (issued by this CA): its serial goes into ``crl.pem``."""
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            raise ValueError(f"{cert_path} was not issued by this CA") from None
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        revoked = self.revoked() | {str(cert.serial_number): str(common)}
        (self.folder / REVOKED_FILE).write_text(json.dumps(revoked, indent=2))
        self.write_crl()

    def write_crl(self, days: int = LEAF_DAYS) -> None:
        """(Re)write ``crl.pem``, signed by the CA, listing every revoked serial, valid ``days``."""
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=days))
        )
        for serial in self.revoked():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(int(serial)).revocation_date(now).build()
            )
        crl = builder.sign(self.key, hashes.SHA256())
        self.crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
