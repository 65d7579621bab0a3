"""The compute side of lintf: whatever changes a stored number.

Data, the model and its variants, the optimizers, the batched training engine, the derivatives
written by hand, the measurements, the settings and scales, the experiments, the reductions
they store and the results store. Its modules import nothing from :mod:`lintf.book` (a test
holds this, imports inside functions included), and a stored result's key holds the source of
this folder only (:func:`lintf.compute.store.compute_hash`): an edit to a caption, a verdict's
wording or a plot leaves every stored result valid.
"""
