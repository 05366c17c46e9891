"""CUDA C++ sources of he-accel's GPU kernels, shipped as package data (``accel.kernels``).

Preconditions are stated at the top of each file; the GPU backend compiles them at run time
through CuPy. ``source_dir()`` locates them in an installed tree.
"""
from pathlib import Path


def source_dir() -> Path:
    return Path(__file__).resolve().parent
