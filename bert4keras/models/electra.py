"""ELECTRA (arXiv:2003.10555): the discriminator, and generator checkpoints through ``with_mlm``."""

from __future__ import annotations

from bert4keras.backend import get_activation
from bert4keras.layers import Dense
from bert4keras.models.bert import BERT, google_to_hf_name

_HEAD_NAMES = {
    "MLM-Dense": ["generator_predictions/dense/kernel", "generator_predictions/dense/bias"],
    "MLM-Norm": ["generator_predictions/LayerNorm/beta", "generator_predictions/LayerNorm/gamma"],
    "MLM-Bias": ["generator_predictions/output_bias"],
    "Discriminator-Dense": ["discriminator_predictions/dense/kernel",
                            "discriminator_predictions/dense/bias"],
    "Discriminator-Prediction": ["discriminator_predictions/dense_1/kernel",
                                 "discriminator_predictions/dense_1/bias"],
}
_HF_SPECIAL = {
    "generator_predictions/output_bias": ("generator_lm_head.bias", False),
    "discriminator_predictions/dense_1/kernel":
        ("discriminator_predictions.dense_prediction.weight", True),
    "discriminator_predictions/dense_1/bias":
        ("discriminator_predictions.dense_prediction.bias", False),
}


class ELECTRA(BERT):
    """BERT's encoder under ``electra/`` names, with ELECTRA's heads.

    ``with_discriminator``: replaced-token-detection probabilities, shape (b, n, 1)
    (True means sigmoid, or give an activation such as 'linear' for logits).
    ``with_mlm``: the generator's MLM head (``generator_predictions``, tied embeddings),
    for generator checkpoints. ELECTRA has no pooler, so ``with_pool``/``with_nsp``
    are rejected.
    """

    def __init__(self, max_position: int, with_discriminator=False, **kwargs):
        super().__init__(max_position, **kwargs)
        self.reject_options(with_pool=self.with_pool, with_nsp=self.with_nsp)
        self.with_discriminator = with_discriminator

    def apply_final_layers(self, inputs):
        outputs = []
        if self.with_discriminator:
            activation = "sigmoid" if self.with_discriminator is True else self.with_discriminator
            x = self.apply(inputs=inputs, layer=Dense, units=self.hidden_size,
                           activation=get_activation(self.hidden_act),
                           kernel_initializer=self.initializer, name="Discriminator-Dense")
            outputs.append(self.apply(inputs=x, layer=Dense, units=1, activation=activation,
                                      kernel_initializer=self.initializer,
                                      name="Discriminator-Prediction"))
        if self.with_mlm:
            outputs.append(super().apply_final_layers(inputs))
        if not outputs:
            return inputs
        return outputs[0] if len(outputs) == 1 else outputs

    def load_variable(self, checkpoint, name):
        value = checkpoint.get(name)
        if name in ("electra/embeddings/word_embeddings", "generator_predictions/output_bias"):
            return self.load_embeddings(value)
        return value

    def variable_mapping(self):
        mapping = {k: [n.replace("bert/", "electra/", 1) for n in names]
                   for k, names in super().variable_mapping().items()
                   if k not in ("Pooler-Dense", "NSP-Proba")}
        mapping["Embedding-Mapping"] = ["electra/embeddings_project/kernel",
                                        "electra/embeddings_project/bias"]
        mapping.update(_HEAD_NAMES)
        return mapping

    hf_base_prefixes = ("electra.",)
    hf_tied_names = {"generator_lm_head.weight": "electra/embeddings/word_embeddings"}

    def hf_variable_name(self, name: str) -> tuple[str, bool]:
        """Google name -> HF ``ElectraForPreTraining``/``ElectraForMaskedLM`` name."""
        return _HF_SPECIAL.get(name) or google_to_hf_name(name)
