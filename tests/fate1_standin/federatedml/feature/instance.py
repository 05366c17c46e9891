"""FATE 1.x's data row, as documented: a table of ``Instance`` is what every component reads
(``features`` is a numeric ndarray or a ``SparseVector``)."""


class Instance:
    def __init__(self, inst_id=None, weight=1.0, features=None, label=None):
        self.inst_id = inst_id
        self.weight = weight
        self.features = features
        self.label = label
