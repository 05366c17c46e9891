"""A client's gRPC channel settings: one target or a round-robin list of appliances, message
limits, and TLS credentials (files or bytes)."""
from __future__ import annotations

import ipaddress
import socket
from typing import Sequence

import grpc


def _resolve_targets(targets: str | Sequence[str]) -> tuple[str, str | None]:
    """A gRPC target for one address or a round-robin list; also the first host name (for TLS)."""
    if isinstance(targets, str):  # "a:1,b:2" is a list; a gRPC URI ("ipv4:...", "dns:...") stays whole
        uri = targets.startswith(("ipv4:", "ipv6:", "dns:", "unix:")) or "://" in targets
        targets = [targets] if uri else [t.strip() for t in targets.split(",") if t.strip()]
    targets = list(targets)
    if not targets:
        raise ValueError("no target given")
    if len(targets) == 1:
        host = targets[0].rsplit(":", 1)[0].strip("[]")
        return targets[0], host
    v4, v6, first_host = [], [], None
    for t in targets:
        host, _, port = t.rpartition(":")
        host = host.strip("[]")
        first_host = first_host or host
        if not port.isdigit():
            raise ValueError(f"target {t!r} must be host:port")
        try:
            addrs = [str(ipaddress.ip_address(host))]
        except ValueError:
            addrs = sorted({ai[4][0] for ai in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)})
        for a in addrs:
            (v6 if ":" in a else v4).append(f"[{a}]:{port}" if ":" in a else f"{a}:{port}")
    if v4 and v6:
        raise ValueError("mixing IPv4 and IPv6 appliances in one client is not supported")
    return ("ipv4:" + ",".join(v4)) if v4 else ("ipv6:" + ",".join(v6)), first_host


def channel_args(targets: str | Sequence[str], *, root_certificates: bytes | str | None,
                  client_cert: bytes | str | None, client_key: bytes | str | None,
                  server_name: str | None, max_message_bytes: int, tls: bool | None):
    target, host = _resolve_targets(targets)
    opts = [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.service_config", '{"loadBalancingConfig": [{"round_robin": {}}]}'),
            ("grpc.enable_retries", 0)]

    def read(x: bytes | str | None) -> bytes | None:
        if x is None or isinstance(x, bytes):
            return x
        with open(x, "rb") as f:
            return f.read()

    creds = None
    if tls or root_certificates is not None or client_cert is not None:
        creds = grpc.ssl_channel_credentials(read(root_certificates), read(client_key), read(client_cert))
        if server_name or (target.startswith(("ipv4:", "ipv6:")) and host):
            opts.append(("grpc.ssl_target_name_override", server_name or host))
    return target, creds, opts
