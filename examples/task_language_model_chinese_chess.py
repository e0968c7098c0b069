"""Learning to play Chinese chess (xiangqi) as a language model over game records
(https://kexue.fm/archives/7877): a game is its moves in ICCS notation run together
("h2e2h9g7..."), one token per character; the model learns which move follows a game so far,
and plays by scoring every legal move with it.

Data: game records in the format of https://github.com/bojone/gpt_cchess (`qipu.json`, one
JSON game per line: "iccs", "fen" (empty for the standard opening), "items" with 棋局结果);
the real file is not available offline. `python examples/lm_data.py chess` writes
format-valid sample games of random legal moves, on which the model can learn the notation
but no strategy: format-valid sample data only. The last 10% of the games are held out.
Rules: the original used the `cchess` module for the board. PyPI's cchess (walker8088's
XiangQi library, LGPL) has changed its API since (no dump_board / is_win), so the part needed
here (legal moves in ICCS, check, mate, printing the board) is written in lm_data.ChessBoard.
Model: a BERT (`application='lm'`) over 20 tokens ([PAD], 0-9, a-i) cut from the Chinese vocab
with keep_tokens; with config_path = None a small randomly initialised one.
Run: python examples/lm_data.py chess; python examples/task_language_model_chinese_chess.py [--smoke]
(play against it: `from task_language_model_chinese_chess import chessplayer;
chessplayer.new_game(0)` with 0 for you first, 1 for the machine first).
Result: on held-out positions, how often the model's best legal move is the move played,
against picking a legal move at random; then a few moves of self-play.
"""

import json
import os

import numpy as np

from bert4keras.backend import K, keras
from bert4keras.layers import Loss
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam
from bert4keras.snippets import DataGenerator, sequence_padding
from bert4keras.tokenizers import Tokenizer, load_vocab
from examples_common import SMOKE, build, chinese_vocab, require
from lm_data import FULL_INIT_FEN, ChessBoard

maxlen = 64 if SMOKE else 512
steps_per_epoch = 4 if SMOKE else 200
epochs = 1 if SMOKE else 3
batch_size = 16
learning_rate = 1e-5  # for a pretrained BERT; the random small one uses 1e-3 below
eval_positions = 8 if SMOKE else 200
config_path = None  # e.g. 'chinese_roberta_wwm_ext_L-12_H-768_A-12/bert_config.json'
checkpoint_path = None  # e.g. 'chinese_roberta_wwm_ext_L-12_H-768_A-12/bert_model.ckpt'
dict_path = chinese_vocab()
data_path = os.path.join("datasets", "chess", "qipu.json")


def load_data(filename: str) -> list[tuple[str, int]]:
    """Games from the standard opening: [(ICCS moves, result)], result 2 red won, 1 draw,
    0 black won, -1 not recorded."""
    D = []
    with open(require(filename, "the game records (python examples/lm_data.py chess writes sample ones)"),
              encoding="utf-8") as f:
        for line in f:
            game = json.loads(line)
            if not game["fen"]:
                D.append((game["iccs"], int(game["items"].get("棋局结果", -1))))
    return D


data = load_data(data_path)
split = int(len(data) * 0.9)
train_data, valid_data = data[:split], data[split:]

# 20 tokens: [PAD] and the characters of ICCS, cut from the BERT vocab.
chars = ["[PAD]"] + list("0123456789abcdefghi")
token_dict = dict(zip(chars, range(len(chars))))
tokenizer = Tokenizer(token_dict, token_start=None, token_end=None)
bert_token_dict = load_vocab(dict_path)
keep_tokens = [bert_token_dict[c] for c in chars]


def encode(iccs: str) -> list[int]:
    """[PAD] (id 0) as the start token, then one token per character."""
    return [0] + tokenizer.encode(" ".join(iccs))[0]


class data_generator(DataGenerator):
    """Batches of [token_ids, segment_ids]. A curriculum as in the original: games cut to
    maxlen / 8 tokens at first, then / 4, / 2 and whole as the batch count grows."""

    def __iter__(self, random=False):
        batch_token_ids = []
        for is_end, (text, label) in self.sample(random):
            batch_token_ids.append(encode(text)[:maxlen // self.n])
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids, length=maxlen)
                yield [batch_token_ids, np.zeros_like(batch_token_ids)], None
                batch_token_ids = []
                self.count += 1

    @property
    def n(self):
        if not hasattr(self, "count"):
            self.count = 0
        if self.count < 20000:
            return 8
        if self.count < 40000:
            return 4
        return 2 if self.count < 80000 else 1


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


bert = build(build_transformer_model, config_path, checkpoint_path, len(chars), application="lm",
             keep_tokens=keep_tokens)
output = CrossEntropy(1)([bert.inputs[0], bert.outputs[0]])
model = keras.models.Model(bert.inputs, output)
model.compile(optimizer=Adam(learning_rate if config_path else 1e-3))


def best_move(history: str, moves: list[str]) -> str:
    """The legal move the model finds most probable after ``history``: the sum of the
    log-probabilities of its four characters. The candidates are padded to maxlen tokens and
    a multiple of 64 rows, so that one compiled shape serves every position."""
    length = len(encode(history)) + 4
    token_ids = sequence_padding([encode(history + m) for m in moves] + [[0]] * (-len(moves) % 64), length=maxlen)
    preds = bert.predict([token_ids, np.zeros_like(token_ids)], verbose=0)[:len(moves), length - 5:length - 1]
    preds = np.take_along_axis(preds, token_ids[:len(moves), length - 4:length, None], axis=2)
    preds = np.log(preds + 1e-8)[:, :, 0].sum(axis=1)
    return moves[preds.argmax()]


class ChessPlayer:
    """Interactive play against the model (red pieces in red, black ones in green)."""

    def print_board(self):
        for line in self.board.dump_board():
            for c in "兵炮车马相仕帅":
                line = line.replace(c, f"\033[1;31;40m{c}\033[0m")
            for c in "卒砲砗碼象士将":
                line = line.replace(c, f"\033[1;32;40m{c}\033[0m")
            print(line)

    def movable_steps(self) -> list[str]:
        return self.board.create_moves()

    def human_input(self) -> str | None:
        while True:
            try:
                iccs = input("your move in ICCS (e.g. h2e2): ").strip().lower()
            except (KeyboardInterrupt, EOFError):
                return None
            if self.board.move_iccs(iccs) is not None:
                return iccs
            print(f"{iccs!r} is not a legal move here; legal: {' '.join(self.movable_steps())}")

    def record(self, iccs: str):
        """Add a played move to the history and pass the turn."""
        self.history += iccs
        self.board.next_turn()
        self.print_board()

    def machine_move(self) -> str:
        iccs = best_move(self.history, self.movable_steps())
        self.board.move_iccs(iccs)
        self.record(iccs)
        return iccs

    def new_game(self, current: int = 0):
        """Play a game: current 0 = you move first (red), 1 = the machine does."""
        self.board, self.history = ChessBoard(FULL_INIT_FEN), ""
        self.print_board()
        if current == 0:
            iccs = self.human_input()
            if iccs is None:
                return
            self.record(iccs)
        while True:
            self.machine_move()
            if self.board.is_win():
                print("the machine wins")
                break
            iccs = self.human_input()
            if iccs is None:
                return
            self.record(iccs)
            if self.board.is_win():
                print("you win")
                break

    def self_play(self, plies: int) -> str:
        """The model plays both sides for ``plies`` moves; returns the moves."""
        self.board, self.history = ChessBoard(FULL_INIT_FEN), ""
        for _ in range(plies):
            if not self.movable_steps():
                break
            self.machine_move()
        return self.history


chessplayer = ChessPlayer()


def move_accuracy(games: list[tuple[str, int]], positions: int, seed: int = 0) -> tuple[float, float]:
    """At random positions of the held-out games: how often the model's best legal move is the
    move that was played, and the same for a uniformly random legal move (the baseline)."""
    rng = np.random.default_rng(seed)
    hits, chance, n = 0, 0.0, 0
    for _ in range(positions):
        iccs, _ = games[int(rng.integers(len(games)))]
        moves = [iccs[i:i + 4] for i in range(0, len(iccs) - 3, 4)]
        if not moves:
            continue
        ply = int(rng.integers(min(len(moves), (maxlen - 5) // 4)))
        board = ChessBoard(FULL_INIT_FEN)
        for move in moves[:ply]:
            board.move_iccs(move)
            board.next_turn()
        legal = board.create_moves()
        if moves[ply] not in legal:
            continue  # a record this board cannot replay
        hits += best_move(iccs[:4 * ply], legal) == moves[ply]
        chance, n = chance + 1 / len(legal), n + 1
    return hits / max(n, 1), chance / max(n, 1)


class Evaluator(keras.callbacks.Callback):
    """Save the weights after every epoch and show the held-out move accuracy."""

    def on_epoch_end(self, epoch, logs=None):
        model.save_weights("best_model_chess.weights.h5")
        accuracy, chance = move_accuracy(valid_data, eval_positions)
        print(f"held-out move accuracy {accuracy:.3f} (random legal move {chance:.3f})")


if __name__ == "__main__":
    train_generator = data_generator(train_data, batch_size)
    model.fit(train_generator.forfit(), steps_per_epoch=steps_per_epoch, epochs=epochs, callbacks=[Evaluator()],
              verbose=2)
    accuracy, chance = move_accuracy(valid_data, eval_positions)
    print(f"final held-out move accuracy: {accuracy:.3f} (random legal move: {chance:.3f})")
    print(f"self-play: {chessplayer.self_play(4)}")
