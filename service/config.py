"""The server's settings, defined once: :class:`ServerConfig`'s fields carry their defaults and,
for those ``he-accel serve`` exposes, the flag, the ``HEA_*`` variable and the help line. The
command's arguments (:func:`add_serve_arguments`) and their merge over the environment
(:func:`config_from_args`) are built from these fields.

No gRPC here: the CLI builds its parser without the service extra installed.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from accel.backends import LOCAL_BACKENDS

from . import defaults


def _setting(default: Any = None, *, flag: str | None = None, env: str | None = None, parse: Callable[[str], Any] = str,
             help: str = "", shown: str | None = None, choices: list[str] | None = None,  # noqa: A002
             factory: Callable[[], Any] | None = None, finish: Callable[[Any, Mapping[str, str]], Any] | None = None,
             cli_default: Callable[[Mapping[str, str]], Any] | None = None) -> Any:
    """A config field. ``flag``: the ``serve`` option (``--max-queue`` for "max_queue"), also the
    attribute read from parsed arguments; ``env``: its variable; ``parse``: the text's type;
    ``shown``: the default as the help prints it, where the value alone would not say it;
    ``finish(value, env)``: turns what the flag or variable gave into the field's value;
    ``cli_default(env)``: the command's default where it differs from the library's."""
    meta = {"flag": flag, "env": env, "parse": parse, "help": help, "shown": shown, "choices": choices,
            "finish": finish, "cli_default": cli_default}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _devices(value: Any, env: Mapping[str, str]) -> list[int] | None:
    if isinstance(value, str):
        return [int(d) for d in value.split(",") if d.strip()]
    return value


def _port_or_none(value: int | None, env: Mapping[str, str]) -> int | None:
    return None if value is not None and value < 0 else value


def _tokens(path: str | None, env: Mapping[str, str]) -> dict[str, str]:
    from .auth import load_tokens  # noqa: PLC0415 - auth needs grpc; building the parser must not

    return load_tokens(path, env)


def default_key_store(env: Mapping[str, str]) -> str:
    """``he-accel serve`` keeps keys across restarts by default: SQLite under the user's data dir."""
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return "sqlite:" + os.path.join(base, "he-accel", "keys.db")


@dataclass
class ServerConfig:
    address: str = _setting("127.0.0.1:50051", flag="address", env="HEA_ADDRESS",
                            help="HOST:PORT to listen on")
    metrics_port: int | None = _setting(None, flag="metrics_port", env="HEA_METRICS_PORT", parse=int,
                                        finish=_port_or_none, shown="none",
                                        help="Prometheus endpoint port, -1 for none")  # None: no endpoint (still collected)
    metrics_address: str | None = _setting(None, flag="metrics_address", env="HEA_METRICS_ADDRESS",
                                           shown="the --address host", help="metrics endpoint host")
    backend: str = _setting("auto", flag="backend", env="HEA_BACKEND", choices=list(LOCAL_BACKENDS),
                            help="compute backend")
    devices: list[int] | None = _setting(None, flag="devices", env="HEA_DEVICES", finish=_devices, shown="all",
                                         help="GPU ordinals, comma-separated")
    workers: int | None = _setting(None, flag="workers", env="HEA_WORKERS", parse=int,
                                   shown="one per GPU, else 1", help="batch workers")
    max_batch: int = _setting(defaults.MAX_BATCH, flag="max_batch", env="HEA_MAX_BATCH", parse=int,
                              help="elements per coalesced call")
    max_delay_ms: float = _setting(defaults.MAX_DELAY_MS, flag="max_delay_ms", env="HEA_MAX_DELAY_MS", parse=float,
                                   help="how long a batch waits for company")
    preferred_batch: int = _setting(defaults.PREFERRED_BATCH, flag="preferred_batch", env="HEA_PREFERRED_BATCH", parse=int,
                                    help="a batch this large skips the wait")
    max_queue_elements: int = _setting(defaults.MAX_QUEUE_ELEMENTS, flag="max_queue", env="HEA_MAX_QUEUE", parse=int,
                                       help="queued elements before RESOURCE_EXHAUSTED")
    max_request_elements: int = _setting(1 << 20, flag="max_request", env="HEA_MAX_REQUEST", parse=int,
                                         help="elements per request (larger ones must stream in chunks)")
    max_identity_queue_elements: int | None = _setting(None, flag="max_identity_queue", env="HEA_MAX_IDENTITY_QUEUE",
                                                       parse=int, shown="max-queue/4",
                                                       help="queued elements per identity")
    max_message_bytes: int = _setting(64 << 20, flag="max_message_bytes", env="HEA_MAX_MESSAGE_BYTES", parse=int,
                                      help="gRPC message size limit, requests and replies")
    handler_threads: int = _setting(256, flag="handler_threads", env="HEA_HANDLER_THREADS", parse=int,
                                    help="RPC threads, above --max-calls")
    stream_window: int = _setting(16, help="chunks of one stream in flight at once")
    max_calls: int = _setting(128, flag="max_calls", env="HEA_MAX_CALLS", parse=int,
                              help="calls in progress, in total (must stay below handler_threads)")
    max_calls_per_identity: int = _setting(64, flag="max_calls_per_identity", env="HEA_MAX_CALLS_PER_IDENTITY",
                                           parse=int, help="calls in progress per identity")
    idle_timeout_s: float = _setting(30.0, flag="idle_timeout", env="HEA_IDLE_TIMEOUT", parse=float,
                                     help="s a call may send nothing before it is ended")
    health_threads: int = _setting(4, flag="health_threads", env="HEA_HEALTH_THREADS", parse=int,
                                   help="threads reserved for health checks")
    keepalive_time_s: float = _setting(60.0, flag="keepalive_time", env="HEA_KEEPALIVE_TIME", parse=float,
                                       help="s between server pings")
    keepalive_timeout_s: float = _setting(20.0, flag="keepalive_timeout", env="HEA_KEEPALIVE_TIMEOUT", parse=float,
                                          help="s to answer a ping before the connection is dropped")
    min_client_ping_interval_s: float = _setting(10.0, flag="min_ping_interval", env="HEA_MIN_PING_INTERVAL",
                                                 parse=float, help="clients pinging more often are dropped")
    max_connection_idle_s: float = _setting(600.0, flag="max_connection_idle", env="HEA_MAX_CONNECTION_IDLE",
                                            parse=float, help="s before a connection with no call closes")
    max_streams_per_connection: int = _setting(64, flag="max_streams_per_connection",
                                               env="HEA_MAX_STREAMS_PER_CONNECTION", parse=int,
                                               help="HTTP/2 streams per connection")
    key_store: str = _setting("memory", flag="key_store", env="HEA_KEY_STORE", cli_default=default_key_store,
                              shown="sqlite:~/.local/share/he-accel/keys.db", help="'memory' or sqlite:PATH")
    kek_file: str | None = _setting(None, flag="kek_file", env="HEA_KEK_FILE", shown="KEY_STORE.kek, created 0600",
                                    help="key-encryption key for stored private keys (or HEA_KEK inline)")
    max_keys_per_identity: int = _setting(1_000, flag="max_keys_per_identity", env="HEA_MAX_KEYS_PER_IDENTITY",
                                          parse=int, help="keys per identity")
    tls_cert: str | None = _setting(None, flag="tls_cert", env="HEA_TLS_CERT", help="PEM certificate")
    tls_key: str | None = _setting(None, flag="tls_key", env="HEA_TLS_KEY", help="PEM private key")
    client_ca: str | None = _setting(None, flag="client_ca", env="HEA_CLIENT_CA",
                                     help="PEM CA for client certificates: enables mTLS")
    tokens: dict[str, str] = _setting(factory=dict, flag="tokens_file", env="HEA_TOKENS_FILE", finish=_tokens,
                                      help="identity=token lines (HEA_TOKENS inline)")  # token -> identity
    min_key_bits: int = _setting(1024, flag="min_key_bits", env="HEA_MIN_KEY_BITS", parse=int,
                                 help="smallest key accepted")
    max_keys: int = _setting(10_000, flag="max_keys", env="HEA_MAX_KEYS", parse=int, help="keys in the registry")
    grace_seconds: float = _setting(30.0, flag="grace", env="HEA_GRACE", parse=float,
                                    help="drain time after SIGTERM, s")


def settings() -> list[dataclasses.Field]:
    """The fields ``he-accel serve`` exposes, in declaration order."""
    return [f for f in dataclasses.fields(ServerConfig) if f.metadata.get("flag")]


def _shown_default(f: dataclasses.Field) -> str:
    if f.metadata["shown"] is not None:
        return f.metadata["shown"]
    return "none" if f.default is None else f"{f.default:g}" if isinstance(f.default, float) else str(f.default)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``he-accel serve``'s options, one per exposed field. Every default is None: a flag that was
    not given leaves the field to its variable, then to its default (:func:`config_from_args`)."""
    for f in settings():
        m = f.metadata
        kw: dict[str, Any] = {"help": f"{m['help']} ({m['env']}, default {_shown_default(f)})"}
        if m["parse"] is not str:
            kw["type"] = m["parse"]
        if m["choices"]:
            kw["choices"] = m["choices"]
        parser.add_argument("--" + m["flag"].replace("_", "-"), **kw)


def config_from_args(args: Any, env: Mapping[str, str] | None = None) -> ServerConfig:
    """Merge ``he-accel serve`` flags over ``HEA_*`` environment variables over the defaults."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    for f in settings():
        m = f.metadata
        value = getattr(args, m["flag"], None)
        if value is None and env.get(m["env"]):
            value = m["parse"](env[m["env"]])
        if m["finish"] is not None:
            value = m["finish"](value, env)
        if value is None:
            value = m["cli_default"](env) if m["cli_default"] is not None else _default_of(f)
        values[f.name] = value
    return ServerConfig(**values)


def _default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default
