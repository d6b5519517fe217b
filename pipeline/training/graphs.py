"""Training steps as CUDA graphs: one launch per step instead of a hundred small kernels.

A GAN step at batch 64 on MNIST is launch-bound on a GPU: the kernels are tiny and the time
goes to Python and the CUDA launch path. ``StepGraphs`` records a step function once per
kind of step (an algorithm's static ``kinds``: critic only, critic + generator, ...) and then replays it, with the batch copied
into a static input buffer first. The algorithm is untouched:

* the warm-up that CUDA graphs need (lazy optimiser state, cuDNN/cuBLAS workspaces) runs
  real steps, so everything those steps change (parameters, buffers, optimiser state, the
  noise generator) is put back in place afterwards: training starts from exactly the state
  it had;
* the noise generator is registered with each graph, so replay *i* draws the same numbers
  as eager call *i* would (CUDA graph-safe Philox offsets);
* optimisers are made ``capturable`` (their step counters live on the device): fused Adam
  computes exactly what it computes eagerly, capturable foreach RMSprop the same update;
* everything runs with the training device current, and capture uses a stream made on it.

Off CUDA there is nothing to capture: the same static-buffer step runs eagerly, after the
same warm-up and roll-back. That is how the CPU tests exercise this code path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from pipeline.infra.errors import PipelineError


class GraphCaptureError(PipelineError):
    """A CUDA graph capture failed. The process's CUDA state (noise generator offsets, the
    current stream, the caching allocator) is then not safe to keep training in: whoever
    catches this ends the process's CUDA work, it does not fall back to eager steps."""


# step(real, labels, kind): the whole update for one batch, reading and writing tensors only
StepFn = Callable[[torch.Tensor, torch.Tensor | None, str], None]


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Let ``optimizer.step()`` be captured: the flag on every group, step counters on the
    parameters' device (a checkpoint of an eager run holds them on the host)."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state and "step" in state and state["step"].device != p.device:
                state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


def _state_tensors(
    modules: Sequence[nn.Module],
    optimizers: Sequence[torch.optim.Optimizer],
    extra: Sequence[torch.Tensor] = (),
) -> list[torch.Tensor]:
    tensors: list[torch.Tensor] = list(extra)
    for m in modules:
        tensors += list(m.parameters()) + list(m.buffers())
    for opt in optimizers:
        for state in opt.state.values():
            tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return tensors


@contextlib.contextmanager
def rolled_back(
    modules: Sequence[nn.Module],
    optimizers: Sequence[torch.optim.Optimizer],
    generators: Sequence[torch.Generator],
    extra: Sequence[torch.Tensor] = (),
) -> Iterator[None]:
    """Run the block, then restore every parameter, buffer, optimiser state tensor, extra
    state tensor (an algorithm's, e.g. BEGAN's k_t) and generator state *in place* (same
    storage: graphs captured afterwards see the restored values). Optimiser state created
    inside the block is zeroed, which is how Adam and RMSprop initialise it (step 0, zero
    moments)."""
    before = {id(t): t.detach().clone() for t in _state_tensors(modules, optimizers, extra)}
    rng = [g.get_state() for g in generators]
    try:
        yield
    finally:
        with torch.no_grad():
            for t in _state_tensors(modules, optimizers, extra):
                saved = before.get(id(t))
                if saved is None:
                    t.zero_()
                else:
                    t.copy_(saved)
        for g, state in zip(generators, rng, strict=True):
            g.set_state(state)


class StepGraphs:
    """Replays a training step on static buffers; captured as CUDA graphs on CUDA."""

    def __init__(
        self,
        step: StepFn,
        real_like: torch.Tensor,
        labels_like: torch.Tensor | None,
        kinds: Sequence[str],
        modules: Sequence[nn.Module],
        optimizers: Sequence[torch.optim.Optimizer],
        noise: torch.Generator,
        state: Sequence[torch.Tensor] = (),
        warmup: int = 3,
    ) -> None:
        self.step = step
        # static input buffers: every replay reads the batch copied into them
        self.real = real_like.clone()
        self.labels = None if labels_like is None else labels_like.clone()
        self.capture = self.real.device.type == "cuda"
        self.graphs: dict[str, torch.cuda.CUDAGraph] = {}
        if self.capture:  # capturable optimisers exist on CUDA only
            for opt in optimizers:
                make_capturable(opt)
        with self._on_device():
            # Warm up every kind of step (real updates), then roll the whole state back.
            with rolled_back(modules, optimizers, [noise], state):
                if self.capture:
                    dev = self.real.device
                    side = torch.cuda.Stream(dev)
                    side.wait_stream(torch.cuda.current_stream(dev))
                    try:
                        with torch.cuda.stream(side):
                            self._warm(kinds, warmup)
                    finally:  # the roll-back must not race the side stream's kernels
                        torch.cuda.current_stream(dev).wait_stream(side)
                        torch.cuda.synchronize(dev)
                else:
                    self._warm(kinds, warmup)
            if self.capture:
                # A stream of the training device: torch's default capture stream is made
                # once, on whichever device captured first, so a second device would not use it.
                capture_stream = torch.cuda.Stream(self.real.device)
                for kind in kinds:
                    graph = torch.cuda.CUDAGraph()
                    graph.register_generator_state(noise)
                    with torch.cuda.graph(graph, stream=capture_stream):
                        self.step(self.real, self.labels, kind)
                    self.graphs[kind] = graph
                torch.cuda.synchronize(self.real.device)

    def _on_device(self) -> contextlib.AbstractContextManager[object]:
        """The training device as the current CUDA device (cuda:1 on a multi-GPU host)."""
        return torch.cuda.device(self.real.device) if self.capture else contextlib.nullcontext()

    def _warm(self, kinds: Sequence[str], n: int) -> None:
        for _ in range(n):
            for kind in kinds:
                self.step(self.real, self.labels, kind)

    def __call__(self, real: torch.Tensor, labels: torch.Tensor | None, kind: str) -> None:
        self.real.copy_(real)
        if self.labels is not None and labels is not None:
            self.labels.copy_(labels)
        if self.capture:
            with self._on_device():
                self.graphs[kind].replay()
        else:
            self.step(self.real, self.labels, kind)
