"""A killed run resumes from its last checkpoint; checkpoints load safely or fail with a clear message."""

import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from pipeline.data.synthetic import write_ph2
from pipeline.handlers import RunRecorder, load_network_weights
from pipeline.networks import build_network

from conftest import ROOT, error_chain, run_in_process


def test_sigkill_then_resume_reaches_the_planned_epoch_as_if_never_stopped(tmp_path):
    """The run is SIGKILLed by a handler of its own, right after epoch 2's checkpoint is written (the last handler
    on the trainer's EPOCH_COMPLETED), so the point of the kill is fixed, not a race against the clock. Resumed, it
    ends with the weights and validation scores of the same run never stopped: ``last.pt`` carries the random
    streams (crops, flips, batch order), so the resumed epochs draw what the uninterrupted ones drew."""
    data = write_ph2(tmp_path / "PH2Dataset", n_cases=6, seed=1)
    run = tmp_path / "run"
    training = json.loads((ROOT / "configs" / "engine.json").read_text())["training"]
    at = training.index("$@train#checkpoints.attach(@train#trainer)") + 1
    training.insert(at, "$@train#trainer.add_event_handler(ignite.engine.Events.EPOCH_COMPLETED(once=2), "
                        "lambda engine: os.kill(os.getpid(), 9))")  # 9: SIGKILL; "signal" would need an import
    (tmp_path / "kill_after_epoch_2.json").write_text(json.dumps({"training": training}))
    args = ["run", "training", "--config_file", f"['bundles/ph2.json','{tmp_path / 'kill_after_epoch_2.json'}']",
            "--dataset_dir", str(data), "--epochs", "6", "--val_interval", "1", "--batch_size", "2",
            "--image_size", "128", "--roi_size", "[128,128]", "--output_dir", str(run)]
    proc = subprocess.run([sys.executable, "-m", "monai.bundle", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    killed_at = torch.load(run / "models" / "last.pt", weights_only=True)["trainer"]
    assert killed_at["iteration"] == 2 * killed_at["epoch_length"]
    record = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in record["history"]] == [1, 2] and not record.get("completed")

    # the resume in process: the command line's part was starting and being killed
    run_in_process("training", dataset_dir=data, epochs=6, val_interval=1, batch_size=2, image_size=128,
                   roi_size=[128, 128], output_dir=run, resume="true")
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4, 5, 6] and metrics["completed"]
    last = torch.load(run / "models" / "last.pt", weights_only=True)
    assert last["trainer"]["iteration"] == 6 * last["trainer"]["epoch_length"]
    (best_score, best_file), = last["best_checkpoint"]["_saved"]  # Ignite Checkpoint state of best.pt
    assert best_file == "best.pt" and best_score == pytest.approx(max(h["val_iou"] for h in metrics["history"]))

    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer().AddRunsFromDirectory(str(run / "tensorboard"))
    mux.Reload()
    steps = sorted({e.step for r in mux.Runs() for e in mux.Scalars(r, "train/loss")})
    assert steps == [1, 2, 3, 4, 5, 6]  # the epoch history continues, it does not restart at 1

    straight = tmp_path / "straight"
    run_in_process("training", dataset_dir=data, epochs=6, val_interval=1, batch_size=2, image_size=128,
                   roi_size=[128, 128], output_dir=straight)
    uninterrupted = json.loads((straight / "metrics.json").read_text())["history"]
    assert [h["train_loss"] for h in metrics["history"]] == [h["train_loss"] for h in uninterrupted]
    assert [h["val_iou"] for h in metrics["history"]] == [h["val_iou"] for h in uninterrupted]
    weights = torch.load(straight / "models" / "last.pt", weights_only=True)["network"]
    assert all(torch.equal(weights[k], last["network"][k]) for k in weights)


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(Exception) as err:
        run_in_process("training", resume="true", output_dir=tmp_path / "nothing")
    assert "no checkpoint to resume from" in error_chain(err.value)


def test_checkpoint_for_another_network_names_the_mismatch(tmp_path):
    path = tmp_path / "best.pt"
    torch.save(build_network("unet", width=8).state_dict(), path)
    with pytest.raises(RuntimeError, match="does not fit the configured network .* differ in shape"):
        load_network_weights(build_network("unet", width=16), str(path))
    with pytest.raises(RuntimeError, match="are not in the checkpoint"):
        load_network_weights(build_network("segnet", width=8), str(path))
    net = build_network("unet", width=8)
    load_network_weights(net, str(path))  # the right network loads, from a bare state dict or {"network": ...}
    torch.save({"network": net.state_dict(), "optimizer": {}}, tmp_path / "last.pt")
    load_network_weights(build_network("unet", width=8), str(tmp_path / "last.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot read checkpoint .*junk.pt"):
        load_network_weights(net, str(tmp_path / "junk.pt"))


def test_non_finite_loss_stops_naming_epoch_and_iteration(tmp_path):
    rec = RunRecorder(str(tmp_path))
    rec.loss_sum, rec.n = 0.0, 0
    engine = SimpleNamespace(state=SimpleNamespace(output=[{"loss": float("nan")}], epoch=3, iteration=17))
    with pytest.raises(FloatingPointError, match="epoch 3, iteration 17"):
        rec._iteration(engine)


def _cosine_setup(epochs):
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(net.parameters(), lr=0.01)
    return net, opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=1e-4)


@pytest.mark.parametrize("new_epochs", [3, 4, 10])
def test_resume_with_other_epochs_continues_the_cosine_schedule_on_the_new_length(tmp_path, new_epochs):
    import math

    from ignite.engine import Engine

    from pipeline.handlers import Checkpoints

    net, opt, sched = _cosine_setup(4)
    trainer = Engine(lambda engine, batch: None)
    trainer.state.max_epochs, trainer.state.epoch, trainer.state.iteration, trainer.state.epoch_length = 4, 2, 2, 1
    for _ in range(2):
        opt.step()
        sched.step()
    Checkpoints(tmp_path, {"network": net, "optimizer": opt, "lr_scheduler": sched, "trainer": trainer}).last(
        trainer)

    net, opt, sched = _cosine_setup(new_epochs)  # what the bundle builds from --epochs new_epochs
    trainer = Engine(lambda engine, batch: None)
    trainer.state.max_epochs = new_epochs
    Checkpoints(tmp_path, {"network": net, "optimizer": opt, "lr_scheduler": sched, "trainer": trainer},
                resume=True)._load(trainer)
    assert trainer.state.epoch == 2 and trainer.state.max_epochs == new_epochs and sched.T_max == new_epochs

    def closed_form(t):
        return 1e-4 + (0.01 - 1e-4) * (1 + math.cos(math.pi * t / new_epochs)) / 2

    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(2, new_epochs):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([closed_form(t) for t in range(2, new_epochs + 1)])
    assert lrs[-1] == pytest.approx(1e-4)  # ends at the minimum, never rises again


def test_a_write_that_fails_midway_leaves_the_previous_last_checkpoint(tmp_path, monkeypatch):
    from ignite.engine import Engine

    from pipeline.handlers import Checkpoints

    net, opt, sched = _cosine_setup(4)
    trainer = Engine(lambda engine, batch: None)
    trainer.state.max_epochs, trainer.state.epoch, trainer.state.iteration, trainer.state.epoch_length = 4, 1, 1, 1
    ckpt = Checkpoints(tmp_path, {"network": net, "optimizer": opt, "lr_scheduler": sched, "trainer": trainer})
    ckpt.last(trainer)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)

    def killed(obj, f, **kwargs):  # a kill while the next checkpoint is being written
        f.write(b"partial")
        raise KeyboardInterrupt

    trainer.state.epoch, trainer.state.iteration = 2, 2
    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.last(trainer)
    monkeypatch.undo()
    again = torch.load(tmp_path / "last.pt", weights_only=True)
    assert again["trainer"]["iteration"] == saved["trainer"]["iteration"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left behind


def test_best_holds_the_best_epoch_and_last_the_last_through_a_resume(tmp_path):
    """Validation scripted to improve and then worsen: best.pt holds the weights validated at the best epoch,
    last.pt the last epoch's, and a resumed run keeps best.pt until a better score, then replaces it."""
    from conftest import ScriptedValidation

    data = write_ph2(tmp_path / "PH2Dataset", n_cases=6, seed=1)
    run = tmp_path / "run"
    validate = json.loads((ROOT / "configs" / "engine.json").read_text())["validate"]
    def train(epochs, scores, **kw):
        scripted = {"_target_": "conftest.ScriptedValidation", "scores": scores}
        run_in_process("training", dataset_dir=data, epochs=epochs, val_interval=1, batch_size=2, image_size=64,
                       roi_size=[64, 64], width=4, output_dir=run,
                       validate={**validate, "handlers": validate["handlers"] + [scripted]}, **kw)
        return ScriptedValidation.weights

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    weights = train(4, [0.2, 0.6, 0.4, 0.3])
    best, last = (torch.load(run / "models" / f, weights_only=True) for f in ("best.pt", "last.pt"))
    assert same(best, weights[2]) and not same(best, weights[4]) and same(last["network"], weights[4])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best"]["epoch"] == 2 and metrics["best"]["val_iou"] == pytest.approx(0.6)

    weights = train(6, [0.5, 0.55], resume="true")  # epochs 5, 6: worse than 0.6
    best = torch.load(run / "models" / "best.pt", weights_only=True)
    last = torch.load(run / "models" / "last.pt", weights_only=True)
    assert not same(best, weights[1]) and same(last["network"], weights[2])
    assert last["trainer"]["iteration"] == 6 * last["trainer"]["epoch_length"]
    assert json.loads((run / "metrics.json").read_text())["best"]["epoch"] == 2

    weights = train(8, [0.7, 0.65], resume="true")  # epoch 7 better, 8 worse
    best = torch.load(run / "models" / "best.pt", weights_only=True)
    assert same(best, weights[1]) and json.loads((run / "metrics.json").read_text())["best"]["epoch"] == 7


def _augmenting_loader(seed):
    """A training loader as the bundles build one: random crops and affine warps (dictionary transforms drawing
    from inner array transforms' generators) and a weighted sampler with its own generator (LGG's)."""
    import monai
    from monai.data import DataLoader, Dataset

    monai.utils.set_determinism(seed)
    chain = monai.transforms.Compose([
        monai.transforms.RandSpatialCropd(keys="image", roi_size=[8, 8], random_size=False),
        monai.transforms.RandAffined(keys="image", prob=0.5, rotate_range=0.3, translate_range=[2, 2]),
        monai.transforms.RandGaussianNoised(keys="image", prob=0.5)])
    data = [{"image": torch.arange(256.0).reshape(1, 16, 16) * (i + 1)} for i in range(5)]
    sampler = torch.utils.data.WeightedRandomSampler([1.0, 2.0, 3.0, 1.0, 1.0], num_samples=5,
                                                     generator=torch.Generator().manual_seed(seed))
    return DataLoader(Dataset(data, chain), batch_size=2, sampler=sampler, num_workers=0)


def test_random_states_continue_every_stream_of_a_rebuilt_loader():
    from pipeline.handlers import RandomStates

    loader = _augmenting_loader(0)
    list(loader)  # epoch 1
    saved = RandomStates(loader).state_dict()
    epoch_2 = [b["image"] for b in loader]
    assert len(RandomStates(loader)._transforms()) >= 6  # the three dictionary transforms and their inner ones

    fresh = _augmenting_loader(0)  # what a resumed process builds: every stream back at its seed
    restart = [b["image"] for b in fresh]
    assert not all(torch.equal(a, b) for a, b in zip(epoch_2, restart))  # without the states, epoch 1 again
    fresh = _augmenting_loader(0)
    RandomStates(fresh).load_state_dict(saved)
    assert all(torch.equal(a, b) for a, b in zip(epoch_2, [b["image"] for b in fresh]))


def test_a_last_pt_without_random_states_still_resumes_and_says_so(tmp_path, caplog):
    """Checkpoints written before the random streams were saved resume, with the draws restarted (a warning)."""
    from ignite.engine import Engine

    from pipeline.handlers import Checkpoints, RandomStates

    net, opt, sched = _cosine_setup(4)
    trainer = Engine(lambda engine, batch: None)
    trainer.state.max_epochs, trainer.state.epoch, trainer.state.iteration, trainer.state.epoch_length = 4, 2, 2, 1
    Checkpoints(tmp_path, {"network": net, "optimizer": opt, "lr_scheduler": sched, "trainer": trainer}).last(
        trainer)

    trainer = Engine(lambda engine, batch: None)
    trainer.state.max_epochs = 4
    objects = {"network": net, "optimizer": opt, "lr_scheduler": sched, "trainer": trainer,
               "random_states": RandomStates(_augmenting_loader(0))}
    with caplog.at_level("WARNING"):
        Checkpoints(tmp_path, objects, resume=True)._load(trainer)
    assert trainer.state.epoch == 2 and "holds no random states" in caplog.text
