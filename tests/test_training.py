"""Training through Lightning, checkpoints, model files, evaluation and the DDP path (tiny networks and photos)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from conftest import run_net

from fip.cli import main
from fip.data.module import PairDataModule, PairDataset
from fip.models.storage import NetworkFile, load_network, save_network


def _config(tmp_path, photo_folder, **overrides) -> str:
    """A tiny training config: two photos to train on, one to validate on."""
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["first", "third"], "test": ["second"]}))
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 6,
            "default_root_dir": str(tmp_path / "runs"),
            "logger": [
                {
                    "class_path": "pytorch_lightning.loggers.CSVLogger",
                    "init_args": {"save_dir": str(tmp_path / "runs"), "name": "tiny"},
                },
            ],
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
        "model": {
            "net": {
                "class_path": "fip.models.ContextAggregationNet",
                "init_args": {"in_channels": 3, "width": 8, "depth": 4},
            },
            "lr": 0.01,
        },
        "data": {
            "operator": "smooth.l0",
            "source": str(photo_folder),
            "split_file": str(split),
            "recipe": "crops",
            "crop_size": 32,
            "batch_size": 2,
            "val_resolution": "native",
            "root": str(tmp_path / "pairs"),
            "pair_workers": 1,
        },
    }
    for key, value in overrides.items():
        section, name = key.split(".", 1)
        config[section][name] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_pair_dataset_crops_and_flips(photo_folder, tmp_path):
    from fip.data.pairs import generate_pairs
    from fip.data.sources import open_source

    generate_pairs("smooth.l0", open_source(photo_folder), out_dir=tmp_path / "p", workers=1, progress=False)
    dataset = PairDataset(tmp_path / "p", "all", crop=16, flips=True)
    x, y = dataset[0]
    assert x.shape == y.shape == (3, 16, 16) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    full = PairDataset(tmp_path / "p", "all")
    assert full[0][0].shape[1:] == (48, 64)


def test_pair_dataset_returns_the_whole_photo_as_the_crops_context(photo_folder, tmp_path):
    from fip.data.module import collate_crops
    from fip.data.pairs import generate_pairs
    from fip.data.sources import open_source

    generate_pairs("smooth.l0", open_source(photo_folder), out_dir=tmp_path / "p", workers=1, progress=False)
    whole = PairDataset(tmp_path / "p", "all")[0][0]
    x, y, preview = PairDataset(tmp_path / "p", "all", crop=16, context=0.5, seed=3)[0]
    assert x.shape == y.shape == (3, 16, 16) and preview.shape == (3, 24, 32)
    # The preview is the whole photo (flipped with the crop), not the crop: its mean is the photo's.
    assert abs(preview.mean() - whole.mean()) < 1e-3 and abs(preview.mean() - x.mean()) > 1e-3
    inputs, _, contexts = collate_crops([(x, y, preview), (x, y, preview[:, :10])])
    assert inputs.shape == (2, 3, 16, 16) and [c.shape[1:] for c in contexts] == [(24, 32), (10, 32)]
    # Flipped with the crop: with a crop the size of the photo and a full-size context, the preview is the crop.
    flipped = 0
    for seed in range(6):
        x, _, preview = PairDataset(tmp_path / "p", "all", crop=64, flips=True, context=1.0, seed=seed)[0]
        assert torch.equal(preview, x)
        flipped += not torch.equal(x, whole)
    assert flipped > 0
    with pytest.raises(ValueError, match=r"context 0.5 needs crop= \(a crop size\)"):
        PairDataset(tmp_path / "p", "all", context=0.5)


def test_pair_dataset_draws_several_crops_of_one_photo_that_share_its_preview(photo_folder, tmp_path):
    from fip.data.module import collate_crops
    from fip.data.pairs import generate_pairs
    from fip.data.sources import open_source

    generate_pairs("smooth.l0", open_source(photo_folder), out_dir=tmp_path / "p", workers=1, progress=False)
    x, y, preview = PairDataset(tmp_path / "p", "all", crop=16, flips=True, context=0.5, crops_per_photo=3)[0]
    assert x.shape == y.shape == (3, 3, 16, 16) and preview.shape == (3, 24, 32)
    assert not torch.equal(x[0], x[1])  # three places in the photo
    # Flipped alike: with crops the size of the photo and a full-size context, every crop is the preview.
    for seed in range(4):
        x, _, preview = PairDataset(
            tmp_path / "p", "all", crop=64, flips=True, context=1.0, seed=seed, crops_per_photo=2
        )[0]
        assert torch.equal(x[0], preview) and torch.equal(x[1], preview)
    dataset = PairDataset(tmp_path / "p", "all", crop=16, context=0.5, crops_per_photo=2)
    inputs, targets, contexts = collate_crops([dataset[0], dataset[1]])
    assert inputs.shape == targets.shape == (4, 3, 16, 16)
    assert contexts[0] is contexts[1] and contexts[2] is contexts[3] and contexts[1] is not contexts[2]
    x, y = PairDataset(tmp_path / "p", "all", crop=16, crops_per_photo=2, maps=(1.0,))[0]
    assert x.shape == (2, 4, 16, 16) and torch.equal(x[:, 3], torch.ones(2, 16, 16)) and y.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="crops_per_photo 2 needs crop="):
        PairDataset(tmp_path / "p", "all", crops_per_photo=2)


def test_pair_dataset_in_memory_decodes_each_pair_once_and_draws_the_same_crops(photo_folder, tmp_path):
    from fip.data.pairs import generate_pairs
    from fip.data.sources import open_source

    generate_pairs("smooth.l0", open_source(photo_folder), out_dir=tmp_path / "p", workers=1, progress=False)
    kept = PairDataset(tmp_path / "p", "all", crop=16, flips=True, context=0.5, seed=2, in_memory=True)
    read = PairDataset(tmp_path / "p", "all", crop=16, flips=True, context=0.5, seed=2)
    first = [kept[i] for i in range(len(kept))]
    for i, items in enumerate(first):
        assert all(torch.equal(a, b) for a, b in zip(items, read[i]))
    for png in (tmp_path / "p").glob("*/*.png"):
        png.unlink()  # from now on only the kept copies can answer
    again = [kept[i] for i in range(len(kept))]
    assert again[0][0].shape == (3, 16, 16) and again[0][2].shape == (3, 24, 32)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, again))  # fresh crops from the kept pairs
    with pytest.raises(FileNotFoundError):
        read[0]  # the disk copies are gone


def test_training_in_bf16_on_the_cpu_stays_finite(photo_folder, tmp_path):
    """bf16-mixed on the CPU once gave NaN weights after the first step: oneDNN's bf16 backward of a 24-channel
    dilated convolution returns NaN for channels-last inputs of 32 pixels and more (torch 2.13)."""
    from fip.training import run_training

    config = _config(tmp_path, photo_folder, **{"trainer.max_epochs": 2, "data.context_scale": 0.5})
    cli = run_training(
        [
            "-c",
            config,
            "--trainer.precision",
            "bf16-mixed",
            "--data.crops_per_photo",
            "2",
            "--model.net.init_args.width",
            "24",
        ]
    )  # at width 8 the NaN did not appear
    assert cli.trainer.global_step == 4 and np.isfinite(cli.trainer.callback_metrics["train_loss"].item())
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
    # What fixed it: crops come in the standard (contiguous) layout, whatever view of the photo they were cut from.
    crops, _, preview = cli.datamodule.datasets["train"][0]
    assert crops.is_contiguous() and preview.is_contiguous()


def test_training_crops_in_context(photo_folder, tmp_path, monkeypatch):
    from fip.models import ContextAggregationNet
    from fip.training import run_training

    seen = []
    original = ContextAggregationNet.forward_in_context

    def recording(net, x, contexts):
        seen.append([c.shape for c in contexts])
        return original(net, x, contexts)

    monkeypatch.setattr(ContextAggregationNet, "forward_in_context", recording)
    config = _config(tmp_path, photo_folder, **{"trainer.max_epochs": 2, "data.context_scale": 0.5})
    cli = run_training(["-c", config])
    assert cli.trainer.global_step == 2 and np.isfinite(cli.trainer.callback_metrics["train_loss"].item())
    # Every step normalized its two crops with their photos at half size (the 48x64 training photos).
    assert seen == [[(3, 24, 32)] * 2] * 2
    with pytest.raises(ValueError, match="needs recipe 'crops'"):
        run_training(["-c", config, "--data.recipe", "paper"])
    # Two crops of one photo a step: one context per photo, listed once per crop.
    seen.clear()
    cli = run_training(["-c", config, "--data.crops_per_photo", "2", "--trainer.default_root_dir", str(tmp_path / "k")])
    assert cli.trainer.global_step == 4 and seen == [[(3, 24, 32)] * 2] * 4
    with pytest.raises(ValueError, match="crops_per_photo 3 must divide batch_size 2"):
        run_training(["-c", config, "--data.crops_per_photo", "3"])
    with pytest.raises(ValueError, match="Identity cannot do .* leave it unset"):
        run_training(["-c", config, "--model.net", json.dumps({"class_path": "torch.nn.Identity"})])
    with pytest.raises(ValueError, match="running averages .* leave data.context_scale unset"):
        run_training(["-c", config, "--model.net.init_args.norm", "running"])
    # The low-resolution form: its CAN, at a third of the crops' size, takes the photos at a third of theirs.
    seen.clear()
    guided = {"class_path": "fip.models.GuidedCAN", "init_args": {"width": 8, "depth": 4, "factor": 3.0}}
    run_training(["-c", config, "--model.net", json.dumps(guided), "--data.context_scale", "0.3333"])
    assert seen == [[(3, 16, 21)] * 2] * 2


def test_training_lowers_the_loss_and_writes_a_loadable_checkpoint(photo_folder, tmp_path, capsys):
    from fip.training import run_training

    # An operator far from the identity (the untrained network is the identity map); ~40 optimizer steps.
    overrides = {
        "data.operator": "style.stylize",
        "trainer.max_epochs": 20,
        "data.batch_size": 1,
        "data.crop_size": 48,
        "trainer.check_val_every_n_epoch": 10,
    }
    cli = run_training(["-c", _config(tmp_path, photo_folder, **overrides)])
    metrics = (tmp_path / "runs" / "tiny" / "version_0" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    assert sum(1 for row in metrics[1:] if row.split(",")[header.index("val_psnr")]) == 2  # validation ran
    hours = [
        float(row.split(",")[header.index("train_hours")])
        for row in metrics[1:]
        if row.split(",")[header.index("val_psnr")]
    ]
    assert 0 < hours[0] < hours[1] < 1  # the clock beside each validation: PSNR against hours of training
    checkpoint = cli.trainer.checkpoint_callback.last_model_path
    model = load_network(checkpoint)
    assert model.operator == "style.stylize" and model.params == {"sigma_s": 60.0, "sigma_r": 0.45}
    # On the training pairs, whole images: the trained network is closer to the targets than the start.
    train = PairDataset(tmp_path / "pairs" / "style.stylize" / "480p", "train")
    start = type(model.net)(**{k: getattr(model.net, k) for k in ("in_channels", "width", "depth")}).eval()
    with torch.no_grad():
        before = np.mean([torch.nn.functional.mse_loss(start(x[None]), y[None]).item() for x, y in train])
        after = np.mean([torch.nn.functional.mse_loss(model.net(x[None]), y[None]).item() for x, y in train])
    assert after < 0.8 * before, (before, after)
    image = np.random.default_rng(0).random((17, 23, 3), dtype=np.float32)  # odd sizes work
    out = run_net(model.net, image, operator="style.stylize")
    assert out.shape == (17, 23, 3)
    # A model file holds the same network without the training code.
    exported = save_network(model, tmp_path / "model.pt", {"val_psnr": 1.0})
    assert np.array_equal(run_net(load_network(exported), image), out)
    capsys.readouterr()  # drop what training printed
    assert (
        main(["eval", "-m", str(exported), "--source", str(photo_folder), "--split", "all", "--json", "--workers", "1"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert {"mean_psnr", "mean_ssim", "images"} <= set(report) and len(report["images"]) == 3
    assert all(np.isfinite(i["psnr"]) and 0 < i["ssim"] <= 1 for i in report["images"])
    assert report["mean_input_psnr"] == pytest.approx(np.mean([i["input_psnr"] for i in report["images"]]))


def test_eval_reports_what_the_input_itself_scores(photo_folder):
    """``input_psnr`` is the bar a model must clear: the untrained network is the identity and scores exactly it."""
    from fip.data.sources import Resolution, folder_source
    from fip.evaluate import evaluate
    from fip.imaging import read_image_file
    from fip.metrics import psnr
    from fip.models import can24
    from fip.models.catalogue import Model

    identity = Model.of_network(NetworkFile(can24().eval(), "identity", operator="smooth.rof"))
    report = evaluate(
        identity, folder_source(photo_folder), split="all", resolution=Resolution(96), workers=1, request="full"
    )
    assert [i["psnr"] for i in report.images] == pytest.approx([i["input_psnr"] for i in report.images], abs=1e-3)
    for image in report.images:  # the input PNG of the pair against its target
        pair = [read_image_file(report.pairs_dir / kind / f"{image['name']}.png") for kind in ("input", "target")]
        assert image["input_psnr"] == pytest.approx(psnr(*pair))
    assert all(15 < i["input_psnr"] < 80 for i in report.images)  # the operator changed the photos, within reason
    assert "input PSNR" in report.table()


def test_training_resumes_from_a_checkpoint(photo_folder, tmp_path):
    from fip.training import TrainingClock, run_training

    config = _config(tmp_path, photo_folder, **{"trainer.max_epochs": 2})
    first = run_training(["-c", config])
    last = first.trainer.checkpoint_callback.last_model_path
    resumed = run_training(["-c", config, "--trainer.max_epochs", "3", "--ckpt_path", last])
    assert resumed.trainer.current_epoch == 3 and resumed.trainer.global_step > first.trainer.global_step
    clocks = [next(c for c in cli.trainer.callbacks if isinstance(c, TrainingClock)) for cli in (first, resumed)]
    assert 0 < clocks[0].seconds < clocks[1].seconds  # the resumed run's clock goes on from the checkpoint's
    assert 0 < clocks[0].cpu_seconds < clocks[1].cpu_seconds
    # A run started from a checkpoint records what the file held then (it may be overwritten later)
    started = run_training(["-c", config, "--trainer.max_epochs", "1", "--model.warm_start", last])
    saved = torch.load(started.trainer.checkpoint_callback.last_model_path, map_location="cpu", weights_only=False)
    assert saved["fip"]["warm_start_sha256"] == hashlib.sha256(Path(last).read_bytes()).hexdigest()


def test_last_checkpoint_is_the_last_epoch_even_when_validation_stops_improving(photo_folder, tmp_path):
    """With lr 0 validation never improves after the first epoch; last.ckpt must still hold the final epoch."""
    from fip.training import run_training

    for every in (1, 2):  # validation after every epoch, and after every second one (as the configs do, by 10)
        (tmp_path / str(every)).mkdir()
        config = _config(tmp_path / str(every), photo_folder, **{"trainer.max_epochs": 3})
        cli = run_training(["-c", config, "--model.lr", "0", "--trainer.check_val_every_n_epoch", str(every)])
        best, last = cli.trainer.checkpoint_callback.best_model_path, cli.trainer.checkpoint_callback.last_model_path
        assert f"epoch={every - 1}" in best
        saved = torch.load(last, map_location="cpu", weights_only=False)
        assert (saved["epoch"], saved["global_step"]) == (2, cli.trainer.global_step)


def test_warm_start_from_the_authors_network():
    from fip.lit import LitApproximator
    from fip.models import can24, load_paper_model

    module = LitApproximator(can24(), warm_start="paper/L0_smoothing")
    reference = load_paper_model("paper/L0_smoothing")
    x = torch.rand(1, 3, 20, 24)
    assert torch.allclose(module.net.eval()(x), reference(x))


def test_warm_start_from_another_operators_shipped_model_records_its_content():
    """``fip/<operator>`` starts from the model fip ships, any operator's (style.stylize's config starts from
    fip/smooth.rtv); the file's digest goes into checkpoints, as the shipped file may be replaced later."""
    from fip.lit import LitApproximator
    from fip.models import ContextAggregationNet
    from fip.models.catalogue import open_model

    module = LitApproximator(ContextAggregationNet(conv_bias=True), warm_start="fip/smooth.rtv")
    x = torch.rand(1, 3, 20, 24)
    shipped = open_model("fip/smooth.rtv")
    assert torch.allclose(module.net.eval()(x), shipped.network("net")(x), atol=1e-6)
    assert module.warm_start_sha256 == hashlib.sha256(shipped.card.path_of("net").read_bytes()).hexdigest()
    assert module.warm_start_sha256 == shipped.card.networks["net"].sha256  # the card records the same digest
    assert LitApproximator(ContextAggregationNet(), warm_start="paper/L0_smoothing").warm_start_sha256 is None


def test_a_network_with_convolution_biases_starts_from_one_without_and_keeps_them_when_saved(tmp_path):
    from fip.lit import LitApproximator
    from fip.models import ContextAggregationNet
    from fip.models.storage import net_config

    module = LitApproximator(ContextAggregationNet(conv_bias=True), warm_start="paper/L0_smoothing")
    x = torch.rand(1, 3, 20, 24)
    assert torch.allclose(module.net.eval()(x), load_network("paper/L0_smoothing").net(x), atol=1e-6)  # biases at 0
    with torch.no_grad():
        module.net.features[0].bias.fill_(0.05)
    path = save_network(NetworkFile(module.net, "biased", operator="smooth.l0"), tmp_path / "biased.pt")
    loaded = load_network(path).net
    assert loaded.conv_bias and torch.allclose(loaded(x), module.net(x), atol=1e-6)
    with pytest.raises(ValueError, match="set model.net.init_args.conv_bias: true"):  # would drop what it learned
        LitApproximator(ContextAggregationNet(), warm_start=str(path))
    assert "conv_bias" not in net_config(ContextAggregationNet())  # bias-free files stay readable by older fip


def test_normalization_scalars_learn_at_their_own_rate():
    """``norm_lr_scale`` gives lambda and mu a larger step than the weights; every parameter is optimized once."""
    from fip.lit import LitApproximator
    from fip.models import can24

    def train(scale: float) -> tuple[float, float]:
        torch.manual_seed(0)
        module = LitApproximator(can24(), lr=1e-3, norm_lr_scale=scale)
        optimizer = module.configure_optimizers()
        x = torch.rand(2, 3, 24, 24)
        mean, std = x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True)
        target = (x - mean) / std * 0.1 + 0.5  # exposure-normalized
        first = module.net.features[1]
        before = module.net.features[0].weight.detach().clone()
        for _ in range(5):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(module.net(x), target).backward()
            optimizer.step()
        return abs(first.mu.item()), (module.net.features[0].weight - before).abs().max().item()

    params = LitApproximator(can24(), norm_lr_scale=50).configure_optimizers().param_groups
    assert [g["lr"] for g in params] == [1e-4, pytest.approx(5e-3)]
    assert sum(len(g["params"]) for g in params) == len(list(can24().parameters()))
    assert len(LitApproximator(can24()).configure_optimizers().param_groups) == 1  # the default: checkpoints resume
    # The cosine schedule takes each group to 1 % of its own rate.
    module = LitApproximator(can24(), lr=1e-3, schedule="cosine", norm_lr_scale=50)
    module.trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False)
    configured = module.configure_optimizers()
    for _ in range(4):
        configured["optimizer"].step()
        configured["lr_scheduler"]["scheduler"].step()
    assert [g["lr"] for g in configured["optimizer"].param_groups] == [pytest.approx(1e-5), pytest.approx(5e-4)]
    (mu_plain, weight_plain), (mu_scaled, weight_scaled) = train(1.0), train(50.0)
    assert mu_scaled > 20 * mu_plain and mu_scaled > 0.1
    assert weight_scaled < 2 * weight_plain + 1e-3  # the weights keep their step
    with pytest.raises(ValueError, match="norm_lr_scale"):
        LitApproximator(can24(), norm_lr_scale=0)


def test_convolution_biases_learn_at_their_own_rate(caplog):
    from fip.lit import LitApproximator
    from fip.models import ContextAggregationNet, can24

    net = ContextAggregationNet(conv_bias=True)
    groups = LitApproximator(net, lr=1e-3, norm_lr_scale=50, bias_lr_scale=10).configure_optimizers().param_groups
    assert [(g.get("name"), g["lr"]) for g in groups] == [(None, 1e-3), ("norm", 5e-2), ("bias", pytest.approx(1e-2))]
    biases = [m.bias for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert len(biases) == 8 and {id(p) for p in groups[2]["params"]} == {id(b) for b in biases}
    assert id(net.output.bias) in {id(p) for p in groups[0]["params"]}  # the 1x1 output layer's: the base rate
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    x, target = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    optimizer = torch.optim.Adam(groups)
    torch.nn.functional.mse_loss(net(x), target).backward()
    optimizer.step()
    assert 5e-3 < biases[0].abs().max().item() <= 1.01e-2  # Adam's first step is the rate
    with caplog.at_level("WARNING"):
        assert len(LitApproximator(can24(), bias_lr_scale=10).configure_optimizers().param_groups) == 1
    assert "has no 3x3 convolution biases" in caplog.text
    with pytest.raises(ValueError, match="bias_lr_scale"):
        LitApproximator(can24(), bias_lr_scale=-1)


def test_data_module_rejects_unknown_recipes():
    with pytest.raises(ValueError, match="recipe 'fast'"):
        PairDataModule("smooth.l0", recipe="fast")


def test_loading_errors_name_the_problem(tmp_path):
    from fip.errors import FipError
    from fip.models.catalogue import open_model, open_warm_start

    with pytest.raises(FipError, match="no model, operator or file named .*missing.pt"):
        open_model(tmp_path / "missing.pt")
    with pytest.raises(
        FipError, match="no model, operator or file named 'fip/smooth.nothing'. Installed models: .*fip/smooth.rtv"
    ):
        open_model("fip/smooth.nothing")
    with pytest.raises(FipError, match="no installed model 'fip/smooth.rtv.pruned' to start from; installed: "):
        open_warm_start("fip/smooth.rtv.pruned")  # a sibling file is no model
    with pytest.raises(FipError, match="does not exist"):
        load_network(tmp_path / "fip" / "smooth.rtv")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(FipError, match="junk.pt is not a fip network file or Lightning checkpoint") as caught:
        load_network(tmp_path / "junk.pt")
    assert "weights_only" not in str(caught.value)  # PyTorch's advice to load unsafely is not passed on
    for holding in (torch.zeros(3), [1, 2]):  # something else torch can read safely
        torch.save(holding, tmp_path / "other.pt")
        with pytest.raises(FipError, match="other.pt is not a fip network file: it holds a"):
            load_network(tmp_path / "other.pt")


def _output_and_target(model, folder, name, maps):
    """The network's output for pair ``name`` of ``folder`` (with ``maps``) and that pair's target."""
    from fip.imaging import read_image_file

    image = read_image_file(folder / "input" / f"{name}.png")
    operator = folder.parent.name.split("@")[0]  # pairs/<operator>[@params]/<resolution>
    return run_net(model, image, maps=maps, operator=operator), read_image_file(folder / "target" / f"{name}.png")


# About 200 optimizer steps on 48-pixel crops, no validation: seconds on a CPU.
_SHORT_RUN = {
    "trainer.max_epochs": 100,
    "trainer.check_val_every_n_epoch": 1000,
    "data.batch_size": 1,
    "data.crop_size": 48,
}


@pytest.mark.slow
def test_one_network_learns_two_operators_from_one_hot_maps(photo_folder, tmp_path):
    """The paper's combined network: one-hot operator maps as extra input channels, trained by the same code."""
    from fip.metrics import psnr
    from fip.training import run_training

    operators = ["smooth.rof", "style.stylize"]
    config = _config(tmp_path, photo_folder, **_SHORT_RUN)
    cli = run_training(
        ["-c", config, "--data.operator", json.dumps(operators), "--model.net.init_args.in_channels", "5"]
    )
    from fip.models.catalogue import Model, open_model

    model = Model.of_network(load_network(cli.trainer.checkpoint_callback.last_model_path))
    assert model.operator is None and model.conditioning.to_json() == {"kind": "one_hot", "operators": operators}
    folders = {op: tmp_path / "pairs" / op / "native" for op in operators}
    # Asked for an operator, the network answers with that operator's look rather than the other's.
    for asked, other in (operators, operators[::-1]):
        out, target = _output_and_target(model, folders[asked], "second", model.maps(asked))
        _, other_target = _output_and_target(model, folders[other], "second", model.maps(asked))
        assert psnr(out, target) > psnr(out, other_target) + 1.0, asked
    exported = open_model(save_network(model.network_file("net"), tmp_path / "both.pt"))
    assert exported.maps("style.stylize") == (0.0, 1.0)
    with pytest.raises(ValueError, match="trained for smooth.rof, style.stylize; not for 'smooth.l0'"):
        exported.maps("smooth.l0")


@pytest.mark.slow
def test_one_network_covers_a_parameter_range_from_a_parameter_map(photo_folder, tmp_path):
    """The paper's parameterized operator: the parameter's value as an extra input channel."""
    from fip.metrics import psnr
    from fip.pipeline import run_approximation
    from fip.training import run_training

    sweep = {"param": "exposure", "values": [0.5, 2.0]}
    config = _config(tmp_path, photo_folder, **_SHORT_RUN, **{"data.operator": "tone.multiscale", "model.lr": 0.003})
    cli = run_training(["-c", config, "--data.sweep", json.dumps(sweep), "--model.net.init_args.in_channels", "4"])
    from fip.models.catalogue import Model

    network = load_network(cli.trainer.checkpoint_callback.last_model_path)
    model = Model.of_network(network)
    assert model.conditioning.to_json() == {"kind": "sweep", "operator": "tone.multiscale", **sweep}
    assert model.maps("tone.multiscale", {"exposure": 0.5}) == (0.0,) and model.maps(
        "tone.multiscale", {"exposure": 1.25}
    ) == (0.5,)
    sets = sorted((tmp_path / "pairs").glob("tone.multiscale@*"))  # one pair set per swept value, never mixed
    assert len(sets) == 2
    exposure = lambda folder: json.loads((folder / "manifest.json").read_text())["params"]["exposure"]  # noqa: E731
    dark, bright = sorted((folder / "native" for folder in sets), key=exposure)
    out_dark, target_dark = _output_and_target(model, dark, "second", model.maps("tone.multiscale", {"exposure": 0.5}))
    out_bright, target_bright = _output_and_target(
        model, bright, "second", model.maps("tone.multiscale", {"exposure": 2.0})
    )
    # The map steers the network: each setting lands far closer to its own target than to the other's.
    assert psnr(out_dark, target_dark) > psnr(out_bright, target_dark) + 5.0
    assert psnr(out_bright, target_bright) > psnr(out_dark, target_bright) + 5.0
    # The demo's path: the slider's value reaches the network, and values outside the range are refused.
    result = run_approximation(model, out_dark, {"exposure": 1.0}, "full")
    assert result.plan.approximator == "full"  # the swept parameter is followed by the network
    assert run_approximation(model, out_dark, {"exposure": 1.0}).plan.approximator != "reference-lowres"
    with pytest.raises(ValueError, match=r"covers exposure in \[0.5, 2\]; got 3"):
        run_approximation(model, out_dark, {"exposure": 3.0}, "full")


def test_network_input_channels_must_match_the_conditioning(photo_folder, tmp_path):
    from fip.training import run_training

    config = _config(tmp_path, photo_folder, **{"trainer.max_epochs": 1})
    with pytest.raises(ValueError, match="feed 5 input channels .* set model.net.init_args.in_channels: 5"):
        run_training(["-c", config, "--data.operator", json.dumps(["smooth.rof", "smooth.l0"])])
    assert not (tmp_path / "pairs").exists()  # refused before any pair was generated


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(photo_folder, tmp_path):
    """Lightning's DDP strategy, two CPU processes (gloo), through the real `fip train` command."""
    config = _config(tmp_path, photo_folder, **{"trainer.max_epochs": 1})
    overrides = ["--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "fip", "-v", "train", "-c", config, *overrides],  # -v: Lightning's notices too
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr and "distributed_backend=gloo" in result.stderr
    assert list((tmp_path / "runs" / "tiny").rglob("last.ckpt"))


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "train" / "configs").glob("*.yaml"))


def test_every_builtin_operator_has_a_training_config():
    import fip
    from fip.errors import DISTRIBUTION

    builtins = {s.name for s in fip.list_operators() if s.source.startswith(f"{DISTRIBUTION} (")}
    assert builtins == {p.stem for p in CONFIGS}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_training_configs_are_valid(config, capsys):
    from fip.training import run_training

    with pytest.raises(SystemExit) as exit_info:
        run_training(["-c", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["operator"] == config.stem and printed["model"]["net"]["class_path"].endswith(
        "ContextAggregationNet"
    )
    warm = printed["model"].get("warm_start")
    if warm and warm.startswith("paper/"):
        from fip.models.paper import FIP_OPERATOR

        assert FIP_OPERATOR[warm.removeprefix("paper/")] == config.stem  # the authors' network of the same operator
    elif warm:  # a model fip ships, perhaps another operator's: it must load into the config's network
        from fip.lit import LitApproximator
        from fip.models import ContextAggregationNet

        assert warm.startswith("fip/"), f"{config.name}: warm start {warm!r} is neither paper/... nor fip/..."
        net = ContextAggregationNet(**printed["model"]["net"]["init_args"])
        LitApproximator(net, warm_start=warm)  # raises on a shape the network cannot take


EXTENSION_CONFIGS = sorted((CONFIGS[0].parent / "extensions").glob("*.yaml"))


@pytest.mark.parametrize("config", EXTENSION_CONFIGS, ids=lambda p: p.stem)
def test_extension_configs_feed_their_networks_the_right_channels(config, capsys):
    from fip.conditioning import make_conditioning
    from fip.training import run_training

    with pytest.raises(SystemExit):
        run_training(["-c", str(config), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    conditioning = make_conditioning(printed["data"]["operator"], printed["data"].get("sweep"))
    assert printed["model"]["net"]["init_args"]["in_channels"] == 3 + conditioning.channels
    if printed["model"].get("warm_start"):
        from fip.models.paper import load_paper_model

        assert load_paper_model(printed["model"]["warm_start"]).in_channels == 3 + conditioning.channels


def test_the_verbose_flag_goes_before_train_and_demo():
    for args, printed in (
        (["-v", "train", "--print_config", "-c", "smooth.l0"], "operator: smooth.l0"),
        (["-v", "demo", "--help"], "--port"),
    ):
        done = subprocess.run([sys.executable, "-m", "fip", *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (args, done.stderr[-2000:])
        assert printed in done.stdout, done.stdout[-2000:]


def test_training_prints_fips_output_not_lightnings_notices(photo_folder, tmp_path):
    config = _config(tmp_path, photo_folder, **{"trainer.max_epochs": 1, "data.operator": "smooth.rof"})
    done = subprocess.run(
        [sys.executable, "-m", "fip", "train", "-c", config],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FIP_CACHE": str(tmp_path / "cache")},
    )
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-2000:]
    assert (tmp_path / "runs" / "tiny" / "version_0" / "metrics.csv").is_file()  # it trained
    for notice in ("Tip:", "litlogger", "LeafSpec", "Total FLOPs", "GPU available", "TPU available", "args parameter"):
        assert notice not in printed, (notice, printed[-2000:])


def test_the_verbose_flag_shows_fips_debugging_not_every_librarys(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fip", "-v", "operators"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "smooth.l0" in done.stdout, done.stderr[-2000:]
    foreign = [
        line for line in done.stderr.splitlines() if line.split(":")[0].split(".")[0] not in ("fip", "fip_operators")
    ]
    assert not foreign, foreign[:5]
