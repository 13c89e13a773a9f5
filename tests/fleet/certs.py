"""Test CA plus server and client certificates for the TLS daemon, made with openssl (recipe §2).

The extensions make them pass ssl.VERIFY_X509_STRICT; client files are ca.pem/cert.pem/key.pem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .procs import run

_EC = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
_KEY_EXT = ["keyUsage=critical,digitalSignature", "authorityKeyIdentifier=keyid"]


@dataclass
class TLSFiles:
    ca_cert: str
    client_cert: str
    client_key: str


@dataclass
class ServerTLS:
    ca_cert: str
    cert: str
    key: str


def _openssl(args: str, *extra: str) -> None:
    run("openssl", *args.split(), *extra)  # our paths never contain spaces


def _sign(d: str, csr: str, out: str, ext_lines: list[str]) -> None:
    ext = os.path.join(d, os.path.basename(out) + ".ext")
    with open(ext, "w") as fh:
        fh.write("\n".join([*ext_lines, *_KEY_EXT, "subjectKeyIdentifier=hash"]) + "\n")
    _openssl(
        f"x509 -req -in {csr} -CA {d}/ca.pem -CAkey {d}/ca-key.pem -CAcreateserial"
        f" -days 3650 -extfile {ext} -out {out}"
    )


def make_certs(d: str, ips: list[str]) -> tuple[TLSFiles, ServerTLS]:
    """CA, server cert (SAN: the given IPs + localhost) and client cert under `d`."""
    os.makedirs(d, exist_ok=True)
    sans = ",".join([*(f"IP:{ip}" for ip in ips), "DNS:localhost"])
    _openssl(
        f"req -x509 {_EC} -keyout {d}/ca-key.pem -out {d}/ca.pem -days 3650 -subj /CN=dfl-test-ca",
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    _openssl(f"req {_EC} -keyout {d}/server-key.pem -out {d}/server.csr -subj /CN={ips[0]}")
    _sign(
        d,
        f"{d}/server.csr",
        f"{d}/server-cert.pem",
        [f"subjectAltName={sans}", "extendedKeyUsage=serverAuth"],
    )
    _openssl(f"req {_EC} -keyout {d}/key.pem -out {d}/client.csr -subj /CN=dfl-client")
    _sign(d, f"{d}/client.csr", f"{d}/cert.pem", ["extendedKeyUsage=clientAuth"])
    for name in ("ca-key.pem", "server-key.pem", "key.pem"):
        os.chmod(f"{d}/{name}", 0o600)
    client = TLSFiles(ca_cert=f"{d}/ca.pem", client_cert=f"{d}/cert.pem", client_key=f"{d}/key.pem")
    server = ServerTLS(
        ca_cert=f"{d}/ca.pem", cert=f"{d}/server-cert.pem", key=f"{d}/server-key.pem"
    )
    return client, server
