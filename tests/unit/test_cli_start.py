"""The CLI starts fast: ``authz --help`` imports no command, and a management command does not
import the server's stack (uvicorn, authlib, the TLS layer)."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from authz.cli.main import _COMMANDS, main
from tests.support.server import REPO

HEAVY = ("uvicorn", "authlib", "authz.tls", "authz.oauth", "starlette", "httpx", "redis")


def _imported_by(*args: str) -> set[str]:
    code = ("import sys; from authz.cli.main import main\n"
            f"try:\n    main({list(args)!r})\nexcept SystemExit:\n    pass\n"
            "print('\\n'.join(sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    modules = set(result.stdout.split())
    assert "authz.cli.main" in modules, result.stderr  # the command ran and listed its modules
    return modules


def test_help_lists_every_command_without_importing_them() -> None:
    modules = _imported_by("--help")
    assert not {m for m in modules if m.startswith(("authz.cli.", "authz_resource"))} - {"authz.cli.main"}
    result = CliRunner().invoke(main, ["--help"])
    for name in _COMMANDS:
        assert f"  {name} " in result.output


def test_management_commands_leave_the_server_stack_alone(tmp_path: object) -> None:
    modules = _imported_by("clients", "list", "--data-dir", str(tmp_path))
    assert "authz.cli.clients" in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY)}


def test_each_lazy_command_resolves() -> None:
    runner = CliRunner()
    for name in _COMMANDS:
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
