"""The README's code, run as a newcomer would run it.

Conventions in README.md (state them there too, so that a new block follows them):

- A ```python block is a complete script. Each one is saved to a file in an empty folder and
  run with this environment's Python in a subprocess; it must exit 0 and write nothing to
  stderr (no traceback, no warning).
- An HTML comment on the line just before the fence tags a block:
  ``<!-- readme-test: listing -->``  an excerpt, not run (the prose must say so);
  ``<!-- readme-test: service -->``  run against a ``he-accel serve`` that the test starts,
  its address in place of ``box1:50051`` and ``...`` a valid token;
  ``<!-- readme-test: fate -->``     needs FATE: run in FATE's venv by tests/fate/test_readme_fate.py.
- Every command of a ```bash block is listed in :data:`COMMANDS`: run here as written, or not
  run with the reason and the test that covers it. A command missing from that list fails.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TAGS = ("listing", "service", "fate")


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    tag: str | None  # one of TAGS, or None
    id: str  # section slug and ordinal within it, e.g. "the-raw-batch-api-1"
    line: int  # of the opening fence


def blocks(text: str | None = None) -> list[Block]:
    """The fenced blocks of the README in order, with their tags and section ids."""
    text = README.read_text() if text is None else text
    out: list[Block] = []
    section, ordinal = "top", {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            section = re.sub(r"[^a-z0-9]+", "-", line.lstrip("#").strip().lower()).strip("-")
        m = re.match(r"^```(\w*)\s*$", line)
        if m:
            start, i = i, i + 1
            body = []
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            tag = None
            prev = lines[start - 1].strip() if start else ""
            t = re.fullmatch(r"<!--\s*readme-test:\s*(\S+)\s*-->", prev)
            if t:
                if t.group(1) not in TAGS:
                    raise ValueError(f"README.md:{start}: unknown readme-test tag {t.group(1)!r}; use one of {TAGS}")
                tag = t.group(1)
            ordinal[section] = ordinal.get(section, 0) + 1
            out.append(Block(m.group(1), "\n".join(body) + "\n", tag, f"{section}-{ordinal[section]}", start + 1))
        i += 1
    return out


def shell_commands(block: Block) -> list[str]:
    """The commands of a bash block: continuations joined, trailing comments and spaces dropped."""
    cmds = []
    for line in block.code.replace("\\\n", " ").splitlines():
        cmd = re.sub(r"\s+#.*$", "", line).strip()
        if cmd and not cmd.startswith("#"):
            cmds.append(re.sub(r"\s+", " ", cmd))
    return cmds


# -- python blocks --------------------------------------------------------------------------
PY_BLOCKS = [b for b in blocks() if b.lang == "python"]


def _venv_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEA_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run_script(code: str, folder: Path, env: dict[str, str] | None = None, timeout: float = 300):
    script = folder / "example.py"
    script.write_text(code)
    return subprocess.run([sys.executable, str(script)], cwd=folder, env=env or _venv_env(),
                          capture_output=True, text=True, timeout=timeout)


def _check(proc: subprocess.CompletedProcess, block: Block) -> None:
    where = f"README.md:{block.line} ({block.id})"
    assert proc.returncode == 0, f"{where} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert proc.stderr == "", f"{where} wrote to stderr:\n{proc.stderr[-4000:]}"


def _guarded(code: str) -> str:
    return 'if __name__ == "__main__":\n' + textwrap.indent(code, "    ")


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in PY_BLOCKS if b.tag is None])
def test_python_block_runs_as_written(block, tmp_path):
    # As a user saves it: a top-level script, no main guard (the CPU pool never imports it).
    _check(_run_script(block.code, tmp_path), block)


def test_readme_prints_what_its_comments_promise(tmp_path):
    # The comments of the EncryptedVector block say what it prints; hold them to it.
    (b,) = [b for b in PY_BLOCKS if b.id == "the-encoded-layer-encryptedvector-1"]
    proc = _run_script(_guarded(b.code), tmp_path)
    _check(proc, b)
    *_, last = proc.stdout.strip().splitlines()
    assert last == "9.375", proc.stdout  # y = sum(1.5 x + [1, 2, 3]), a scalar
    raw = [b for b in PY_BLOCKS if b.id == "the-raw-batch-api-1"]
    assert raw and "all results match" in _run_script(_guarded(raw[0].code), tmp_path).stdout


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in PY_BLOCKS if b.tag == "service"])
def test_python_block_runs_against_a_service(block, tmp_path):
    pytest.importorskip("grpc")
    from accel.bench.service_demo import running_server, wait_healthy

    assert "box1:50051" in block.code, "a service block names its service box1:50051"
    with running_server("--backend", "cpu", env={"HEA_TOKENS": "readme=..."}) as (_, port, _m):
        wait_healthy(f"127.0.0.1:{port}")
        code = block.code.replace("box1:50051", f"127.0.0.1:{port}")
        proc = _run_script(code, tmp_path)
    _check(proc, block)


def test_every_python_block_is_run_somewhere():
    assert PY_BLOCKS, "no python blocks found: the parser broke"
    for b in PY_BLOCKS:
        assert b.tag in (None, "service", "fate", "listing"), b
    # listings are excerpts by choice; none is needed today, so a new one is a decision to review
    assert [b.id for b in PY_BLOCKS if b.tag == "listing"] == []


# -- shell commands -------------------------------------------------------------------------
RUN = "run"
#: Every README shell command (a regex over the normalised command) and how it is checked:
#: RUN (executed as written by a test in this file, from the repository root with this venv
#: first on PATH), run as written by another named test, or why it is not run here and what
#: covers it instead.
COMMANDS: dict[str, str] = {
    r"\./scripts/demo\.sh": "sets up .venv and runs `he-accel service-demo`: test_cli.py runs that demo",
    r"\./scripts/test\.sh": "is this suite (CI runs it)",
    r"pip install -e '\.\[service\]'": "run as written by test_packaging.py, into a fresh venv",
    r"pip wheel --no-deps -w dist \.": "run as written by test_packaging.py",
    r"pip install 'dist/he_accel-0\.1\.0-py3-none-any\.whl\[service\]'": "run as written by test_packaging.py, "
                                                                         "into a fresh venv",
    r"he-accel serve --address 0\.0\.0\.0:50051 .*": "binds fixed ports; test_service_e2e.py starts "
                                                     "`he-accel serve` on free ones",
    r"he-accel health --address 127\.0\.0\.1:50051": "needs that server; test_service_e2e.py probes health",
    r"docker (build|run) .*": "no Docker engine here; test_deploy.py lints Dockerfile.cuda (hadolint)",
    r"python examples/fate2/train\.py .*": "needs FATE: tests/fate/test_fate2_training.py runs it",
    r"HEA_PHE_BACKEND=cpu pytest -p accel\.integrations\.phe_pytest --pyargs phe\.tests": RUN,
    r"\./scripts/test_fate\.sh": "scripts/test.sh runs it",
    r"python examples/hetero_lr\.py .*": "test_example_hetero_lr.py runs --check, remote and phe",
    r"\./scripts/bench\.sh": "a long benchmark run; test_bench_suite.py covers its parts",
    r"bash scripts/gpu_checks\.sh": "needs a GPU",
    r"python3 -m pip wheel --no-deps -w dist \.": "test_py38_compat.py builds the wheel so and installs it into a 3.8 venv",
    r"/path/to/fate/env/bin/pip install 'dist/he_accel-0\.1\.0-py3-none-any\.whl\[client\]'":
        "a FATE 1.x environment; test_py38_compat.py installs the wheel with [client] into a real 3.8 venv",
    r"he-accel bench .*": "needs a GPU and a service; test_cli.py runs `he-accel bench` on the CPU",
}


def _how(cmd: str) -> str | None:
    hits = [how for pattern, how in COMMANDS.items() if re.fullmatch(pattern, cmd)]
    assert len(hits) <= 1, f"{cmd!r} matches several COMMANDS patterns"
    return hits[0] if hits else None


SHELL = [(b, c) for b in blocks() if b.lang in ("bash", "sh", "shell", "console") for c in shell_commands(b)]


def test_every_shell_command_is_accounted_for():
    assert SHELL, "no shell commands found: the parser broke"
    missing = [f"README.md:{b.line}: {c}" for b, c in SHELL if _how(c) is None]
    assert not missing, "README shell commands that no test runs or explains (add them to COMMANDS):\n" + \
        "\n".join(missing)
    unused = [p for p in COMMANDS if not any(re.fullmatch(p, c) for _, c in SHELL)]
    assert not unused, f"COMMANDS lists commands the README no longer has: {unused}"


def test_the_phe_command_exits_0_as_written():
    (cmd,) = [c for _, c in SHELL if c.startswith("HEA_PHE_BACKEND=") and _how(c) == RUN]
    pytest.importorskip("click")  # phe's own tests import its CLI
    proc = subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=_venv_env(), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"\b234 passed\b", proc.stdout) and "he-accel cpu backend under phe" in proc.stdout


def test_parser_reads_tags_sections_and_continuations():
    text = textwrap.dedent("""\
        # Title
        ## A section
        <!-- readme-test: listing -->
        ```python
        x = 1
        ```
        ```bash
        run --this \\
            --that   # a comment
        # a comment line
        ```
        """)
    py, sh = blocks(text)
    assert (py.lang, py.tag, py.id, py.code) == ("python", "listing", "a-section-1", "x = 1\n")
    assert (sh.tag, sh.id) == (None, "a-section-2") and shell_commands(sh) == ["run --this --that"]
    with pytest.raises(ValueError, match="unknown readme-test tag"):
        blocks("<!-- readme-test: maybe -->\n```python\n```\n")
