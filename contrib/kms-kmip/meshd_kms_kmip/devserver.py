"""PyKMIP's own KMIP server on loopback, with a throwaway PKI, for tests and benchmarks.

Certificates are made at start with ``cryptography`` (a CA, a server and a
client certificate, RSA: PyKMIP's TLS suites offer RSA cipher suites only),
objects live in a SQLite file of ``workdir``. Never for production: the
keys sit unencrypted in ``workdir`` and PyKMIP's server is a reference
implementation.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from meshd.natsserver import free_port
from meshd.testing import wait_for


@dataclass
class Pki:
    """Paths of a CA and the server's and client's certificates and keys (PEM)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path, client_cn: str = "meshd", server_names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Pki:
    """A CA, and a server certificate (for ``server_names``) and a client certificate it signed, in ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def new_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def write_key(key: rsa.RSAPrivateKey, path: Path) -> Path:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
        return path

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    ca_key = new_key()
    ca_cert = (x509.CertificateBuilder().subject_name(name("meshd test KMIP CA")).issuer_name(name("meshd test KMIP CA"))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]) -> tuple[x509.Certificate,
                                                                                            rsa.RSAPrivateKey]:
        key = new_key()
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    def general_name(name: str) -> x509.GeneralName:
        try:
            return x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            return x509.DNSName(name)

    server_cert, server_key = leaf(server_names[0], ExtendedKeyUsageOID.SERVER_AUTH,
                                   [general_name(n) for n in server_names])
    # PyKMIP's server takes the client's identity (the owner of the objects it creates) from the CN.
    client_cert, client_key = leaf(client_cn, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return Pki(ca=write_cert(ca_cert, directory / "ca.pem"),
               server_cert=write_cert(server_cert, directory / "server.pem"),
               server_key=write_key(server_key, directory / "server.key"),
               client_cert=write_cert(client_cert, directory / "client.pem"),
               client_key=write_key(client_key, directory / "client.key"))


@dataclass
class PyKmipServer:
    """``kmip.services.server`` as a subprocess on a free loopback port, mutual TLS required."""

    workdir: Path
    port: int = 0
    pki: Pki | None = None
    server_hostname: str = "127.0.0.1"
    """The name the readiness probe checks in the server's certificate (one of ``make_pki``'s ``server_names``)."""
    proc: subprocess.Popen[bytes] | None = None
    log_file: Path = field(init=False)

    def start(self) -> PyKmipServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = self.pki or make_pki(self.workdir / "pki")
        self.port = self.port or free_port()
        self.log_file = self.workdir / "server.log"
        policies = self.workdir / "policies"
        policies.mkdir(exist_ok=True)
        # Every setting in the file: without one, PyKMIP's server reads /etc/pykmip/server.conf and fails.
        config = self.workdir / "server.conf"
        config.write_text("\n".join([
            "[server]", "hostname=127.0.0.1", f"port={self.port}",
            f"certificate_path={self.pki.server_cert}", f"key_path={self.pki.server_key}", f"ca_path={self.pki.ca}",
            "auth_suite=TLS1.2", "enable_tls_client_auth=True", f"policy_path={policies}",
            f"database_path={self.workdir / 'pykmip.db'}", "logging_level=INFO", ""]))
        out = open(self.workdir / "server.out", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from kmip.services.server.server import main; main()",
             "-f", str(config), "-l", str(self.log_file)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
            start_new_session=True)  # its own process group: the server forks a policy monitor and a manager
        out.close()
        wait_for(self._handshakes, timeout=60, what=f"PyKMIP server on port {self.port}")
        return self

    def _handshakes(self) -> bool:
        """True once a TLS handshake with the client certificate succeeds (the server accepts sessions)."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"the PyKMIP server exited:\n{self._tail()}")
        assert self.pki is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(str(self.pki.client_cert), str(self.pki.client_key))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw, \
                    context.wrap_socket(raw, server_hostname=self.server_hostname):
                return True
        except (OSError, ssl.SSLError):
            return False

    def _tail(self) -> str:
        parts = []
        for path in (self.workdir / "server.out", self.log_file):
            if path.exists():
                parts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def stop(self) -> None:
        """Kill the server's process group, at once.

        On SIGTERM PyKMIP's server finishes only when its accept() times out
        (10 s); its objects are committed to SQLite on every request, so
        nothing is lost by killing it, and a test of an outage wants the
        server gone now, not in 10 s.
        """
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
