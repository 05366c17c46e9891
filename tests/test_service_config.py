"""The server's settings are defined once (service/config.py): the ``serve`` flags, the ``HEA_*``
variables and the defaults all come from ServerConfig's fields."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from accel.cli import build_parser
from accel.service.config import ServerConfig, config_from_args, settings

README = Path(__file__).resolve().parents[1] / "README.md"


def parse(*argv: str):
    return build_parser().parse_args(["serve", *argv])


def test_without_flags_or_variables_every_field_has_the_library_default():
    got = config_from_args(parse(), env={"XDG_DATA_HOME": "/data"})
    want = ServerConfig(key_store="sqlite:/data/he-accel/keys.db")   # the command keeps keys on disk
    assert got == want


def samples(f):
    """Two (text, value) pairs for a setting: one for its variable, one for its flag."""
    if f.name == "devices":
        return ("1,3", [1, 3]), ("2", [2])
    if f.metadata["choices"]:
        return [(c, c) for c in f.metadata["choices"][:2]]
    return {int: (("7", 7), ("9", 9)), float: (("2.5", 2.5), ("4.5", 4.5))}.get(
        f.metadata["parse"], (("x:1", "x:1"), ("y:2", "y:2")))


@pytest.mark.parametrize("f", [f for f in settings() if f.name != "tokens"], ids=lambda f: f.name)
def test_each_setting_comes_from_its_variable_and_its_flag_wins(f):
    """(tokens come from a file: test_service_e2e and test_service_abuse serve with real ones)"""
    (env_text, env_value), (flag_text, flag_value) = samples(f)
    env = {f.metadata["env"]: env_text}
    assert getattr(config_from_args(parse(), env=env), f.name) == env_value
    flag = "--" + f.metadata["flag"].replace("_", "-")
    assert getattr(config_from_args(parse(flag, flag_text), env=env), f.name) == flag_value


def test_a_negative_metrics_port_means_no_endpoint():
    assert config_from_args(parse("--metrics-port", "-1"), env={}).metrics_port is None
    assert config_from_args(parse(), env={"HEA_METRICS_PORT": "0"}).metrics_port == 0


def test_the_readme_table_lists_every_flag_with_its_variable():
    rows = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| `--")]
    documented = {}
    for row in rows:
        cells = row.split("|")
        flags = re.findall(r"`--([a-z-]+)`", cells[1])
        envs = re.findall(r"`(HEA_[A-Z_]+)`", cells[2])
        for i, flag in enumerate(flags):
            documented[flag] = envs[min(i, len(envs) - 1)]
    for f in settings():
        flag = f.metadata["flag"].replace("_", "-")
        assert documented.get(flag) == f.metadata["env"], f"README: --{flag} should name {f.metadata['env']}"


def test_fields_without_a_flag_are_library_only():
    exposed = {f.name for f in settings()}
    assert {f.name for f in dataclasses.fields(ServerConfig)} - exposed == {"stream_window"}


def test_a_batcher_built_directly_has_the_servers_defaults():
    """The batching defaults live once (service/defaults.py): the batcher and the config agree."""
    import inspect

    from accel.service.batcher import DynamicBatcher

    params = inspect.signature(DynamicBatcher).parameters
    c = ServerConfig()
    assert params["max_batch"].default == c.max_batch
    assert params["max_delay"].default == c.max_delay_ms / 1000
    assert params["preferred_batch"].default == c.preferred_batch
    assert params["max_queue_elements"].default == c.max_queue_elements


def test_every_backend_flag_offers_the_local_backends():
    from accel.backends import LOCAL_BACKENDS
    from accel.bench.service_bench import main as bench_main

    parser = build_parser()
    for command in ("demo", "service-demo", "serve"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--backend", "remote"])
        for name in LOCAL_BACKENDS:
            assert parser.parse_args([command, "--backend", name]).backend == name
    assert [f for f in dataclasses.fields(ServerConfig) if f.name == "backend"][0].metadata["choices"] == \
        list(LOCAL_BACKENDS)
    with pytest.raises(SystemExit):
        bench_main(["--backend", "remote"])
