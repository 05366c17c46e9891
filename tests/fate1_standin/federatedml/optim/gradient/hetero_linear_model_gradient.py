"""HeteroLR's gradient as FATE 1.x computes it (documented behaviour and the call shapes seen
in FATE v1.11.4's HeteroLR): per partition, sum over rows of ``feature * d``, then the sum over
partitions, the intercept term and the mean.

Call shapes: ``data_instances`` is a table of ``Instance`` (dense ndarray or ``SparseVector``
features); ``fore_gradient`` holds PaillierEncryptedNumber (the synchronous path) or plain
floats (the asynchronous path's own half_d / forwards); guest and host pass
``need_average=False``; with ``set_fixed_float_precision`` the features are multiplied as ints
and the partition sums divided back.
"""
import functools

import numpy as np

from federatedml.util.fixpoint_solver import FixedPointEncoder


def _dense(features):
    if isinstance(features, np.ndarray):
        return features
    x = np.zeros(features.get_shape())
    for idx, v in features.get_all_data():
        x[idx] = v
    return x


def _partition_gradient(rows, fixed_point_encoder):
    total = None
    for _, (features, d) in rows:
        x = _dense(features)
        g = (fixed_point_encoder.encode(x) if fixed_point_encoder else x) * d
        total = g if total is None else total + g
    if total is not None and fixed_point_encoder:
        total = fixed_point_encoder.decode(total)
    return total


class HeteroGradientBase:
    def __init__(self):
        self.use_async = False
        self.fixed_point_encoder = None

    def set_use_async(self):
        self.use_async = True

    def set_fixed_float_precision(self, floating_point_precision):
        if floating_point_precision is not None:
            self.fixed_point_encoder = FixedPointEncoder(2**floating_point_precision)

    def compute_gradient(self, data_instances, fore_gradient, fit_intercept, need_average=True):
        joined = data_instances.join(fore_gradient, lambda inst, d: (inst.features, d))
        f = functools.partial(_partition_gradient, fixed_point_encoder=self.fixed_point_encoder)
        gradient = joined.applyPartitions(f).reduce(lambda a, b: a + b)
        if fit_intercept:
            gradient = np.append(gradient, fore_gradient.reduce(lambda a, b: a + b))
        return gradient / data_instances.count() if need_average else gradient


class Host(HeteroGradientBase):
    """The host's two paths: synchronous (one encrypted fore_gradient from the guest) and
    asynchronous (its own plaintext forwards plus the guest's encrypted half_d)."""

    def unilateral_gradient(self, data_instances, forwards, guest_fore_gradient):
        if not self.use_async:
            return self.compute_gradient(data_instances, guest_fore_gradient, False, need_average=False)
        half_g = self.compute_gradient(data_instances, forwards, False)
        return half_g + self.compute_gradient(data_instances, guest_fore_gradient, False)
