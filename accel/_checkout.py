"""``service/`` and ``bench/`` as ``accel.service`` and ``accel.bench`` in a plain checkout.

A wheel holds them inside ``accel/``, and an editable install maps them there (pyproject's
package-dir). A checkout used without installing (the device machine gets a copy of the tree)
has them beside ``accel/``: this finder maps them from there, so that each module has its one
name however ``accel`` was found. :mod:`accel.gpu.sources` does the same for the kernels.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_ACCEL = Path(__file__).resolve().parent
FOLDERS = {f"accel.{name}": _ACCEL.parent / name for name in ("service", "bench")}

# pyproject's [project.entry-points], which only an installed distribution's metadata carries:
# the same entries for a checkout (tests/test_layers.py checks that the two agree)
ENTRY_POINTS = {
    "he_accel.backends": {"remote": "accel.service.remote:make_backend [client]"},
}


class CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds ``accel.service`` and ``accel.bench`` in the folders beside this ``accel``."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ARG002
        folder = FOLDERS.get(fullname)
        if folder is None or not (folder / "__init__.py").is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


def entry_points(group: str) -> dict[str, str]:
    """``{name: "module:attr [extras]"}`` of ``group`` when this ``accel`` is a checkout's (whose
    ``service/`` lies beside it), else nothing: an installed wheel has its own metadata."""
    if (_ACCEL / "service").is_dir() or not (FOLDERS["accel.service"] / "__init__.py").is_file():
        return {}
    return dict(ENTRY_POINTS.get(group, {}))


def install() -> None:
    """Put the finder first when this ``accel`` is a checkout's (a wheel has ``accel/service``)."""
    if (_ACCEL / "service").is_dir() or any(isinstance(f, CheckoutFinder) for f in sys.meta_path):
        return
    # first, so that it wins over another checkout's editable-install finder in the same venv
    sys.meta_path.insert(0, CheckoutFinder())
