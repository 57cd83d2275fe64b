"""The JSON log lines: whatever a line carries, it is written, whole, as one JSON object."""

import json
from typing import Any

import pytest
import structlog

from authz.logs import configure_logging


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


@pytest.fixture(autouse=True)
def fresh_configuration() -> Any:
    yield
    structlog.reset_defaults()


def test_a_traceback_is_written_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    log = structlog.get_logger("test")
    try:
        raise RuntimeError("storage on fire")
    except RuntimeError:
        log.exception("unhandled_error", path="/token")
    [line] = _lines(capsys)
    assert line["event"] == "unhandled_error" and line["level"] == "error" and line["path"] == "/token"
    assert line["exception"].startswith("Traceback") and "RuntimeError: storage on fire" in line["exception"]
    assert line["timestamp"].endswith("Z")


def test_values_json_cannot_hold_natively_are_still_written(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    log = structlog.get_logger("test")
    huge = 2**80  # a client's "exp" claim can be any JSON number
    log.warning("claim_refused", exp=huge, where=object(), **{"ünïcode": "välue\u202e"})
    [line] = _lines(capsys)
    assert line["exp"] == huge
    assert line["where"].startswith("<object object")
    assert line["ünïcode"] == "välue\u202e"


def test_level_filter(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning", "json")
    log = structlog.get_logger("test")
    log.info("token_issued")
    log.warning("client_authentication_failed")
    assert [line["event"] for line in _lines(capsys)] == ["client_authentication_failed"]


def test_console_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "console")
    structlog.get_logger("test").info("token_issued", client_id="pki")
    err = capsys.readouterr().err
    assert "token_issued" in err and "client_id=pki" in err
