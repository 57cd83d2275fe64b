"""curl: the README's recipe (recipes/curl.sh)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.interop.conftest import RECIPES, REFUSAL_BODY, REFUSED_CERTIFICATE, REFUSED_CLIENT_ID, Interop, RecipeFiles

pytestmark = pytest.mark.wire


def run_recipe(interop: Interop, client_id: str, files: RecipeFiles) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ISSUER": interop.issuer, "CLIENT_ID": client_id, "CERT": files.cert, "KEY": files.key,
           "CA": files.ca}
    return subprocess.run(["sh", str(RECIPES / "curl.sh")], env=env, capture_output=True, text=True, timeout=30)


def test_token_bound_to_the_certificate(interop: Interop, client_id: str) -> None:
    result = run_recipe(interop, client_id, interop.files(client_id))
    assert result.returncode == 0, result.stderr
    interop.assert_bound_token(json.loads(result.stdout)["access_token"], client_id)


def test_refused_certificate(interop: Interop) -> None:
    with interop.refusal_logged():
        result = run_recipe(interop, REFUSED_CLIENT_ID, interop.files(REFUSED_CERTIFICATE))
    print(f"curl exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}")
    # --fail-with-body: exit status 22 for an HTTP error, and the body still printed.
    assert result.returncode == 22
    assert result.stderr == "curl: (22) The requested URL returned error: 401\n"
    assert json.loads(result.stdout) == REFUSAL_BODY
