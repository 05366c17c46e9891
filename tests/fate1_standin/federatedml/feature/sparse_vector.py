"""FATE 1.x's sparse feature row, as documented: the non-zero entries by index and the dense
length (``get_shape``); ``get_all_data`` yields (index, value) pairs."""


class SparseVector:
    def __init__(self, indices=None, data=None, shape=0):
        self.sparse_vec = dict(zip(indices or [], data if data is not None else []))
        self.shape = shape

    def get_shape(self):
        return self.shape

    def get_all_data(self):
        yield from self.sparse_vec.items()
