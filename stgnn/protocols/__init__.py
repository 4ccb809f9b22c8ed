"""Named evaluation protocols of published tables.

:mod:`stgnn.protocols.tgcn` holds the T-GCN protocol (max-scaling, 80/20 split, the authors'
window loop and metrics); :mod:`stgnn.protocols.baselines` the statistical baselines of its
table; :mod:`stgnn.protocols.runner` trains and scores any registered model under it.
"""
