"""Training: the epoch loop (``loop``), the run identity (``spec``), the run folder
(``rundir``), optimisers (``optim``), what a run leaves to look at (``artifacts``), the quality
curve (``quality``), sampling and restoring nets, the evaluator's files, params checked against
the registry. Imports nothing: the stage edge is pipeline/stages/train.py.
"""
