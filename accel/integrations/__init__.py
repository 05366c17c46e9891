"""Drop-in integrations with the federated-learning stacks that use Paillier.

* :mod:`accel.integrations.phe`: python-paillier (``phe``) keys and ciphertexts in and out,
  batch helpers, and :func:`accel.integrations.phe.install` routing phe's own arithmetic
  through a backend (``pytest -p accel.integrations.phe_pytest --pyargs phe.tests``).
* :mod:`accel.integrations.fate2`: the ``fate.arch.protocol.phe.paillier`` contract of
  FATE 2.x (``keygen``, ``SK``, ``PK``, ``Coder``, ``evaluator``) on our backends.
* :mod:`accel.integrations.fate1`: batched ``PaillierEncrypt`` entry points for FATE 1.x
  (``federatedml``), still returning FATE's own ``PaillierEncryptedNumber`` objects.

None of these import their framework at module import time beyond what they patch; each has
an ``install()`` that is the one line a pipeline changes.
"""
