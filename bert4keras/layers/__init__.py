"""bert4keras layers (the public ``bert4keras.layers`` namespace).

Also re-exports ``keras.layers`` so ``from bert4keras.layers import *`` gives
``Dense``, ``Lambda``, ... as it did in bert4keras.
"""

from keras.layers import *  # noqa: F401,F403

from bert4keras.layers.attention import MultiHeadAttention  # noqa: F401
from bert4keras.layers.core import (  # noqa: F401
    Add,
    BiasAdd,
    CausalMask,
    Dropout,
    Embedding,
    FeedForward,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    Layer,
    LayerNormalization,
    PositionEmbedding,
    ScaleOffset,
    TokenSlice,
    UniLMMask,
)
from bert4keras.layers.crf import ConditionalRandomField, MaximumEntropyMarkovModel  # noqa: F401
from bert4keras.layers.global_pointer import EfficientGlobalPointer, GlobalPointer  # noqa: F401
from bert4keras.layers.initializers import (  # noqa: F401
    DeferrableInitializer,
    TruncatedNormal,
    deferred_initialization,
)
from bert4keras.layers.gau import DepthScaledTruncatedNormal, GatedAttentionUnit  # noqa: F401
from bert4keras.layers.loss import Loss  # noqa: F401
from bert4keras.layers.merging import BatchConcat, BatchSplit, Concatenate1D, integerize_shape  # noqa: F401
from bert4keras.layers.positions import (  # noqa: F401
    RelativePositionEmbedding,
    SinusoidalPositionEmbedding,
)
from bert4keras.layers.t5 import RelativePositionEmbeddingT5  # noqa: F401
from bert4keras.layers.talking_heads import HeadMixing, TalkingHeadsAttention  # noqa: F401
from bert4keras.layers.dgcnn import DilatedGatedConv1D  # noqa: F401

# The model class and the optimizers a saved model may hold are registered with keras.saving
# on import too, so ``import bert4keras.layers`` is all a process needs before
# ``keras.models.load_model``.
from bert4keras import optimizers as _optimizers  # noqa: E402,F401
from bert4keras.models.keras_model import TransformerModel as _TransformerModel  # noqa: E402,F401

# Every layer above is registered with keras.saving (package "bert4keras"), so
# keras.models.load_model needs no custom_objects; this dict is kept for 0.11.5
# scripts that still pass ``custom_objects=custom_objects``.
custom_objects = {
    name: obj for name, obj in dict(globals()).items()
    if isinstance(obj, type) and obj.__module__.startswith("bert4keras.layers.")
}
