"""pytest plugin: run python-paillier's own tests with he-accel underneath.

    pytest -p accel.integrations.phe_pytest --pyargs phe.tests

``HEA_PHE_BACKEND`` picks the backend (``cpu`` by default; ``gpu``, ``auto``, or ``remote``
with ``HEA_TARGET``). The run ends with how many calls each patched entry point sent to the
backend, and fails if phe's arithmetic never reached it (a patch that silently missed).
"""
from __future__ import annotations

import os

import pytest

from . import phe as _phe

_engine: _phe.PheEngine | None = None


# phe's own cli_test.py leaves two NamedTemporaryFiles of a setUpClass unclosed; the project's
# `filterwarnings = error` would turn their ResourceWarnings, reported when pytest unconfigures,
# into a failed run after every test passed. Those leaks are phe's, not its arithmetic's: only
# unclosed-file warnings are let through, everything else stays an error.
PHE_SUITE_WARNINGS = (
    "ignore:unclosed file:ResourceWarning",
    r"ignore:Exception ignored in. <_io.FileIO name=:pytest.PytestUnraisableExceptionWarning",
)


def pytest_configure(config: pytest.Config) -> None:
    global _engine
    for spec in PHE_SUITE_WARNINGS:
        config.addinivalue_line("filterwarnings", spec)
    name = os.environ.get("HEA_PHE_BACKEND", "cpu")
    _engine = _phe.install(name)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _engine is not None:
        terminalreporter.write_line(_engine.summary())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _engine is None:
        return
    ran = session.testscollected > 0 and exitstatus == 0
    needed = ("raw_encrypt", "raw_decrypt", "raw_add", "raw_mul", "obfuscate", "powmod")
    missing = [k for k in needed if _engine.calls[k] == 0]
    if ran and missing:
        session.exitstatus = 1
        print(f"he-accel: phe's tests passed but never called {missing} through the backend")


def pytest_unconfigure(config: pytest.Config) -> None:
    global _engine
    _phe.uninstall()
    _engine = None
