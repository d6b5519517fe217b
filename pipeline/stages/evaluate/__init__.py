"""Scores for generated MNIST samples, all through torch-fidelity's public API.

Two evaluators, each selectable in ``evaluate.extractors``:

* ``classifier``: our MNIST CNN (pipeline/core/classifier.py) registered as the torch-fidelity
  feature extractor ``mnist-classifier``: FID/precision/recall on its 128-d penultimate
  features, IS on its logits (torch-fidelity softmaxes them: at most 10 for MNIST), plus class
  coverage from its predictions and, for conditional samples, label accuracy; and from the
  same features (``features``): KID on them centred and scaled by the real set's statistics,
  FID-infinity, density and coverage. Fast on a CPU.
* ``inception``: torch-fidelity's ``inception-v3-compat`` (FID, IS, KID) and ``vgg16``
  (precision/recall, torch-fidelity's default for PRC). Needs their weights: a local file from
  params, torch's hub cache, or a download; when none works the stage fails up front with one
  line saying how to proceed. ~6 img/s on a 2-core CPU: a GPU job.

Reference set: the first ``evaluate.n_real`` MNIST test images. Its features are extracted
once per extractor and kept under ``evaluate.cache_dir`` as plain tensors (read with
``weights_only=True``; torch-fidelity's own cache, which unpickles anything, is off), named after
the extractor, ``n_real``, a hash of the weights and where they ran (device type and precision,
``evaluate.tf32``), so neither a retrained classifier nor a GPU run reuses stale features. Images go to torch-fidelity as uint8 [3, 28, 28] (grey tiled to 3 channels);
our extractor takes one channel back.

Modules: ``stage`` (the two stage commands), ``fidelity`` (torch-fidelity plumbing, the
classifier extractor), ``scoring`` (:func:`score` -> :class:`pipeline.infra.metrics.MetricsDoc`,
the document's schema), ``noise``; and below this layer pipeline.core.features (the scores we
compute on the classifier's features), pipeline.infra.weights (the Inception path's weights),
pipeline.training.evaluator (the classifier's file and the reference set's features, which the
quality curve shares). This ``__init__`` imports nothing. The samples are read by
:func:`pipeline.stages.sample.load_samples`, beside the code that writes them.
"""
