"""Loaded by every Python process of scripts/test_fate1.sh (PYTHONPATH): FATE 1.x's standalone
engine forks workers, so the plugin has to be active in each process, as a deployment that
installs it at start-up would have it.

HEA_FATE1_PLUGIN=<backend> installs he-accel's FATE 1.x plugin; unset, FATE runs stock.
On Python >= 3.10 the ``collections`` ABC aliases FATE 1.x (written for 3.8) imports are put
back. Without torch installed (it is large, and only FATE's homo/NN code uses it), a stand-in
module holding the two classes ``federatedml.framework.homo.aggregator`` names in annotations
lets ``federatedml.ensemble`` import; nothing in these jobs calls torch. Nothing else of FATE
is touched."""
import collections
import collections.abc
import importlib.util
import os
import sys
import types

for _name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable", "Set"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

if importlib.util.find_spec("torch") is None:
    _torch = types.ModuleType("torch")
    _torch.__hea_stand_in__ = True
    _torch.nn = types.SimpleNamespace(Module=type("Module", (), {}))
    _torch.optim = types.SimpleNamespace(Optimizer=type("Optimizer", (), {}))
    sys.modules["torch"] = _torch

if os.environ.get("HEA_FATE1_PLUGIN"):
    from accel.integrations import fate1

    fate1.install(os.environ["HEA_FATE1_PLUGIN"], workers=1)

    if os.environ.get("HEA_FATE1_TRACE"):
        # evidence that the batched paths ran (in whichever process): one line per call
        import functools

        def _traced(name, fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                with open(os.environ["HEA_FATE1_TRACE"], "a") as f:
                    f.write(f"{name}\n")
                return fn(*args, **kwargs)
            return wrapper

        for _fn in ("batch_gradient", "encrypt_values", "decrypt_values", "raw_encrypt_values",
                    "raw_decrypt_values"):
            setattr(fate1, _fn, _traced(_fn, getattr(fate1, _fn)))
