"""The component is importable as ``authz_resource`` wherever it runs, and the repository's
``resource/`` directory never shadows the standard-library ``resource`` module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.resource.wire import REPO


def run_python(code: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_resource_directory_is_not_a_package() -> None:
    assert not (REPO / "resource" / "__init__.py").exists()
    assert (REPO / "resource" / "authz_resource" / "__init__.py").exists()


def test_standard_library_resource_wins_inside_the_repository() -> None:
    located = run_python("import resource; print(resource.__file__); print(resource.getpagesize())", cwd=REPO)
    path, page_size = located.splitlines()
    assert not Path(path).is_relative_to(REPO) and int(page_size) > 0


def test_authz_resource_imports_outside_the_repository(tmp_path: Path) -> None:
    located = run_python("import authz_resource, resource; from authz_resource import BearerTokenMiddleware; "
                         "print(authz_resource.__file__); print(resource.__file__)", cwd=tmp_path)
    package, stdlib = located.splitlines()
    assert Path(package).parent.name == "authz_resource"  # editable (resource/authz_resource) or site-packages
    assert not Path(stdlib).is_relative_to(REPO)
