"""The step protocol: a model family declared in one place trains, checkpoints, resumes and
samples with no edit anywhere else; interrupted runs of every registered variant resume to
the same bits; format-1 checkpoints still load; a critic learning rate of its own (TTUR)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.core.algorithms import Algorithm, StepContext
from pipeline.core.algorithms.base import Figure
from pipeline.core.nets import MLPGenerator, NetSpec
from pipeline.core.variants.base import Options, Variant, registry
from pipeline.infra import checkpoint as ckpt
from pipeline.infra.params import load_params
from pipeline.stages.train import train_variant
from pipeline.training.loop import Trainer
from pipeline.training.restore import load_nets
from pipeline.training.sampling import generate
from pipeline.training.setup import run_setup
from pipeline.training.spec import run_spec
from tests.conftest import representative_variants, training_signature, write_params
from tests.hostile import whole_and_resumed

VARIANTS = registry.names()
# the expensive registry-wide tests: one variant per way of training (conftest)
REPRESENTATIVE = representative_variants()


class Head(nn.Module):
    """A learned feature map x -> [B, 8] (the throwaway model's own extra net)."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.proj = nn.Linear(784, 8)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.proj(x.flatten(1)))


@dataclass(frozen=True)
class FeatureMatching(Algorithm):
    """G matches the mean of learned features of real data; the head maximises the gap.
    A state tensor keeps an exponential moving average of the gap (logged as a metric)."""

    kinds = {"step": ("head", "g")}
    metrics = ("gap", "ema_gap")
    losses = ("gap",)

    def build(self, spec: NetSpec) -> dict[str, nn.Module]:
        return {"generator": MLPGenerator(spec, hidden=(32, 32)), "head": Head(spec)}

    def owners(self) -> dict[str, tuple[str, ...]]:
        return {"head": ("head",), "g": ("generator",)}

    def initial_state(self, hyper, device):  # type: ignore[no-untyped-def]
        return {"ema_gap": torch.zeros((), device=device)}

    def figures(self, nets, spec, device):  # type: ignore[no-untyped-def]
        z = torch.zeros(6, spec.z_dim, device=device)
        z[:, 0] = torch.linspace(-3, 3, 6)  # one latent direction swept
        return {"sweep": Figure(nets["generator"](z), 3, "latent dimension 0 from -3 to 3")}

    def step(self, ctx: StepContext, kind: str) -> None:
        g, head = ctx.nets["generator"], ctx.nets["head"]
        fake = g(ctx.randn(ctx.real.shape[0], ctx.spec.z_dim), ctx.labels)
        with ctx.player("head"):
            gap = (head(ctx.real).mean(0) - head(fake.detach()).mean(0)).pow(2).sum()
            ctx.minimize("head", -gap)
        with ctx.player("g"):
            gap_g = (head(ctx.real).mean(0) - head(fake).mean(0)).pow(2).sum()
            ctx.minimize("g", gap_g)
        with torch.no_grad():
            ema = ctx.state["ema_gap"]
            ema.mul_(0.9).add_(0.1 * gap.detach())
        ctx.log(gap=gap, ema_gap=ema)


@pytest.fixture
def throwaway() -> Iterator[str]:
    registry.register(
        Variant(name="feature_match", algorithm=FeatureMatching(), epochs=3, lr=1e-3,
                description="a test model: learned feature matching")
    )  # fmt: skip
    yield "feature_match"
    registry.unregister("feature_match")


def _params(root: Path, prepared_dir: Path, **train: object):  # type: ignore[no-untyped-def]
    over = {"data": {"dir": str(prepared_dir)},
            "train": {"subset": 64 * 4, "device": "cpu", "log_every": 3, **train}}  # fmt: skip
    return load_params(write_params(root, over))


def _interrupted_and_resumed(name: str, root: Path, prepared_dir: Path, epochs: int = 3):  # type: ignore[no-untyped-def]
    params = _params(root, prepared_dir)
    spec = run_spec(params, name, epochs=epochs)
    return whole_and_resumed(params, spec, root, torch.device("cpu"))


def _assert_same_run(a: Trainer, b: Trainer) -> None:
    for net in a.nets:
        for (key, x), (_, y) in zip(
            a.nets[net].state_dict().items(), b.nets[net].state_dict().items(), strict=True
        ):
            assert torch.equal(x, y), f"{net}.{key} differs"
    for name, t in a.state.items():
        assert torch.equal(t, b.state[name]), f"state {name} differs"
    for name, opt in a.optimizers.items():
        sa, sb = opt.state_dict()["state"], b.optimizers[name].state_dict()["state"]
        for i in sa:
            for k, v in sa[i].items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb[i][k])), (name, i, k)
    assert json.dumps(a.history[-1], sort_keys=True, default=str) == json.dumps(
        {**b.history[-1], "steps_per_s": a.history[-1]["steps_per_s"],
         "elapsed_s": a.history[-1]["elapsed_s"]}, sort_keys=True, default=str
    )  # fmt: skip


def test_a_new_family_trains_with_its_own_head_state_and_metric(
    throwaway: str, tmp_path: Path, prepared_dir: Path
) -> None:
    params = _params(tmp_path, prepared_dir, subset=64 * 2)
    spec = run_spec(params, throwaway, epochs=1)
    trainer = Trainer(
        run_setup(params), spec, tmp_path / "run", torch.device("cpu"), progress=False
    )
    trainer._fresh_state()
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in trainer.nets.items()}
    result = trainer.run()
    assert result.steps == 2 and result.g_iters == 2
    for net, params_before in before.items():  # both of its nets were trained
        after = list(trainer.nets[net].parameters())
        assert any(not torch.equal(x, y) for x, y in zip(params_before, after, strict=True)), net
    row = result.history[0]
    assert row["gap"] > 0 and 0 < row["ema_gap"] < row["gap"]
    assert {"grad_norm_head", "grad_norm_g"} <= set(row)
    assert "d_loss" not in row and "wasserstein" not in row
    state = ckpt.load(result.checkpoint)
    assert set(state["nets"]) == {"generator", "head"} and set(state["optimizers"]) == {"head", "g"}
    assert torch.equal(state["state"]["ema_gap"], trainer.state["ema_gap"])
    # its own figure, rendered from the final weights, with a caption for the report
    index = json.loads((result.out_dir / "figures" / "figures.json").read_text())
    assert index == [{"name": "sweep", "file": "sweep.png",
                      "caption": "latent dimension 0 from -3 to 3"}]  # fmt: skip
    from PIL import Image

    with Image.open(result.out_dir / "figures" / "sweep.png") as im:  # 2 rows of 3 tiles
        assert im.size == (3 * 30 + 2, 2 * 30 + 2)
    # sampling goes through the same protocol
    variant, nets, cfg = load_nets(result.checkpoint, "cpu")
    images, labels = generate(variant, nets, 10, cfg["z_dim"], 0, 4, torch.device("cpu"))
    assert images.shape == (10, 1, 28, 28) and images.dtype == torch.uint8 and labels is None


def test_the_throwaway_family_resumes_and_graph_steps_bit_identically(
    throwaway: str, tmp_path: Path, prepared_dir: Path
) -> None:
    whole, resumed = _interrupted_and_resumed(throwaway, tmp_path, prepared_dir)
    _assert_same_run(whole, resumed)
    params = _params(tmp_path / "graphs", prepared_dir, cuda_graphs=True)
    graphed = Trainer(run_setup(params), run_spec(params, throwaway, epochs=3), tmp_path / "graphs" / "run",
                      torch.device("cpu"), progress=False)  # fmt: skip
    graphed.run()
    assert graphed.step_mode == "static"
    _assert_same_run(whole, graphed)


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_an_interrupted_run_resumes_to_the_same_bits(
    name: str, tmp_path: Path, prepared_dir: Path
) -> None:
    """Stopped at the end of epoch 2 (its checkpoint not written), resumed from epoch 1:
    nets, optimiser moments, algorithm state and the last epoch's metrics equal an
    uninterrupted run's."""
    whole, resumed = _interrupted_and_resumed(name, tmp_path, prepared_dir)
    _assert_same_run(whole, resumed)


def test_a_format_1_checkpoint_still_samples(tiny_params_path: Path) -> None:
    """A finished run written before the step protocol (nets under fixed keys) still loads."""
    params = load_params(tiny_params_path)
    result = train_variant(params, "gan", epochs=1, track=False, progress=False)
    new = ckpt.load(result.checkpoint)
    old = {k: v for k, v in new.items() if k not in ("format", "nets", "optimizers", "state",
                                                     "g_iters")}  # fmt: skip
    old.update(generator=new["nets"]["generator"], discriminator=new["nets"]["discriminator"],
               opt_g=new["optimizers"]["g"], opt_d=new["optimizers"]["d"])  # fmt: skip
    torch.save({"format": 1, **old}, result.checkpoint)
    variant, nets, cfg = load_nets(result.checkpoint, "cpu")
    for key, tensor in new["nets"]["generator"].items():
        assert torch.equal(nets["generator"].state_dict()[key], tensor)
    assert ckpt.load(result.checkpoint)["g_iters"] == new["g_iters"]
    again = train_variant(params, "gan", epochs=1, track=False, progress=False)
    assert again.steps == result.steps  # recognised as finished: nothing retrained


def test_a_critic_learning_rate_of_its_own(tmp_path: Path, prepared_dir: Path) -> None:
    path = write_params(
        tmp_path,
        {"data": {"dir": str(prepared_dir)},
         "variants": {"wgan_gp": {"lr": 1e-4, "lr_d": 4e-4}}},
    )  # fmt: skip
    params = load_params(path)
    trainer = Trainer(run_setup(params), run_spec(params, "wgan_gp", epochs=1), tmp_path / "run",
                      torch.device("cpu"), progress=False)  # fmt: skip
    trainer._fresh_state()
    assert trainer.optimizers["d"].param_groups[0]["lr"] == 4e-4
    assert trainer.optimizers["g"].param_groups[0]["lr"] == 1e-4


def test_lr_d_is_refused_for_a_model_without_a_critic(
    throwaway: str, tmp_path: Path, prepared_dir: Path
) -> None:
    from pipeline.infra.errors import ConfigError
    from pipeline.training.params import load_checked

    path = write_params(tmp_path, {"variants": {throwaway: {"lr_d": 1e-3}}})
    with pytest.raises(ConfigError, match=f"variants.{throwaway}.lr_d: .*no critic"):
        load_checked(path)


def test_a_variant_with_helper_modules_hashes_them(throwaway: str) -> None:
    """code_files follows what a variant is made of: the algorithm's module, its nets' and
    objectives' modules, hooks and options (so DVC and the run identity see a helper edit)."""
    from pipeline.training.spec import code_files

    files = code_files(registry.get("wgan_gp"))
    assert {"core/losses.py", "core/nets.py", "core/algorithms/adversarial.py",
            "core/variants/_options.py", "core/variants/wgan_gp.py"} <= set(files)  # fmt: skip
    assert "core/variants/wgan.py" not in files
    outside = Variant(name="x", epochs=1, lr=1.0, algorithm=FeatureMatching())
    # a class defined in a test file is outside pipeline/: only the core files are hashed
    assert "core/algorithms/adversarial.py" not in code_files(outside)


def test_sampling_records_its_cost_beside_the_samples(
    tiny_params_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seconds per 1,000 images go to metrics/sampling/<V>.json (the sample stage's metrics),
    outside samples/<V>, whose bytes stay the same from run to run."""
    import pipeline.stages.sample
    from pipeline.infra import layout
    from pipeline.infra.devices import numerics
    from pipeline.stages.sample import sample_variant

    params = load_params(tiny_params_path)
    train_variant(params, "gan", epochs=1, track=False, progress=False)
    flags: list[bool] = []

    def spy(tf32: bool, deterministic: bool = False):  # noqa: ANN202
        flags.append(tf32)
        return numerics(tf32, deterministic)

    # One TF32 rule (issue 27): the generator samples at train.tf32, as it trained; the
    # precision that applied is recorded (a CPU never uses TF32).
    monkeypatch.setattr(pipeline.stages.sample, "numerics", spy)
    sample_variant(params.with_section("train", tf32=True), "gan")
    assert flags == [True]
    cost = json.loads(layout.sampling_path(params, "gan").read_text())
    assert cost["precision"] == "cpu-fp32"
    assert cost["n"] == params.sample.n and cost["device"] == "cpu"
    assert cost["seconds"] > 0
    assert cost["seconds_per_1000"] == pytest.approx(1000 * cost["seconds"] / cost["n"], rel=1e-3)
    assert not any(p.name.endswith(".json") for p in layout.sample_dir(params, "gan").iterdir())


class WidthOptions(Options):
    hidden: int = 16


@dataclass(frozen=True)
class SizedFeatureMatching(FeatureMatching):
    """The throwaway family with its generator's width taken from the run's options."""

    def build(self, spec: NetSpec) -> dict[str, nn.Module]:
        return self.build_with(spec, WidthOptions().model_dump())

    def build_with(self, spec, options):  # type: ignore[no-untyped-def]
        h = int(options["hidden"])
        return {"generator": MLPGenerator(spec, hidden=(h, h)), "head": Head(spec)}


def test_nets_are_built_for_the_run_options(tmp_path: Path, prepared_dir: Path) -> None:
    """An option set in params.yaml (a net width) reaches the nets the trainer trains and
    the ones sampling loads from the checkpoint."""
    registry.register(Variant(name="sized", algorithm=SizedFeatureMatching(), epochs=1,
                              lr=1e-3, options=WidthOptions))  # fmt: skip
    try:
        path = write_params(
            tmp_path,
            {"data": {"dir": str(prepared_dir)}, "train": {"subset": 64, "device": "cpu"},
             "variants": {"sized": {"options": {"hidden": 24}}}},
        )  # fmt: skip
        result = train_variant(load_params(path), "sized", track=False, progress=False)
        _, nets, cfg = load_nets(result.checkpoint, "cpu")
        assert cfg["hyper"]["options"] == {"hidden": 24}
        assert nets["generator"].net[0].out_features == 24
    finally:
        registry.unregister("sized")


def test_the_expensive_tests_cover_every_way_of_training() -> None:
    """Variants that differ only in their loss formulas share a signature; a structural
    difference (hook, penalty, rescoring D(real), net builder, algorithm) does not."""
    assert training_signature("lsgan") == training_signature("gan") == training_signature("hinge")
    assert training_signature("wgan_div") == training_signature("wgan_gp")
    for other in ("ragan", "wgan", "wgan_gp", "sngan", "cgan", "dcgan", "vae", "began"):
        assert training_signature(other) != training_signature("gan"), other
    chosen = set(REPRESENTATIVE)
    assert {"gan", "cgan", "dcgan", "wgan", "wgan_gp"} <= chosen
    signatures = {training_signature(n) for n in VARIANTS}
    assert {training_signature(n) for n in chosen} == signatures
    assert len(chosen) == len(signatures)
