"""The systemd units of deploy/systemd/: systemd accepts them (``systemd-analyze verify``), and
the command and environment each gives start a server that behaves as configured. systemd
itself does not run here: the unit's ExecStart runs as a child process, with its Environment
(and the variables of its EnvironmentFile, which win, as with systemd), the paths and ports
changed."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from authz.certificates.rejection import RejectionReason as R
from tests.deploy.clients import request_from
from tests.deploy.headers import certificate_headers
from tests.deploy.proxies import render
from tests.deploy.shipped_redis import RedisServers
from tests.support.debian import require_command
from tests.support.server import REPO, RunningServer, free_port
from tests.wire.client import WireResponse, assert_token_response
from tests.wire.material import WirePKI, registrations

pytestmark = pytest.mark.wire

UNITS = REPO / "deploy" / "systemd"
BIN = Path(sys.executable).parent  # the virtual environment's authz and authz-sample-api


def _render(unit: Path, replacements: dict[str, str]) -> str:
    text = unit.read_text()
    for old, new in replacements.items():
        assert old in text, f"{unit.name} no longer contains {old!r}: update the test's templating"
        text = text.replace(old, new)
    return text


def _environment_file(path: Path) -> dict[str, str]:
    """The variables of an EnvironmentFile written as deploy/systemd/authz.env is: NAME=value
    lines (no quotes, which a shell and systemd would read differently) and comments."""
    variables = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            assert name.startswith("AUTHZ_") and not any(q in value for q in "'\""), line
            variables[name] = value
    return variables


def _service(text: str, instance: str | None = None) -> tuple[dict[str, str], list[str]]:
    """The environment and the ExecStart command of a unit's text; ``instance`` replaces %i in
    a template unit."""
    if instance is not None:
        text = text.replace("%i", instance)
    unexpanded = [line for line in text.splitlines() if "%" in line and not line.startswith("#")]
    assert not unexpanded, f"specifiers the test does not expand: {unexpanded}"
    environment: dict[str, str] = {}
    from_files: dict[str, str] = {}  # systemd: an EnvironmentFile's variables override Environment=
    command: list[str] = []
    for line in text.splitlines():
        if line.startswith("Environment="):
            name, _, value = line.removeprefix("Environment=").partition("=")
            environment[name] = value
        elif line.startswith("EnvironmentFile="):
            from_files |= _environment_file(Path(line.removeprefix("EnvironmentFile=")))
        elif line.startswith("ExecStart="):
            command = shlex.split(line.removeprefix("ExecStart="))
    return environment | from_files, command


def _start(text: str, port: int, log_path: Path, instance: str | None = None) -> RunningServer:
    environment, command = _service(text, instance)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")} | environment
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=log_path.parent)
    # (No CA file: the server speaks plain HTTP.)
    server = RunningServer(process, port, log_path.parent, log_path, Path(os.devnull), scheme="http")
    deadline = time.monotonic() + 30
    while server.log().count("Application startup complete") < int(environment.get("AUTHZ_WORKERS", "1")):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"{command[0]} did not start:\n{server.log()}")
        time.sleep(0.05)
    return server


@pytest.mark.parametrize("unit", sorted(UNITS.glob("*.service")), ids=lambda p: p.name)
def test_systemd_accepts_the_unit(unit: Path, tmp_path: Path) -> None:
    analyze = require_command("systemd-analyze", "systemd")
    copy = tmp_path / unit.name  # with an ExecStart that exists: verify checks it
    copy.write_text(_render(unit, {"/opt/authz/.venv/bin/": f"{BIN}/"}))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_authz_behind_a_proxy_runs_as_the_unit_says(pki: WirePKI, data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    text = _render(UNITS / "authz-behind-proxy.service", {
        "AUTHZ_PORT=8080": f"AUTHZ_PORT={port}",
        "/etc/authz/client-ca.pem": str(pki.trust_anchor),
        "/etc/authz/client-intermediates.pem": str(pki.intermediate),
        "AUTHZ_DATA_DIR=/var/lib/authz": f"AUTHZ_DATA_DIR={data_dir}",
        "/opt/authz/.venv/bin/": f"{BIN}/",
    })
    server = _start(text, port, tmp_path / "authz.log")
    try:
        url = f"http://127.0.0.1:{port}"
        metadata = httpx.get(url + "/.well-known/oauth-authorization-server", trust_env=False).json()
        assert metadata["token_endpoint"] == "https://auth.example.com/token"
        # The proxy (127.0.0.1) forwards intermediate-client's certificate alone, as nginx does:
        # the intermediates come from the unit's AUTHZ_INTERMEDIATES.
        form = {"grant_type": "client_credentials", "client_id": "intermediate-client"}
        forwarded = certificate_headers("nginx", [pki["intermediate-client"].leaf_der])
        assert_token_response(request_from("127.0.0.1", server, url + "/token", form=form, headers=forwarded))
        # From any other address, the header is ignored.
        response = request_from("127.0.0.2", server, url + "/token", form=form, headers=forwarded)
        assert response.status == 401
        assert response.json()["error_description"] == R.NO_CERTIFICATE.public_description
    finally:
        server.stop()


def test_sample_api_behind_a_proxy_runs_as_the_unit_says(pki: WirePKI, tmp_path: Path) -> None:
    port = free_port()
    text = _render(UNITS / "authz-sample-api.service", {
        "--port 8081": f"--port {port}",
        # No authorization server here: a closed port (the API starts, and says it is not ready).
        "https://auth.example.com": f"https://127.0.0.1:{free_port()}",
        "/etc/authz/auth-server-ca.pem": str(pki.server_ca),
        "/opt/authz/.venv/bin/": f"{BIN}/",
    })
    server = _start(text, port, tmp_path / "api.log")
    try:
        forwarded = certificate_headers("nginx", [pki["dn-client"].leaf_der])
        response = httpx.get(f"http://127.0.0.1:{port}/accounts", headers=forwarded, trust_env=False)
        assert (response.status_code, response.headers["www-authenticate"]) == (401, 'Bearer realm="accounts"')
    finally:
        server.stop()


def test_instances_of_the_template_unit_share_one_redis(pki: WirePKI, redis_servers: RedisServers,
                                                        tmp_path: Path) -> None:
    store = redis_servers.redis("store")  # deploy/redis/redis.conf and its authz user
    env_file = tmp_path / "authz.env"
    env_file.write_text(render(UNITS / "authz.env", {
        "/etc/authz/client-ca.pem": str(pki.trust_anchor),
        "/etc/authz/client-intermediates.pem": str(pki.intermediate),
        "redis://authz@10.0.0.5:6379/0": store.url(),
        "/etc/authz/redis-password": str(redis_servers.password_file()),
    }))
    text = _render(UNITS / "authz@.service", {
        "/etc/authz/authz.env": str(env_file),
        "/opt/authz/.venv/bin/": f"{BIN}/",
    })
    # The management commands read the same file (deploy/README.md: a shell sources it).
    manage = _manage(env_file)
    manage("clients", "add", "intermediate-client", *registrations(pki)["intermediate-client"])
    servers = []
    try:
        for port in (free_port(), free_port()):  # authz@PORT: the instance name is the port
            servers.append(_start(text, port, tmp_path / f"authz@{port}.log", instance=str(port)))
        first, second = servers
        # The proxy forwards intermediate-client's certificate alone, as nginx does.
        forwarded = certificate_headers("nginx", [pki["intermediate-client"].leaf_der])

        def post(server: RunningServer, path: str, form: dict[str, str]) -> WireResponse:
            return request_from("127.0.0.1", server, server.base_url + path, form=form, headers=forwarded)

        token = {"grant_type": "client_credentials", "client_id": "intermediate-client"}
        access_token = assert_token_response(post(first, "/token", token))["access_token"]
        # Revoked through one instance: inactive at the other.
        revocation = {"client_id": "intermediate-client", "token": access_token}
        assert post(second, "/revoke", revocation).status == 200
        assert post(first, "/introspect", revocation).json() == {"active": False}

        # A client registered while both run: each instance had cached it as unknown, and
        # serves it as soon as the CLI's write is announced (milliseconds, not a poll interval).
        late = {"grant_type": "client_credentials", "client_id": "late-client"}
        assert [post(server, "/token", late).status for server in servers] == [401, 401]
        manage("clients", "add", "late-client", "--auth-method", "tls_client_auth",
               "--subject-dn", "CN=intermediate-client,O=authz tests")
        registered = time.monotonic()
        for server in servers:
            response = post(server, "/token", late)
            while response.status == 401 and time.monotonic() - registered < 0.5:
                response = post(server, "/token", late)
            assert_token_response(response)
    finally:
        for server in servers:
            server.stop()


def _manage(env_file: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``authz ARGS`` (the management commands) with the variables of ``env_file``, as an
    operator runs them: set -a; . /etc/authz/authz.env; authz clients ..."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")} | _environment_file(env_file)

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(BIN / "authz"), *args], capture_output=True, text=True, env=env, timeout=60,
                                cwd=env_file.parent)
        assert result.returncode == 0, f"authz {' '.join(args)}: {result.stderr}"
        return result

    return manage
