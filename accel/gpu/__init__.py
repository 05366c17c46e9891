"""GPU plumbing for :class:`accel.backends.gpu.GpuBackend`.

* :mod:`.limbs`: key and modulus records (Montgomery constants) in the kernels' layout;
* :mod:`.errors`: decoding of the kernels' error word;
* :mod:`.launch`: one typed launcher per kernel (the only code that launches one);
* :mod:`.build`: the kernel name table and the NVRTC builds;
* :mod:`.runtime`: the kernel runtimes: CuPy on a CUDA device, or the same kernel sources
  compiled with g++ (:mod:`.emulator`), which is how CI tests the backend without a GPU.
"""
