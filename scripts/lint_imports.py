#!/usr/bin/env python3
"""Check the layer contract (pyproject ``[tool.importlinter]``) with import-linter.

import-linter reads a package from its folder, and a checkout keeps ``service/`` and ``bench/``
beside ``accel/`` (pyproject's package-dir puts them inside it in a wheel): so the Python files
are first laid out as the wheel holds them, in a temporary folder, and checked there.

    python scripts/lint_imports.py            # the checkout this script is in
    python scripts/lint_imports.py --tree T   # check T, an already laid-out copy (tests do this)
    python scripts/lint_imports.py --stage T  # only lay out the copy in T

Exit status 0: the contract holds; 1: it is broken (import-linter lists each import chain).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# checkout folder -> its package in the wheel (pyproject [tool.setuptools.package-dir])
LAYOUT = {"accel": "accel", "service": "accel/service", "bench": "accel/bench", "kernels": "accel/kernels"}


def stage(dest: Path, root: Path = ROOT) -> Path:
    """Copy the checkout's Python files into ``dest`` in the wheel's layout; returns ``dest``."""
    for folder, package in LAYOUT.items():
        for src in (root / folder).rglob("*.py"):
            rel = src.relative_to(root / folder)
            if ".venv" in rel.parts or "__pycache__" in rel.parts:
                continue
            out = dest / package / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
    return dest


def lint(tree: Path, config: Path = ROOT / "pyproject.toml") -> subprocess.CompletedProcess:
    """Run import-linter on the laid-out ``tree`` (its ``accel`` first on the path)."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))")
    return subprocess.run([sys.executable, "-c", code, str(config)], cwd=tree, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tree", type=Path, help="check this laid-out copy instead of staging the checkout")
    g.add_argument("--stage", type=Path, metavar="DIR", help="only lay out the copy in DIR")
    args = p.parse_args(argv)
    if args.stage:
        stage(args.stage)
        return 0
    with tempfile.TemporaryDirectory(prefix="hea-layers-") as tmp:
        proc = lint(args.tree or stage(Path(tmp)))
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
