"""Registration API at scale: 1,000 clients registered over HTTP by an administrator, then each
used once (a token with its own certificate), timed; the store's size before and after.

    .venv/bin/python tests/bench/bench_registration.py [--clients 1000] [--concurrency 8] [--store URL]

Each client is self_signed_tls_client_auth with a certificate of its own (P-256), so the
registration carries a real jwks with x5c, as automation would send it. Prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.server import authz_cli, start_server  # noqa: E402
from tests.wire.material import build_wire_pki, registrations  # noqa: E402


def self_signed(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return (certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def jwk(pem: bytes) -> dict[str, Any]:
    from authz.clients.model import jwk_for_certificate

    return jwk_for_certificate(x509.load_pem_x509_certificate(pem))


def context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    made = ssl.create_default_context(cafile=str(ca))
    made.load_cert_chain(cert, key)
    return made


async def run(clients: int, concurrency: int, store: str | None, directory: Path) -> None:
    pki = build_wire_pki(directory / "pki")
    data_dir = directory / "data"
    server = start_server(tls_cert=pki.server_cert, tls_key=pki.server_key, ca_file=pki.server_ca, data_dir=data_dir,
                          log_path=directory / "authz.log", trust_anchors=[pki.trust_anchor],
                          extra_args=["--store", store] if store else [],
                          env={"AUTHZ_STORE_POLL_INTERVAL": "0.2"})
    store_args = ["--store", store] if store else []
    admin = [a for a in registrations(pki)["dn-client"]]
    admin[admin.index("--scope") + 1] = "clients:manage"
    authz_cli("clients", "add", "admin", *admin, "--resource", server.base_url + "/register", *store_args,
              data_dir=data_dir)
    size_before = store_size(data_dir, store)
    print(f"generating {clients} client certificates...", flush=True)
    material = [self_signed(f"bench-client-{n}") for n in range(clients)]
    limit = asyncio.Semaphore(concurrency)
    admin_ctx = context(pki.server_ca, pki["dn-client"].cert, pki["dn-client"].key)
    try:
        async with httpx.AsyncClient(verify=admin_ctx, base_url=server.base_url, timeout=30) as api:
            token = ""
            for _ in range(100):
                answer = await api.post("/token", data={"grant_type": "client_credentials", "client_id": "admin"})
                if answer.status_code == 200:
                    token = answer.json()["access_token"]
                    break
                await asyncio.sleep(0.1)
            assert token, answer.text
            latencies: list[float] = []

            async def register(pem: bytes) -> str:
                async with limit:
                    started = time.perf_counter()
                    answer = await api.post("/register", headers={"Authorization": f"Bearer {token}"}, json={
                        "token_endpoint_auth_method": "self_signed_tls_client_auth",
                        "jwks": {"keys": [jwk(pem)]}, "scope": "read"})
                    latencies.append(time.perf_counter() - started)
                    assert answer.status_code == 201, answer.text
                    return str(answer.json()["client_id"])

            started = time.perf_counter()
            client_ids = await asyncio.gather(*(register(pem) for pem, _ in material))
            registration_seconds = time.perf_counter() - started
        files = directory / "clients"
        files.mkdir()
        use_latencies: list[float] = []

        async def use(n: int) -> None:
            async with limit:
                cert, key = files / f"{n}.crt", files / f"{n}.key"
                cert.write_bytes(material[n][0])
                key.write_bytes(material[n][1])
                ctx = context(pki.server_ca, cert, key)
                started = time.perf_counter()
                async with httpx.AsyncClient(verify=ctx, base_url=server.base_url, timeout=30) as client:
                    answer = await client.post("/token", data={"grant_type": "client_credentials",
                                                               "client_id": client_ids[n]})
                use_latencies.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text

        started = time.perf_counter()
        await asyncio.gather(*(use(n) for n in range(clients)))
        use_seconds = time.perf_counter() - started
        size_after = store_size(data_dir, store)
    finally:
        server.stop()

    def pct(values: list[float], q: float) -> float:
        return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000

    print()
    print("| step | clients | seconds | per second | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    print(f"| register over the API ({concurrency} at a time) | {clients} | {registration_seconds:.2f} | "
          f"{clients / registration_seconds:.0f} | {statistics.median(latencies) * 1000:.1f} | "
          f"{pct(latencies, 0.99):.1f} |")
    print(f"| first token of each (new TLS connection) | {clients} | {use_seconds:.2f} | "
          f"{clients / use_seconds:.0f} | {statistics.median(use_latencies) * 1000:.1f} | "
          f"{pct(use_latencies, 0.99):.1f} |")
    print()
    print(f"store ({store or 'SQLite ' + str(data_dir / 'authz.sqlite3')}): {size_before / 1024:.0f} KiB before, "
          f"{size_after / 1024:.0f} KiB after: {(size_after - size_before) / clients:.0f} bytes per client")


def store_size(data_dir: Path, store: str | None) -> int:
    if store:
        import redis

        return int(redis.Redis.from_url(store.replace("redis+", "redis")).info("memory")["used_memory"])
    return sum(f.stat().st_size for f in data_dir.glob("authz.sqlite3*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--store", help="a Redis URL (default: the embedded SQLite store)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="authz-registration-bench.") as directory:
        asyncio.run(run(args.clients, args.concurrency, args.store, Path(directory)))


if __name__ == "__main__":
    main()
