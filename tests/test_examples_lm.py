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
}
ON_TORCH = ["basic_language_model_gpt2_ml"]


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
