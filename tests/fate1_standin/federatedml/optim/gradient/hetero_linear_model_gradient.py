"""HeteroLR's host gradient as FATE 1.x computes it, per row: sum_i x_i * [d_i], then the
mean, plus the intercept term when fitted."""
import numpy as np


class HeteroGradientBase:
    def compute_gradient(self, data_instances, fore_gradient, fit_intercept):
        """data_instances: table of (key, feature ndarray); fore_gradient: table of (key,
        PaillierEncryptedNumber). Returns an object ndarray of encrypted gradients."""
        feat_join_grad = data_instances.join(fore_gradient, lambda x, d: (x, d))

        def per_row(xd):
            x, d = xd
            g = np.array([v * d for v in x], dtype=object)
            return np.append(g, d) if fit_intercept else g

        gradients = feat_join_grad.mapValues(per_row).reduce(lambda a, b: a + b)
        return gradients / data_instances.count()
