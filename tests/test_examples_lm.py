"""The language-model examples run end to end in smoke mode (BERT4KERAS_SMOKE=1: tiny models,
few steps, little data; the same code path), each in its own process and folder. Slow: every
example on JAX, about a third on PyTorch. The xiangqi move generator they rely on is checked
against known positions (fast)."""

import os
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, EXAMPLES)

# case -> ([(script, arguments), ...] run in order in one folder, text the last one must print)
CASES = {
    "basic_language_model_cpm_lm": ([("basic_language_model_cpm_lm", [])], "common sense (CPM: 北京): '中国的首都是"),
    "basic_language_model_gpt2_ml": ([("basic_language_model_gpt2_ml", [])], "['今天天气不错"),
    "basic_language_model_nezha_gen_gpt": ([("basic_language_model_nezha_gen_gpt", [])], "['今天天气不错"),
    "task_language_model": ([("task_language_model", [])], "final valid perplexity:"),
    "task_conditional_language_model": ([("task_conditional_language_model", [])],
                                        "final: valid perplexity with the true label"),
    "task_language_model_chinese_chess": ([("lm_data", ["chess"]), ("task_language_model_chinese_chess", [])],
                                          "final held-out move accuracy:"),
    "task_image_caption": ([("lm_data", ["caption"]), ("task_image_caption", [])], "final valid caption loss:"),
}
ON_TORCH = ["basic_language_model_gpt2_ml", "task_language_model", "task_conditional_language_model"]


def environment(backend: str) -> dict:
    return {**os.environ, "KERAS_BACKEND": backend, "BERT4KERAS_SMOKE": "1",
            "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}


def run_example(name: str, arguments: list[str], folder, backend: str) -> str:
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, name + ".py"), *arguments], cwd=folder,
                            env=environment(backend), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{name} failed on {backend}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def check(case: str, folder, backend: str) -> None:
    scripts, expected = CASES[case]
    for script, arguments in scripts:
        stdout = run_example(script, arguments, folder, backend)
    assert expected in stdout, f"{scripts[-1][0]} did not print {expected!r}:\n{stdout[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_example_runs_on_jax(case, tmp_path):
    check(case, tmp_path, "jax")


@pytest.mark.slow
@pytest.mark.parametrize("case", ON_TORCH)
def test_example_runs_on_torch(case, tmp_path):
    check(case, tmp_path, "torch")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_web_serving_answers_a_real_request(tmp_path):
    """Start the SimBERT service, wait for its port, ask for synonyms over HTTP, stop it."""
    httpx = pytest.importorskip("httpx")
    port = free_port()
    server = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "basic_simple_web_serving_simbert.py")],
                              cwd=tmp_path, env={**environment("jax"), "BERT4KERAS_PORT": str(port)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 600
        while True:
            assert server.poll() is None, f"the server exited:\n{server.stdout.read()[-3000:]}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "the server did not open its port within 600 s"
                time.sleep(0.5)
        reply = httpx.get(f"http://127.0.0.1:{port}/gen_synonyms", params={"text": "苹果多少钱一斤", "n": 8, "k": 3},
                          timeout=300)
        assert reply.status_code == 200
        answer = reply.json()
        assert answer["code"] == 0 and answer["desc"] == "succeeded", answer
        assert isinstance(answer["data"], list) and 1 <= len(answer["data"]) <= 3, answer
        assert all(isinstance(t, str) for t in answer["data"])
        missing = httpx.get(f"http://127.0.0.1:{port}/gen_synonyms", timeout=60).json()
        assert missing["code"] == 1 and "text" in missing["desc"], missing
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.slow
def test_missing_game_records_are_named_with_a_fix(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, "task_language_model_chinese_chess.py")],
                            cwd=tmp_path, env=environment("jax"), capture_output=True, text=True, timeout=900)
    assert result.returncode != 0, result.stderr[-3000:]
    assert "error:" in result.stderr and "qipu.json" in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr


def perft(board, depth: int) -> int:
    """Number of move sequences of ``depth`` plies (the standard move-generator check)."""
    if depth == 0:
        return 1
    total = 0
    for move in board.create_moves():
        after = board.copy()
        after.move_iccs(move)
        after.next_turn()
        total += perft(after, depth - 1)
    return total


def test_xiangqi_move_counts_from_the_opening():
    from lm_data import ChessBoard

    assert perft(ChessBoard(), 1) == 44
    assert perft(ChessBoard(), 2) == 1920  # the published perft(2) of the xiangqi opening


def test_xiangqi_rules_kings_cannons_and_mate():
    from lm_data import ChessBoard

    facing = ChessBoard("4k4/9/9/9/9/9/9/9/9/4K4 w")
    assert facing.create_moves() == ["e0d0", "e0f0"]  # the kings may not face each other on an open file
    screened = ChessBoard("3k5/9/9/9/9/4c4/9/9/4P4/4K4 w")
    assert screened.in_check(True)  # a cannon attacks over exactly one screen
    assert screened.create_moves() == ["e0f0"]
    mate = ChessBoard("3k5/9/9/9/4rr3/9/9/9/9/4K4 w")  # rooks on e and f, the black king guards d
    assert mate.create_moves() == [] and mate.is_win()
    board = ChessBoard()
    assert board.move_iccs("h2e2") == "h2e2" and board.move_iccs("h9g7") is None  # still red to move
    board.next_turn()
    assert board.move_iccs("H9-G7") == "h9g7"


def test_random_games_are_legal_and_written_in_the_record_format(tmp_path):
    import json

    from lm_data import ChessBoard, chess

    path = chess(str(tmp_path), games=3, max_plies=30)
    for line in open(path, encoding="utf-8"):
        game = json.loads(line)
        assert game["fen"] == "" and game["items"]["棋局结果"] in {"0", "1", "2"}
        board, moves = ChessBoard(), game["iccs"]
        assert len(moves) % 4 == 0 and moves
        for i in range(0, len(moves), 4):
            assert board.move_iccs(moves[i:i + 4]) is not None
            board.next_turn()


def test_perplexity_helpers():
    import numpy as np

    from lm_data import next_token_nll, unigram_perplexity

    probas = np.full((1, 3, 4), 0.25)
    probas[0, 0, 2] = 0.5
    nll, n = next_token_nll(probas, np.array([[1, 2, 0]]))
    assert n == 1 and abs(nll - np.log(2)) < 1e-9  # the padding target is not counted
    assert abs(unigram_perplexity([[1, 1, 1]], [[1]], 3) - 6 / 4) < 1e-9  # counts 1+3 of 6 after add-one
