"""``application='lm'`` and ``'unilm'``: which outputs may depend on which tokens, for the
encoders bert4keras allowed, and for a user's own model combined with the mask mixins."""

import keras
import numpy as np
import pytest
from harness import SMALL_CONFIG, run

from bert4keras.layers import Embedding, MultiHeadAttention
from bert4keras.models import (
    BERT, LM_Mask, MODELS, Transformer, UniLM_Mask, build_transformer_model,
)

VOCAB, LENGTH, SPLIT = 30, 10, 5  # segment 0 = positions [0, SPLIT), segment 1 = the rest
CONFIG = {**SMALL_CONFIG, "vocab_size": VOCAB}
ENCODERS = ["bert", "albert", "albert_unshared", "nezha", "roformer", "roformer_v2", "gau_alpha"]
"""Every encoder bert4keras 0.11.5 allowed as application='lm' or 'unilm'."""
REJECTED = ["electra", "t5", "t5.1.1"]
"""Models bert4keras 0.11.5 refused as application='lm'."""


def test_the_models_named_here_are_registered():
    """A renamed registry key fails here instead of silently dropping a model's tests."""
    assert [m for m in ENCODERS + REJECTED if m not in MODELS] == []


def tokens_and_segments():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCAB, (1, LENGTH)).astype("int32")
    segments = (np.arange(LENGTH) >= SPLIT).astype("int32")[None]
    return tokens, segments


def changed(tokens, start, stop=None):
    """``tokens`` with positions ``start:stop`` replaced by other non-padding ids."""
    out = tokens.copy()
    out[0, start:stop] = (out[0, start:stop] % (VOCAB - 1)) + 1
    assert (out != tokens).any()
    return out


def outputs(model, tokens, segments):
    return run(model, [tokens, segments])


def assert_independent(model, tokens, segments, change, keep):
    """Positions ``keep`` do not move when the positions ``change`` get other tokens,
    and the changed positions themselves do (the check is not vacuous)."""
    before = outputs(model, tokens, segments)
    after = outputs(model, changed(tokens, change.start, change.stop), segments)
    np.testing.assert_allclose(after[:, keep], before[:, keep], atol=1e-5)
    assert not np.allclose(after[:, change], before[:, change], atol=1e-4)


def assert_dependent(model, tokens, segments, change, position):
    before = outputs(model, tokens, segments)
    after = outputs(model, changed(tokens, change.start, change.stop), segments)
    assert np.abs(after[:, position] - before[:, position]).max() > 1e-6  # small random weights


@pytest.mark.parametrize("name", ENCODERS)
def test_lm_position_ignores_later_tokens(name):
    model = build_transformer_model(model=name, application="lm", with_mlm="linear", **CONFIG)
    tokens, segments = tokens_and_segments()
    for t in (0, 3, LENGTH - 2):
        assert_independent(model, tokens, segments, slice(t + 1, None), slice(0, t + 1))


@pytest.mark.parametrize("name", ENCODERS)
def test_unilm_source_is_bidirectional_and_target_causal(name):
    model = build_transformer_model(model=name, application="unilm", with_mlm="linear", **CONFIG)
    tokens, segments = tokens_and_segments()
    # segment 0 never sees segment 1 ...
    assert_independent(model, tokens, segments, slice(SPLIT, None), slice(0, SPLIT))
    # ... but sees all of itself, later positions included,
    assert_dependent(model, tokens, segments, slice(SPLIT - 1, SPLIT), 0)
    # segment 1 is causal and sees all of segment 0.
    for j in (SPLIT, LENGTH - 2):
        assert_independent(model, tokens, segments, slice(j + 1, None), slice(0, j + 1))
    assert_dependent(model, tokens, segments, slice(0, 1), LENGTH - 1)


class TinyEncoder(Transformer):
    """A user's own model: token + segment embeddings and attention blocks that take the
    attention bias from ``compute_attention_bias`` (none by default)."""

    def get_inputs(self):
        return [self.input_layer("Input-Token"), self.input_layer("Input-Segment")]

    def apply_embeddings(self, inputs):
        x, s = inputs
        x = self.apply(inputs=x, layer=Embedding, input_dim=self.vocab_size,
                       output_dim=self.hidden_size, mask_zero=True, name="Embedding-Token")
        s = self.apply(inputs=s, layer=Embedding, input_dim=2, output_dim=self.hidden_size,
                       name="Embedding-Segment")
        return self.apply(inputs=[x, s], layer=keras.layers.Add, name="Embedding-Sum")

    def apply_main_layers(self, inputs, index):
        bias = self.compute_attention_bias(index)
        x = [inputs, inputs, inputs] + ([] if bias is None else [bias])
        return self.apply(inputs=x, layer=MultiHeadAttention, arguments={"a_bias": bias is not None},
                          heads=self.num_attention_heads, head_size=self.attention_head_size,
                          name=f"Block-{index}")

    def apply_final_layers(self, inputs):
        return inputs


def test_user_model_combines_with_the_mask_mixins():
    tokens, segments = tokens_and_segments()
    # directly, as mixins in the user's class ...
    class TinyLM(LM_Mask, TinyEncoder):
        pass

    class TinyUniLM(UniLM_Mask, TinyEncoder):
        pass

    lm = build_transformer_model(model=TinyLM, **CONFIG)
    unilm = build_transformer_model(model=TinyUniLM, **CONFIG)
    # ... and through the application argument.
    lm_app = build_transformer_model(model=TinyEncoder, application="lm", **CONFIG)
    encoder = build_transformer_model(model=TinyEncoder, **CONFIG)
    for model in (lm, lm_app):
        assert_independent(model, tokens, segments, slice(4, None), slice(0, 4))
    assert_independent(unilm, tokens, segments, slice(SPLIT, None), slice(0, SPLIT))
    assert_independent(unilm, tokens, segments, slice(SPLIT + 2, None), slice(0, SPLIT + 2))
    assert_dependent(encoder, tokens, segments, slice(LENGTH - 1, None), 0)  # no mask: bidirectional
    # A mixin also composes with a library model subclass.
    class CausalBERT(LM_Mask, BERT):
        pass

    causal = build_transformer_model(model=CausalBERT, **CONFIG)
    assert_independent(causal, tokens, segments, slice(3, None), slice(0, 3))


def test_applications_rejected_where_bert4keras_rejected_them():
    with pytest.raises(ValueError, match="unknown application"):
        build_transformer_model(model="bert", application="seq2seq", **CONFIG)
    for name in REJECTED:
        with pytest.raises(ValueError, match=f'"{name}" model can not be used as "lm"'):
            build_transformer_model(model=name, application="lm", **CONFIG)
