"""Image captioning with BERT (https://kexue.fm/archives/7124): an image encoder's pooled
features condition every LayerNormalization of a BERT language model (conditional
LayerNorm), which then writes the caption; beam search decodes it.

Data: COCO captions (captions_train2014.json / captions_val2014.json with the images in
train2014/ and val2014/ under data_dir); not available offline. `python examples/lm_data.py
caption` writes format-valid sample data: white images with one coloured shape, as .npy
arrays, three captions each: format-valid sample data only. Images are read with numpy
(.npy) or, for .jpg/.png, with Pillow when it is installed (the original used cv2, which this
environment does not have); they are padded to a white square and resized by nearest
neighbour.
Model: MobileNetV2 from keras.applications with weights=None (random init: nothing may be
downloaded here; pass weights='imagenet' where you can) + the real all-MiniLM-L6-v2 weights
(English uncased BERT, 6 layers, hidden 384, vocab reduced with keep_tokens) as the language
model, in place of the original's uncased BERT-base (MiniLM ships without an MLM head, so
the output layer starts random: `ignore_invalid_weights=True`).
Decoding: 0.11.5's AutoCaption AutoRegressiveDecoder with `beam_search`. The cached engine
(`cached_beam_search`) does not support conditional LayerNorm, so this example keeps the
uncached decoder.
Run: python examples/lm_data.py caption; python examples/task_image_caption.py [--smoke]
Result: validation caption loss, and predicted captions next to their references.
"""

import json
import os

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.layers import Loss
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import AutoRegressiveDecoder, DataGenerator, is_string, sequence_padding
from bert4keras.tokenizers import Tokenizer, load_vocab
from examples_common import SMOKE, build, fail, minilm_dir, require

maxlen = 24 if SMOKE else 64
batch_size = 8 if SMOKE else 32
steps_per_epoch = 2 if SMOKE else 100
epochs = 1 if SMOKE else 5
img_size = 32 if SMOKE else 299
image_alpha = 0.35 if SMOKE else 1.0  # MobileNetV2's width multiplier
learning_rate = 1e-4
model_dir = minilm_dir()
config_path = os.path.join(model_dir, "config.json")
checkpoint_path = os.path.join(model_dir, "model.safetensors")
dict_path = os.path.join(model_dir, "vocab.txt")
data_dir = os.path.join("datasets", "caption")  # COCO layout; python examples/lm_data.py caption writes sample data

# The vocab reduced to the tokens the tokenizer can produce, the special tokens first.
token_dict, keep_tokens = load_vocab(dict_path=dict_path, simplified=True,
                                     startswith=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
tokenizer = Tokenizer(token_dict, do_lower_case=True)


def read_caption(f: str, image_dir: str) -> list[dict]:
    """COCO caption annotations -> [{'image_id': file name, 'caption': [...], 'url': ..., 'path': ...}]."""
    with open(require(f, "the COCO caption file (python examples/lm_data.py caption writes sample data)"),
              encoding="utf-8") as reader:
        data = json.load(reader)
    images = {}
    for img in data["images"]:
        images[img["id"]] = {"image_id": img["file_name"], "caption": [], "url": img["coco_url"],
                             "path": os.path.join(image_dir, img["file_name"])}
    for caption in data["annotations"]:
        images[caption["image_id"]]["caption"].append(caption["caption"])
    return list(images.values())


def read_image(f: str) -> np.ndarray:
    """An RGB image as float32 (img_size, img_size, 3): padded with white to a square, then resized."""
    if f.endswith(".npy"):
        img = np.load(require(f, "the image"))
    else:
        try:
            from PIL import Image
        except ImportError:
            fail(f"reading {f!r} needs Pillow", "pip install pillow, or save the images as .npy arrays (H, W, 3)")
        img = np.asarray(Image.open(require(f, "the image")).convert("RGB"))
    height, width = img.shape[:2]
    side = max(height, width)
    square = np.full((side, side, 3), 255, img.dtype)
    top, left = (side - height) // 2, (side - width) // 2
    square[top:top + height, left:left + width] = img[..., :3]
    index = np.arange(img_size) * side // img_size
    return square[index][:, index].astype("float32")


MobileNetV2 = keras.applications.mobilenet_v2.MobileNetV2
preprocess_input = keras.applications.mobilenet_v2.preprocess_input
image_model = MobileNetV2(include_top=False, pooling="avg", weights=None, input_shape=(img_size, img_size, 3),
                          alpha=image_alpha)


class data_generator(DataGenerator):
    """Batches of [token_ids, segment_ids, images] (one of each image's captions at random)."""

    def __iter__(self, random=False):
        batch_images, batch_token_ids, batch_segment_ids = [], [], []
        for is_end, D in self.sample(random):
            img = D["path"]
            caption = np.random.choice(D["caption"])
            token_ids, segment_ids = tokenizer.encode(caption, maxlen=maxlen)
            batch_images.append(read_image(img))
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_images = preprocess_input(np.array(batch_images))
                batch_token_ids = sequence_padding(batch_token_ids, length=maxlen)
                batch_segment_ids = sequence_padding(batch_segment_ids, length=maxlen)
                yield [batch_token_ids, batch_segment_ids, batch_images], None
                batch_images, batch_token_ids, batch_segment_ids = [], [], []


train_data = read_caption(os.path.join(data_dir, "annotations", "captions_train2014.json"),
                          os.path.join(data_dir, "train2014"))
valid_data = read_caption(os.path.join(data_dir, "annotations", "captions_val2014.json"),
                          os.path.join(data_dir, "val2014"))


class CrossEntropy(Loss):
    """Next-token cross entropy, padding masked out."""

    def compute_loss(self, inputs, mask=None):
        y_true, y_pred = inputs
        if mask[1] is None:
            y_mask = 1.0
        else:
            y_mask = K.cast(mask[1], K.floatx())[:, 1:]
        y_true = y_true[:, 1:]  # the targets: each token's successor
        y_pred = y_pred[:, :-1]  # predictions, shifted by one
        loss = K.sparse_categorical_crossentropy(y_true, y_pred)
        return K.sum(loss * y_mask) / K.sum(y_mask)


bert = build(build_transformer_model, config_path, checkpoint_path, len(keep_tokens), application="lm",
             keep_tokens=keep_tokens, layer_norm_cond=image_model.output, layer_norm_cond_hidden_size=128,
             layer_norm_cond_hidden_act="swish", additional_input_layers=image_model.input,
             ignore_invalid_weights=True)  # MiniLM ships without the MLM head: it starts random
output = CrossEntropy(1)([bert.inputs[0], bert.outputs[0]])
model = keras.models.Model(bert.inputs, output)
model.compile(optimizer=Adam(learning_rate))


class AutoCaption(AutoRegressiveDecoder):
    """Image-to-text decoder."""

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        image = inputs[0]
        token_ids = output_ids
        segment_ids = np.zeros_like(token_ids)
        return self.last_token(model).predict([token_ids, segment_ids, image])

    def generate(self, image, topk: int = 1) -> str:
        if is_string(image):
            image = read_image(image)
        image = preprocess_input(image)
        output_ids = self.beam_search([image], topk=topk)
        return tokenizer.decode(output_ids)


autocaption = AutoCaption(start_id=tokenizer._token_start_id, end_id=tokenizer._token_end_id, maxlen=maxlen)


def just_show():
    for i in np.random.choice(len(valid_data), 2):
        D = valid_data[i]
        print(f"image_id: {D['image_id']}\nurl: {D['url']}")
        print(f"predict: {autocaption.generate(D['path'])}")
        print(f"references: {D['caption']}\n")


class Evaluator(keras.callbacks.Callback):
    """Keep the weights with the lowest training loss; show the validation loss and two captions."""

    def __init__(self):
        super().__init__()
        self.lowest = 1e10

    def on_epoch_end(self, epoch, logs=None):
        if logs["loss"] <= self.lowest:
            self.lowest = logs["loss"]
            model.save_weights("best_model_caption.weights.h5")
        just_show()


if __name__ == "__main__":
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=steps_per_epoch, epochs=epochs, callbacks=[Evaluator()],
              verbose=2)
    model.load_weights("best_model_caption.weights.h5")
    valid_generator = data_generator(valid_data, batch_size)
    valid_loss = model.evaluate(valid_generator.forfit(), steps=len(valid_generator), verbose=0,
                                return_dict=True)["loss"]
    print(f"final valid caption loss: {valid_loss:.4f} (uniform over the vocab: {np.log(len(keep_tokens)):.4f})")
