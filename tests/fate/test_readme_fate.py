"""The README's FATE blocks (tagged ``<!-- readme-test: fate -->``), run as scripts in FATE's venv."""
from __future__ import annotations

import pytest

from ..test_readme import _check, _run_script, blocks

pytest.importorskip("fate.arch")
pytestmark = pytest.mark.fate

FATE_BLOCKS = [b for b in blocks() if b.lang == "python" and b.tag == "fate"]


def test_the_readme_has_fate_blocks():
    assert FATE_BLOCKS, "no block tagged <!-- readme-test: fate -->: the parser or the README changed"


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in FATE_BLOCKS])
def test_fate_block_runs_as_written(block, tmp_path):
    _check(_run_script(block.code, tmp_path), block)
