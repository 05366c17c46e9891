"""Caller identity: a bearer token or the client certificate's subject (mTLS).

Identities own private keys (see :mod:`accel.service.keys`). With tokens configured, every call
needs ``authorization: Bearer <token>``; with a client CA configured, gRPC itself refuses
peers without a certificate signed by it and the identity is ``x509:<common name>``. With
neither, every caller is ``anonymous`` (the server warns at start). Tokens are compared in
constant time and never logged.
"""
from __future__ import annotations

import hmac
import os
from typing import Any, Mapping

from .errors import InvalidArgument, Unauthenticated

ANONYMOUS = "anonymous"


def parse_tokens(spec: str) -> dict[str, str]:
    """``identity=token[,identity=token...]`` (also newline-separated) -> {token: identity}."""
    out: dict[str, str] = {}
    for part in spec.replace("\n", ",").split(","):
        part = part.strip()
        if not part or part.startswith("#"):
            continue
        ident, sep, token = part.partition("=")
        if not sep or not ident.strip() or not token.strip():
            raise InvalidArgument("tokens must be given as identity=token pairs")
        out[token.strip()] = ident.strip()
    return out


def load_tokens(path: str | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tokens from a file (``identity=token`` per line) and/or ``HEA_TOKENS``."""
    env = os.environ if env is None else env
    tokens: dict[str, str] = {}
    if path:
        with open(path, encoding="utf-8") as f:
            tokens.update(parse_tokens(f.read()))
    if env.get("HEA_TOKENS"):
        tokens.update(parse_tokens(env["HEA_TOKENS"]))
    return tokens


class Authenticator:
    def __init__(self, tokens: Mapping[str, str] | None = None, *, mtls: bool = False):
        self._tokens = [(t.encode(), ident) for t, ident in (tokens or {}).items()]
        self.mtls = mtls

    @property
    def open(self) -> bool:
        """True when anyone may call (no tokens, no client certificates)."""
        return not self._tokens and not self.mtls

    def _match(self, token: bytes) -> str | None:
        found = None
        for t, ident in self._tokens:  # no early exit: same work whichever token matches
            if hmac.compare_digest(t, token):
                found = ident
        return found

    def identify(self, context: Any) -> str:
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                scheme, _, rest = str(value).partition(" ")
                if scheme.lower() != "bearer" or not rest:
                    raise Unauthenticated("the authorization header must be 'Bearer <token>'")
                token = rest.strip().encode()
        if token is not None and self._tokens:
            ident = self._match(token)
            if ident is None:
                raise Unauthenticated("unknown bearer token")
            return ident
        if self._tokens and not self.mtls:
            raise Unauthenticated("this service needs a bearer token")
        if self.mtls:
            names = (context.auth_context() or {}).get("x509_common_name") or []
            if names:
                cn = names[0]
                return "x509:" + (cn.decode() if isinstance(cn, bytes) else str(cn))
            if self._tokens:
                raise Unauthenticated("this service needs a bearer token or a client certificate")
            raise Unauthenticated("the client certificate has no common name")
        return ANONYMOUS
