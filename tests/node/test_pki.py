"""The local CA (``gridledger.node.pki``): private keys 0600, certificates a TLS stack accepts for the names they
carry, and revocation lists signed by the CA; a node configuration's ``[tls]`` table and ``etcd_password``."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.node.test_poef_rounds import C1, _config

from gridledger.node.config import ConfigError, NodeConfig
from gridledger.node.pki import LocalCA, TlsFiles


def test_keys_are_private_and_certificates_name_their_holder(tmp_path):
    ca = LocalCA.create(tmp_path / "pki")
    files = ca.issue("DC1", hosts=("10.0.0.7", "dc1.grid.example"))
    for key in (tmp_path / "pki" / "ca.key", files.key):
        assert key.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "DC1"
    cert.verify_directly_issued_by(ca.cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.0.0.7"}
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "dc1.grid.example"}
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usage)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(FileExistsError):
        LocalCA.create(tmp_path / "pki")
    assert LocalCA.load(tmp_path / "pki").cert == ca.cert


def handshake(server: TlsFiles, client_ca: TlsFiles, hostname: str, client_cert: TlsFiles | None = None) -> str:
    """A TLS handshake on loopback: the server demands a client certificate when ``client_cert`` is given."""
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(server.cert, server.key)
    if client_cert is not None:
        srv.load_verify_locations(server.ca)
        srv.verify_mode = ssl.CERT_REQUIRED
    cli = ssl.create_default_context(cafile=str(client_ca.ca))
    if client_cert is not None:
        cli.load_cert_chain(client_cert.cert, client_cert.key)
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        errors: list[Exception] = []

        def serve() -> None:
            conn, _ = lsock.accept()
            try:
                with srv.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(tls.recv(5))
            except (ssl.SSLError, OSError) as e:
                errors.append(e)

        t = threading.Thread(target=serve)
        t.start()
        try:
            with (
                socket.create_connection(lsock.getsockname()) as raw,
                cli.wrap_socket(raw, server_hostname=hostname) as s,
            ):
                s.sendall(b"hello")
                return s.recv(5).decode()
        finally:
            t.join(5)


def test_tls_accepts_the_names_and_clients_of_the_ca_only(tmp_path):
    ca = LocalCA.create(tmp_path / "pki")
    server, client = ca.issue("etcd0", hosts=("node.example",)), ca.issue("DC1")
    assert handshake(server, server, "127.0.0.1", client) == "hello"
    assert handshake(server, server, "node.example") == "hello"
    with pytest.raises(ssl.SSLCertVerificationError):  # a name the certificate does not carry
        handshake(server, server, "elsewhere.example")
    rogue = LocalCA.create(tmp_path / "rogue").issue("DC1")
    with pytest.raises(ssl.SSLCertVerificationError):  # a server of another CA
        handshake(rogue, server, "127.0.0.1")
    with pytest.raises((ssl.SSLError, OSError)):  # a client of another CA (refused by the server)
        handshake(server, server, "127.0.0.1", TlsFiles(rogue.ca, rogue.cert, rogue.key))


def test_revocation_lists_the_serial_signed_by_the_ca(tmp_path):
    ca = LocalCA.create(tmp_path / "pki")
    assert list(x509.load_pem_x509_crl(ca.crl_path.read_bytes())) == []
    device = ca.issue("MI1", out=tmp_path / "meter")
    ca.issue("MI2")
    ca.revoke(device.cert)
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    serial = x509.load_pem_x509_certificate(device.cert.read_bytes()).serial_number
    assert [r.serial_number for r in crl] == [serial]
    assert crl.is_signature_valid(ca.cert.public_key())
    assert ca.revoked() == {str(serial): "MI1"}
    foreign = LocalCA.create(tmp_path / "other").issue("MI1")
    with pytest.raises(ValueError, match="not issued by this CA"):
        ca.revoke(foreign.cert)


@pytest.mark.parametrize(
    "extra, message",
    [
        ('peers = ["https://127.0.0.1:1"]', "https URLs need a \\[tls\\] table"),
        ('[tls]\nca = "pki/ca.crt"\ncert = "pki/N.crt"', "\\[tls\\] needs ca, cert and key"),
        ('[tls]\nca = "pki/ca.crt"\ncert = "pki/N.crt"\nkey = "pki/nobody.key"', "tls.key: no file"),
        ("etcd_password = 5", "etcd_password must be a string"),
    ],
)
def test_bad_tls_settings_are_named(tmp_path, extra, message):
    LocalCA.create(tmp_path / "pki").issue("N")
    with pytest.raises(ConfigError, match=message):
        NodeConfig.load(_config(tmp_path, C1, extra))


def test_a_node_configuration_names_its_tls_files_relative_to_itself(tmp_path):
    files = LocalCA.create(tmp_path / "pki").issue("N")
    extra = 'peers = ["https://127.0.0.1:1"]\netcd_password = "pw"\n[tls]\nca = "pki/ca.crt"\ncert = "pki/N.crt"\n'
    cfg = NodeConfig.load(_config(tmp_path, C1, extra + 'key = "pki/N.key"'))
    assert cfg.tls == files and cfg.etcd_password == "pw"
