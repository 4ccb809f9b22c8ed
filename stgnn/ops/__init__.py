"""Operations on trained models: anomaly alerts and ensembles.

These sit on top of :mod:`stgnn.training` (they load checkpoints and evaluate like the trainer
does); nothing under :mod:`stgnn.data`, :mod:`stgnn.models` or :mod:`stgnn.training` imports them.
"""
