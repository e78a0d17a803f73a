"""Device placement without a GPU: every model runs a whole sequence on the ``meta`` device, so a
state or constant created on the CPU inside a model (instead of on its parameters' device) fails
here as it would under ``device=cuda``."""
import pytest
import torch

from memrepro.config import compose
from memrepro.run import build

# SMANN reads its mask's values to choose the steps that write memory (SMANN eq. 6): data-dependent
# control flow, which a tensor without data cannot drive.
MODELS = ["ffnn", "rnn", "lstm", "gru", "clstm", "janet", "skip_lstm", "skip_gru", "nc", "nmn", "ntm", "dnc", "stack_rnn"]


@pytest.mark.parametrize("name", MODELS)
def test_a_model_on_the_meta_device_creates_nothing_elsewhere(name):
    task, model, _ = build(compose(["task=extended_recall" if name == "nmn" else "task=copy", f"model={name}", "scale=smoke"]))
    model = model.to("meta")
    batch = task.sample(3, torch.Generator().manual_seed(0)).to("meta")
    state = model.initial_state(3) if hasattr(model, "initial_state") else None
    leaves = [t for t in torch.utils._pytree.tree_leaves(state) if isinstance(t, torch.Tensor)]
    assert all(t.device.type == "meta" for t in leaves)
    outputs = model(batch.inputs)
    outputs = outputs[0] if isinstance(outputs, tuple) else outputs
    assert outputs.device.type == "meta" and outputs.shape[:2] == batch.targets.shape[:2]
