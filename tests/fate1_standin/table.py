"""A partitioned key-value table standing in for FATE 1.x's computing tables. Functions run
on pickled copies of the data and functions, as FATE's engines run them (cloudpickle for
functions, so closures ship as they do there).

``applyPartitions`` gives one value per non-empty partition (under the partition's last key),
``reduce`` folds each partition and then the partitions' results, ``first`` raises on an empty
table: the documented behaviour of FATE's standalone tables."""
import pickle
from functools import reduce as _reduce


class Table:
    def __init__(self, kvs, partitions=3):
        kvs = list(kvs)
        self.partitions = [kvs[i::partitions] for i in range(partitions)]

    @classmethod
    def _of(cls, parts):
        t = cls([], 1)
        t.partitions = parts
        return t

    @staticmethod
    def _ship(x):
        return pickle.loads(pickle.dumps(x))

    @staticmethod
    def _ship_function(f):
        import cloudpickle
        return pickle.loads(cloudpickle.dumps(f))

    def mapValues(self, func):
        func = self._ship_function(func)
        return self._of([[(k, func(v)) for k, v in self._ship(p)] for p in self.partitions])

    def mapPartitions(self, func, use_previous_behavior=True, preserves_partitioning=False):
        if use_previous_behavior:
            raise NotImplementedError("the stand-in implements use_previous_behavior=False only")
        func = self._ship_function(func)
        return self._of([list(func(iter(self._ship(p)))) for p in self.partitions])

    def applyPartitions(self, func):
        func = self._ship_function(func)
        out = []
        for p in self.partitions:
            v = func(iter(self._ship(p)))
            out.append([(p[-1][0], self._ship(v))] if p else [])
        return self._of(out)

    def join(self, other, func):
        right = dict(other.collect())
        return self._of([[(k, func(v, right[k])) for k, v in p if k in right] for p in self.partitions])

    def reduce(self, func):
        per_partition = [_reduce(func, [v for _, v in p]) for p in self.partitions if p]
        per_partition = [v for v in per_partition if v is not None]
        return _reduce(func, per_partition) if per_partition else None

    def first(self):
        kvs = self.collect()
        if not kvs:
            raise RuntimeError("table is empty")
        return kvs[0]

    def collect(self):
        return sorted((kv for p in self.partitions for kv in p), key=lambda kv: kv[0])

    def count(self):
        return sum(len(p) for p in self.partitions)
