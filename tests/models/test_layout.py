"""The layout rule for model files: a registered model's forward pass is read in at most
two model files (its own and its family base's; the block kit in models/base.py aside),
and at most two model classes stand between it and ``Transformer``."""

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest

from bert4keras.models import MODELS, GAU_alpha, build_transformer_model

TOOL = Path(__file__).resolve().parents[2] / "tools" / "forward_pass_files.py"
KIT = "bert4keras.models.base"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("forward_pass_files", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_pass_spans_at_most_two_files(tool, name):
    [(_, cls, files, _, bases)] = tool.table({name: MODELS[name]}, KIT)
    own = f"bert4keras/models/{MODELS[name].__module__.rsplit('.', 1)[-1]}.py"
    assert any(f.startswith(own) for f in files), f"{cls}: its own file {own} is not in {files}"
    assert len(files) <= 2, f"{cls}: forward pass spread over {files}"
    assert len(bases) <= 2, f"{cls}: model bases {bases} between it and Transformer"


def test_the_tool_follows_self_super_and_explicit_base_calls(tool):
    """A subclass defined here adds this file to GAU-α's two, through each kind of call."""

    class Deeper(GAU_alpha):
        def apply_final_layers(self, inputs):
            return self.heads(super().apply_final_layers(inputs))

        def heads(self, x):
            return GAU_alpha.apply_norm(self, x, "Extra-Norm")

    [(_, _, files, kit, bases)] = tool.table({"deeper": Deeper}, KIT)
    assert files == ["bert4keras/models/gau.py", "bert4keras/models/roformer.py",
                     "tests/models/test_layout.py"]
    assert bases == ["GAU_alpha", "RoFormerV2", "BERT"]
    assert {"apply", "attention_inputs", "dropout_add"} <= set(kit)


def test_the_worked_example_of_adding_a_model_builds_and_runs():
    """docs/adding-a-model.md's example is a working model: it builds through
    ``build_transformer_model`` and its output depends on every token."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "adding-a-model.md").read_text()
    source = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(source, "docs/adding-a-model.md", "exec"), namespace)
    model = build_transformer_model(model=namespace["MyModel"], vocab_size=30, hidden_size=8,
                                    num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=16)
    assert [layer for layer in model.layers if layer.name == "Transformer-1-FeedForward"]
    ids = np.array([[3, 4, 5], [3, 4, 6]])
    out = keras.ops.convert_to_numpy(model([ids]))
    assert out.shape == (2, 3, 8)
    assert np.abs(out[0, 0] - out[1, 0]).max() > 1e-6  # attention reached the last token
