"""The end-of-fit report evaluates on the device the model was trained on, with the training precision."""

from __future__ import annotations

import json

from lightning.pytorch.strategies import SingleDeviceStrategy

import heritage_seg.callbacks as callbacks
from heritage_seg.train import train
from tests.conftest import compose_config, tiny_train_overrides


def test_the_report_runs_before_lightning_moves_the_model_off_the_training_device(tmp_path, sample_root,
                                                                                 monkeypatch):
    """Lightning's strategy teardown moves the module to the CPU before `on_fit_end`; a report there would run
    on the CPU after every GPU run. Checked on the CPU by the order of events and the recorded device."""
    events = []
    evaluate, teardown = callbacks.run_evaluation, SingleDeviceStrategy.teardown

    def spy_evaluate(logits, batches, num_classes, ignore_index, transforms, device, **kwargs):
        events.append(("evaluate", str(device)))
        return evaluate(logits, batches, num_classes, ignore_index, transforms, device, **kwargs)

    def spy_teardown(strategy):
        events.append(("teardown", str(strategy.root_device)))
        return teardown(strategy)

    monkeypatch.setattr(callbacks, "run_evaluation", spy_evaluate)
    monkeypatch.setattr(SingleDeviceStrategy, "teardown", spy_teardown)
    train(compose_config(tiny_train_overrides(tmp_path, sample_root)))
    assert [e[0] for e in events] == ["evaluate", "evaluate", "teardown"]
    assert {e[1] for e in events} == {"cpu"}  # the trainer's root device
    for name in ("metrics.json", "metrics_tta.json"):
        metrics = json.loads((tmp_path / name).read_text())
        assert (metrics["device"], metrics["precision"]) == ("cpu", "32-true")
        assert metrics["seconds"] > 0
