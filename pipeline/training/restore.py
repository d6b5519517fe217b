"""A finished run's nets, rebuilt from its checkpoint: for the sample stage, the noise
estimate and the tracking of a finished run (which gets :func:`load_generator` handed in by
:func:`pipeline.stages.train.train_variant`, infra being below this layer).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.core.variants._known import known
from pipeline.core.variants.base import Variant
from pipeline.infra import checkpoint as ckpt
from pipeline.infra.errors import PipelineError
from pipeline.training.loop import build_nets
from pipeline.training.spec import RunSpec


def load_nets(path: Path, device: torch.device | str) -> tuple[Variant, dict[str, nn.Module], dict]:
    """The variant, every net of a finished checkpoint (eval mode) and the run's config."""
    state = ckpt.load(path, map_location=device)
    if not state["complete"]:
        raise PipelineError(
            f"{path}: training is unfinished (epoch {state['epoch']}); "
            f"finish it with `pipeline train {state['variant']}` before sampling"
        )
    cfg = ckpt.config_of(state)
    spec = RunSpec.from_dict(cfg)
    variant = known(spec.variant)
    nets = build_nets(variant, spec, torch.device(device))
    for name, net in nets.items():
        net.load_state_dict(state["nets"][name])
        net.eval()
    return variant, nets, cfg


def load_generator(path: Path, device: torch.device | str) -> tuple[nn.Module, dict]:
    """The sampler net of a checkpoint, in eval mode, and the run's resolved config."""
    variant, nets, cfg = load_nets(path, device)
    return nets[variant.algorithm.sampler], cfg
