from .encrypt import PaillierEncrypt  # noqa: F401
