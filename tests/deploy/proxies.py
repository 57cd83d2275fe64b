"""Real nginx, HAProxy and Apache from Debian's packages, configured from the files in deploy/.

A site is one file of deploy/ (the proxy in front of the authorization server, or in front of
the sample API). The tests change only what differs between a server and a test run, by
exact replacement of the values the file holds: the public port (and the loopback address),
the upstream port and the file paths. A value that is no longer in the file fails the run
loudly rather than testing another configuration. Around the sites, a few lines of our own
(the global part each proxy needs to run as a child process in a temporary directory) that a
user's installation already has.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.debian import require_command
from tests.support.server import REPO

__all__ = ["PROXIES", "ProxyKind", "RunningProxy", "Site", "UpstreamTLS", "render"]

DEPLOY = REPO / "deploy"


def render(template: Path, replacements: Mapping[str, str]) -> str:
    """The text of ``template`` with each key replaced by its value; every key must occur, and
    no path of the template may be left (the test would read a file that is not there)."""
    text = template.read_text()
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{template.relative_to(REPO)} no longer contains {old!r}: update the test's "
                                 "templating to the file")
        text = text.replace(old, new)
    leftover = [line.strip() for line in text.splitlines()
                if "/etc/authz/" in line and not line.lstrip().startswith("#")]
    if leftover:
        raise AssertionError(f"{template.relative_to(REPO)}: paths left untemplated: {leftover}")
    return text


# What the deploy/ files say for each service (the name of its file): where the upstream is,
# and the name of the proxy's certificate files (/etc/authz/proxy/NAME.crt).
_UPSTREAM = {"authz": "127.0.0.1:8080", "sample-api": "127.0.0.1:8081", "authz-remote": "authz.internal:8443"}
_CERTIFICATE = {"authz": "server", "sample-api": "api", "authz-remote": "server"}


@dataclass(frozen=True)
class UpstreamTLS:
    """For a proxy that connects to authz over TLS: its own client certificate and key, and
    the CA of authz's server certificate."""

    client_cert: Path
    client_key: Path
    server_ca: Path


@dataclass(frozen=True)
class Site:
    """One deploy/ file: the service behind it ("authz", "sample-api", "authz-remote"), the
    proxy's public port, the upstream port on 127.0.0.1, and the TLS files (the proxy's server
    certificate and key, a CA for HAProxy's ``verify optional``, and what the proxy needs to
    reach authz over TLS)."""

    service: str
    public_port: int
    upstream_port: int
    server_cert: Path
    server_key: Path
    client_ca: Path
    upstream_tls: UpstreamTLS | None = None
    # Ports of further instances on 127.0.0.1, in the upstream beside the first (nginx's
    # authz.conf: its commented second server line, once per port).
    more_upstream_ports: tuple[int, ...] = ()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.public_port}"


@dataclass
class RunningProxy:
    kind: ProxyKind
    process: subprocess.Popen[bytes]
    directory: Path
    sites: dict[str, Site]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ProxyKind:
    """How to install, configure and run one proxy. Subclasses give the deploy/ directory,
    the Debian package, the replacements and the wrapper configuration."""

    name: str
    package: str
    command: str
    extension: str
    header_format: str  # authz's --proxy-cert-header for this proxy
    several_upstreams = False  # whether replacements() renders Site.more_upstream_ports

    def template(self, service: str) -> Path:
        return DEPLOY / self.name / f"{service}.{self.extension}"

    def replacements(self, site: Site, directory: Path) -> dict[str, str]:
        raise NotImplementedError

    def main_config(self, directory: Path, sites: Sequence[tuple[Site, Path]]) -> Path:
        """Write the proxy's own configuration around the rendered sites; return its path."""
        raise NotImplementedError

    def arguments(self, binary: str, config: Path, sites: Sequence[Path]) -> list[str]:
        raise NotImplementedError

    def start(self, directory: Path, sites: dict[str, Site], timeout: float = 20.0) -> RunningProxy:
        """Render ``sites`` into ``directory``, start the proxy in the foreground and wait until
        every public port accepts connections."""
        if not self.several_upstreams and any(site.more_upstream_ports for site in sites.values()):
            raise NotImplementedError(f"the tests render {self.name}'s files with one upstream server only")
        binary = require_command(self.command, self.package)
        directory.mkdir(parents=True, exist_ok=True)
        rendered = []
        for site in sites.values():
            template = self.template(site.service)
            path = directory / template.name
            path.write_text(render(template, self.replacements(site, directory)))
            rendered.append((site, path))
        config = self.main_config(directory, rendered)
        log_path = directory / "proxy.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(self.arguments(binary, config, [p for _, p in rendered]), stdout=log_file,
                                       stderr=subprocess.STDOUT, cwd=directory)
        proxy = RunningProxy(self, process, directory, sites, log_path)
        waiting = {site.public_port for site in sites.values()}
        deadline = time.monotonic() + timeout
        while waiting:
            if process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {process.returncode}:\n{proxy.log()}"
                                   f"{self._error_log(directory)}")
            if time.monotonic() > deadline:
                proxy.stop()
                raise RuntimeError(f"{self.name} did not listen within {timeout}s:\n{proxy.log()}")
            for port in list(waiting):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        waiting.discard(port)
                except OSError:
                    pass
            time.sleep(0.05)
        return proxy

    def _error_log(self, directory: Path) -> str:
        path = directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _listen(site: Site) -> str:
    return f"127.0.0.1:{site.public_port}"


def _combined(path: Path, cert: Path, key: Path) -> Path:
    """The certificate and its key in one file, as HAProxy takes them."""
    path.write_bytes(cert.read_bytes() + key.read_bytes())
    return path


class Nginx(ProxyKind):
    name, package, command, extension, header_format = "nginx", "nginx", "nginx", "conf", "nginx"
    several_upstreams = True

    def replacements(self, site: Site, directory: Path) -> dict[str, str]:
        prefix = _CERTIFICATE[site.service]
        replacements = {
            "listen 443 ssl;": f"listen {_listen(site)} ssl;",
            f"server {_UPSTREAM[site.service]};": f"server 127.0.0.1:{site.upstream_port};",
            f"/etc/authz/proxy/{prefix}.crt": str(site.server_cert),
            f"/etc/authz/proxy/{prefix}.key": str(site.server_key),
        }
        if site.more_upstream_ports:
            replacements["# server 127.0.0.1:8082;"] = "\n    ".join(
                f"server 127.0.0.1:{port};" for port in site.more_upstream_ports)
        if site.upstream_tls:
            replacements |= {"/etc/authz/proxy/proxy-client.crt": str(site.upstream_tls.client_cert),
                             "/etc/authz/proxy/proxy-client.key": str(site.upstream_tls.client_key),
                             "/etc/authz/proxy/authz-ca.pem": str(site.upstream_tls.server_ca)}
        return replacements

    def main_config(self, directory: Path, sites: Sequence[tuple[Site, Path]]) -> Path:
        # What Debian's /etc/nginx/nginx.conf provides around conf.d/, in the temporary
        # directory (workers as root: they write request bodies there).
        temp = "\n".join(f"    {kind}_temp_path {directory / kind};" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        includes = "\n".join(f"    include {path};" for _, path in sites)
        config = directory / "nginx.conf"
        config.write_text(f"""user root;
worker_processes 1;
pid {directory / 'nginx.pid'};
error_log {directory / 'error.log'} info;
events {{ worker_connections 512; }}
http {{
    access_log off;
{temp}
{includes}
}}
""")
        return config

    def arguments(self, binary: str, config: Path, sites: Sequence[Path]) -> list[str]:
        return [binary, "-c", str(config), "-p", str(config.parent), "-e", str(config.parent / "error.log"),
                "-g", "daemon off;"]


class HAProxy(ProxyKind):
    name, package, command, extension, header_format = "haproxy", "haproxy", "haproxy", "cfg", "haproxy"

    def replacements(self, site: Site, directory: Path) -> dict[str, str]:
        prefix = _CERTIFICATE[site.service]
        replacements = {
            "bind :443 ssl": f"bind {_listen(site)} ssl",
            _UPSTREAM[site.service]: f"127.0.0.1:{site.upstream_port}",
            f"/etc/authz/proxy/{prefix}.pem": str(_combined(directory / f"{prefix}.pem", site.server_cert,
                                                            site.server_key)),
            "/etc/authz/client-ca.pem": str(site.client_ca),
        }
        if site.upstream_tls:
            client = _combined(directory / "proxy-client.pem", site.upstream_tls.client_cert,
                               site.upstream_tls.client_key)
            replacements |= {"/etc/authz/proxy/proxy-client.pem": str(client),
                             "/etc/authz/proxy/authz-ca.pem": str(site.upstream_tls.server_ca)}
        return replacements

    def main_config(self, directory: Path, sites: Sequence[tuple[Site, Path]]) -> Path:
        # Debian's global section, less what needs /run and /var/lib (chroot, stats socket).
        config = directory / "global.cfg"
        config.write_text("global\n    maxconn 512\n    log stderr format short local0 warning\n")
        return config

    def arguments(self, binary: str, config: Path, sites: Sequence[Path]) -> list[str]:
        files = [a for path in (config, *sites) for a in ("-f", str(path))]
        return [binary, "-db", *files]


class Apache(ProxyKind):
    name, package, command, extension, header_format = "apache", "apache2", "apache2", "conf", "apache"
    _MODULES = ("mpm_event", "authz_core", "socache_shmcb", "ssl", "headers", "proxy", "proxy_http")

    def replacements(self, site: Site, directory: Path) -> dict[str, str]:
        prefix = _CERTIFICATE[site.service]
        return {
            "<VirtualHost *:443>": f"<VirtualHost {_listen(site)}>",
            f"http://{_UPSTREAM[site.service]}/": f"http://127.0.0.1:{site.upstream_port}/",
            f"/etc/authz/proxy/{prefix}.crt": str(site.server_cert),
            f"/etc/authz/proxy/{prefix}.key": str(site.server_key),
        }

    def main_config(self, directory: Path, sites: Sequence[tuple[Site, Path]]) -> Path:
        # What Debian's apache2.conf, ports.conf and mods-enabled/ provide (a2enmod ssl headers
        # proxy proxy_http), in the temporary directory.
        modules = "\n".join(f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so" for m in self._MODULES)
        listen = "\n".join(f"Listen {_listen(site)}" for site, _ in sites)
        includes = "\n".join(f"Include {path}" for _, path in sites)
        config = directory / "apache2.conf"
        config.write_text(f"""ServerRoot {directory}
DefaultRuntimeDir {directory}
PidFile {directory / 'apache2.pid'}
ErrorLog {directory / 'error.log'}
LogLevel warn
ServerName 127.0.0.1
User nobody
Group nogroup
{modules}
StartServers 1
ServerLimit 1
ThreadsPerChild 32
MaxRequestWorkers 32
SSLSessionCache shmcb:{directory / 'ssl_scache'}(512000)
{listen}
{includes}
""")
        return config

    def arguments(self, binary: str, config: Path, sites: Sequence[Path]) -> list[str]:
        return [binary, "-f", str(config), "-DFOREGROUND"]


PROXIES: dict[str, ProxyKind] = {kind.name: kind for kind in (Nginx(), HAProxy(), Apache())}

