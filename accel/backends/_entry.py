"""Entry point of the CPU backend's child processes: ``python -m accel.backends._entry worker|server``.

A module the package never imports, so ``-m`` runs it once (running ``_workers`` or ``_pool``
themselves with ``-m`` would execute a module the package has already imported).
"""
import sys

if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    if role == "worker":
        from accel.backends._workers import main
    elif role == "server":
        from accel.backends._pool import main
    else:
        raise SystemExit(f"unknown role {role!r}")
    sys.exit(main(args))
