"""The HTTP service (`python -m bert4keras serve`): a real server process on 127.0.0.1, a real client.

MiniLM serves /embed (200 concurrent requests equal the in-process embeddings, bad inputs are
4xx); a tiny classifier saved the way `train` saves serves /predict, the 429 path and SIGTERM
(last: it stops that server); a tiny CRF NER model serves /ner and a tiny BERT language model
/generate (plain and streamed); 0.11.5's `WebServing` answers GET and POST.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
WORDS = ("the cat sat on a mat while rain fell over quiet hills and people sang old songs "
         "about rivers trains coffee stars music winter light").split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m bert4keras serve`` in a child process; ``url`` waits until /health says 200."""

    def __init__(self, model_dir: str, log_path: str, *options: str):
        self.port = free_port()
        # One intra-op thread: the server, the client and this process share the CPU, and an
        # oversubscribed OpenMP pool (PyTorch) stalls for seconds per forward pass.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
                   OMP_NUM_THREADS="1")
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bert4keras", "serve", model_dir, "--port", str(self.port), *options],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self._ready = False

    @property
    def url(self) -> str:
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 900
        while not self._ready:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{open(self.log_path).read()[-3000:]}")
            try:
                self._ready = httpx.get(base + "/health", timeout=2).status_code == 200
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy after 900s:\n{open(self.log_path).read()[-3000:]}")
            time.sleep(0.2)
        return base

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(1, 20))) + f" number {i}" for i in range(n)]


async def post_all(url: str, bodies: list[dict], headers: dict | None = None) -> list:
    """POST every body at once (one connection each); a response or the transport exception."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=900, limits=limits, headers=headers) as client:
        return await asyncio.gather(*(client.post(url, json=b) for b in bodies), return_exceptions=True)


# --------------------------------------------------------------------------- MiniLM /embed


@pytest.fixture(scope="module")
def ner_dir(tmp_path_factory):
    from test_cli import make_ner_dir

    return make_ner_dir(tmp_path_factory.mktemp("ner"), "crf", seed=4)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    from test_cli import make_encoder_dir

    return make_encoder_dir(tmp_path_factory.mktemp("lm"), application="lm", seed=5)


@pytest.fixture(scope="module")
def servers(minilm_dir, classifier_dir, ner_dir, lm_dir, tmp_path_factory):
    """The servers start at once (each test waits for its own): MiniLM for /embed, the tiny
    classifier for /predict, 429 (it holds requests 1.5 s, at most 12) and SIGTERM (the last test),
    the tiny NER model for /ner and the tiny language model for /generate."""
    logs = tmp_path_factory.mktemp("serve")
    started = {
        "ner": Server(ner_dir, str(logs / "ner.log"), "--buckets", "16", "--max-batch-size", "4"),
        "generate": Server(lm_dir, str(logs / "generate.log"), "--task", "generate", "--max-new-tokens", "12"),
        "minilm": Server(minilm_dir, str(logs / "minilm.log"), "--max-length", "32", "--buckets", "32",
                         "--max-batch-size", "8", "--max-texts", "64", "--max-request-bytes", "200000",
                         "--api-key", API_KEY),
        "classifier": Server(classifier_dir, str(logs / "classifier.log"), "--max-queue", "12",
                             "--max-wait-ms", "1500", "--max-batch-size", "16", "--buckets", "8"),
    }
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def minilm_server(servers):
    return servers["minilm"]


@pytest.fixture(scope="module")
def classifier_server(servers):
    return servers["classifier"]


@pytest.fixture(scope="module")
def minilm_reference(minilm_dir):
    """Mean-pooled, L2-normalised MiniLM embeddings computed in this process, text -> vector."""
    from bert4keras.cli import find_model_files
    from bert4keras.models import build_transformer_model
    from bert4keras.snippets import sequence_padding
    from bert4keras.tokenizers import Tokenizer

    config, checkpoint, vocab = find_model_files(minilm_dir)
    model = build_transformer_model(config, checkpoint)
    tokenizer = Tokenizer(vocab, do_lower_case=True)
    texts = sentences(40) + [" ".join(WORDS * 3)]
    ids, segments = zip(*(tokenizer.encode(t, maxlen=32) for t in texts))
    output = np.asarray(model.predict_on_batch([sequence_padding(ids, 32), sequence_padding(segments, 32)]))
    vectors = np.stack([output[i, : len(x)].mean(0) for i, x in enumerate(ids)])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return dict(zip(texts, vectors))


def test_embed_200_concurrent_requests_match_in_process(minilm_server, minilm_reference):
    texts = list(minilm_reference)[:40]
    rng = np.random.default_rng(1)
    picks = [list(rng.choice(len(texts), size=rng.integers(1, 4), replace=False)) for _ in range(200)]
    bodies = [{"texts": [texts[i] for i in p]} for p in picks]
    responses = asyncio.run(post_all(minilm_server.url + "/embed", bodies, AUTH))
    errors = [r if isinstance(r, Exception) else (r.status_code, r.text[:200])
              for r in responses if isinstance(r, Exception) or r.status_code != 200]
    assert not errors, errors[:3]
    for body, response in zip(bodies, responses):
        got = np.array(response.json()["embeddings"])
        want = np.stack([minilm_reference[t] for t in body["texts"]])
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)
    metrics = httpx.get(minilm_server.url + "/metrics", headers=AUTH, timeout=120).text
    batches = float(next(line.split()[-1] for line in metrics.splitlines()
                         if line.startswith("bert4keras_batch_size_count")))
    assert batches < sum(len(b["texts"]) for b in bodies), "concurrent texts were never batched together"
    assert 'bert4keras_requests_total{route="/embed",code="200"}' in metrics


def test_health_info_tokenize_and_openai_route(minilm_server, minilm_reference):
    url = minilm_server.url
    assert httpx.get(url + "/health", timeout=120).json() == {"status": "ok"}  # no key needed for the probe
    info = httpx.get(url + "/info", headers=AUTH, timeout=120).json()
    assert info["task"] == "embed" and info["max_length"] == 32
    assert info["backend"] == os.environ.get("KERAS_BACKEND", "jax") and info["version"]

    text = "Hello, World! Serving works."
    tokens = httpx.post(url + "/tokenize", json={"texts": [text]}, headers=AUTH, timeout=120).json()["tokens"][0]
    assert tokens["tokens"][0] == "[CLS]" and tokens["tokens"][1] == "hello"
    assert len(tokens["ids"]) == len(tokens["tokens"]) == len(tokens["offsets"])
    start, end = tokens["offsets"][3]
    assert text[start:end].lower() == tokens["tokens"][3]

    first = list(minilm_reference)[0]
    answer = httpx.post(url + "/v1/embeddings", json={"input": first, "model": "m"}, headers=AUTH, timeout=120).json()
    assert answer["object"] == "list" and answer["data"][0]["index"] == 0
    np.testing.assert_allclose(answer["data"][0]["embedding"], minilm_reference[first], atol=1e-5)
    assert answer["usage"]["prompt_tokens"] > 0


def test_over_long_text_needs_truncate(minilm_server, minilm_reference):
    long_text = list(minilm_reference)[-1]
    response = httpx.post(minilm_server.url + "/embed", json={"texts": ["short", long_text]}, headers=AUTH)
    assert response.status_code == 422
    assert "texts[1]" in response.json()["error"] and "max_length is 32" in response.json()["error"]
    response = httpx.post(minilm_server.url + "/embed", json={"texts": [long_text], "truncate": True},
                          headers=AUTH)
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["embeddings"][0], minilm_reference[long_text], atol=1e-5)


BAD_REQUESTS = [
    # (name, method, path, raw body or None, headers, status, words the message must contain)
    ("not json", "POST", "/embed", b'{"texts": [', AUTH, 400, "not valid JSON"),
    ("json array", "POST", "/embed", b'["a"]', AUTH, 422, "JSON object"),
    ("texts is a string", "POST", "/embed", b'{"texts": "abc"}', AUTH, 422, "texts must be a list"),
    ("text is a number", "POST", "/embed", b'{"texts": ["a", 3]}', AUTH, 422, "texts[1] must be a string"),
    ("missing texts", "POST", "/embed", b'{"pooling": "mean"}', AUTH, 422, "missing field 'texts'"),
    ("unknown field", "POST", "/embed", b'{"text": ["a"]}', AUTH, 422, "unknown field 'text'"),
    ("empty list", "POST", "/embed", b'{"texts": []}', AUTH, 422, "texts is empty"),
    ("bad pooling", "POST", "/embed", b'{"texts": ["a"], "pooling": "max"}', AUTH, 422, "pooling"),
    ("normalize not bool", "POST", "/embed", b'{"texts": ["a"], "normalize": "yes"}', AUTH, 422, "normalize"),
    ("too many texts", "POST", "/embed", json.dumps({"texts": ["a"] * 65}).encode(), AUTH, 422, "--max-texts"),
    ("10 MB body", "POST", "/embed", b'{"texts": ["' + b"a" * 10_000_000 + b'"]}', AUTH, 413,
     "--max-request-bytes"),
    ("invalid UTF-8", "POST", "/embed", b'{"texts": ["\xff\xfe"]}', AUTH, 400, "UTF-8"),
    ("deeply nested", "POST", "/embed", b"[" * 50_000 + b"]" * 50_000, AUTH, 400, "nested"),
    ("lone surrogate", "POST", "/tokenize", b'{"texts": ["ok", "a\\ud800b"]}', AUTH, 422, "texts[1]"),
    ("unknown route", "GET", "/nope", None, AUTH, 404, "/nope"),
    ("wrong method", "GET", "/embed", None, AUTH, 405, "GET"),
    ("wrong task", "POST", "/predict", b'{"texts": ["a"]}', AUTH, 404, "--task predict"),
    ("no API key", "POST", "/embed", b'{"texts": ["a"]}', {}, 401, "API key"),
    ("wrong API key", "POST", "/embed", b'{"texts": ["a"]}', {"Authorization": "Bearer nope"}, 401, "API key"),
    ("openai bad input", "POST", "/v1/embeddings", b'{"input": [1]}', AUTH, 422, "input[0]"),
    ("tokenize bad type", "POST", "/tokenize", b'{"texts": {"a": 1}}', AUTH, 422, "texts must be a list"),
]


def test_bad_inputs_are_4xx_with_a_message(minilm_server):
    url = minilm_server.url
    with httpx.Client(timeout=60) as client:
        for name, method, path, body, headers, status, words in BAD_REQUESTS:
            response = client.request(method, url + path, content=body, headers=headers)
            assert response.status_code == status, (name, response.status_code, response.text[:200])
            assert words in response.json()["error"], (name, response.json())
        assert client.get(url + "/health").status_code == 200
        ok = client.post(url + "/embed", json={"texts": ["still alive"]}, headers=AUTH)
        assert ok.status_code == 200
        metrics = client.get(url + "/metrics", headers=AUTH).text
    assert 'code="500"' not in metrics


# --------------------------------------------------------------------------- tiny classifier /predict

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """A 2-layer BERT classifier with random weights, saved the way `train` saves it."""
    import keras

    from bert4keras.cli import build_classifier, save_classifier

    root = tmp_path_factory.mktemp("classifier")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS)) + ["number"] + \
        [str(i) for i in range(10)]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = {"vocab_size": len(vocab), "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 64, "hidden_act": "gelu", "max_position_embeddings": 64,
              "type_vocab_size": 2, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    (root / "config.json").write_text(json.dumps(config), encoding="utf-8")
    keras.utils.set_random_seed(3)
    model = build_classifier(str(root / "config.json"), None, len(LABELS))
    output = root / "out"
    save_classifier(model, str(output), LABELS, 24, True, str(root / "vocab.txt"))
    return str(output)


def in_process_predictions(classifier_dir: str, texts: list[str]) -> np.ndarray:
    from bert4keras.cli import load_classifier
    from bert4keras.snippets import sequence_padding

    model, tokenizer, info = load_classifier(classifier_dir)
    ids, segments = zip(*(tokenizer.encode(t, maxlen=info["maxlen"]) for t in texts))
    return np.asarray(model.predict_on_batch([sequence_padding(ids, 24), sequence_padding(segments, 24)]))


def test_predict_matches_in_process(classifier_server, classifier_dir):
    texts = sentences(6, seed=5)
    response = httpx.post(classifier_server.url + "/predict", json={"texts": texts}, timeout=60)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    want = in_process_predictions(classifier_dir, texts)
    for p, row in zip(predictions, want):
        scores = {s["label"]: s["score"] for s in p["scores"]}
        np.testing.assert_allclose([scores[label] for label in LABELS], row, atol=1e-5)
        assert p["label"] == LABELS[row.argmax()] and p["score"] == pytest.approx(row.max(), abs=1e-5)
    info = httpx.get(classifier_server.url + "/info").json()
    assert info["task"] == "predict" and info["labels"] == LABELS and info["buckets"] == [8, 24]
    assert info["max_queue"] == 12


def test_full_queue_answers_429_and_stays_healthy(classifier_server):
    url = classifier_server.url
    bodies = [{"texts": [f"the cat number {i}"]} for i in range(40)]
    responses = asyncio.run(post_all(url + "/predict", bodies))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429}, codes
    assert codes.count(429) >= 1 and codes.count(200) >= 1, codes
    rejected = responses[codes.index(429)]
    assert rejected.headers["Retry-After"] == "1" and "--max-queue" in rejected.json()["error"]
    assert httpx.get(url + "/health").status_code == 200
    assert httpx.post(url + "/predict", json={"texts": ["after the storm"]}, timeout=60).status_code == 200


def test_sigterm_finishes_accepted_requests(classifier_server, classifier_dir):
    server = classifier_server
    url = server.url
    texts = sentences(12, seed=9)
    want = in_process_predictions(classifier_dir, texts)

    async def load_then_terminate() -> list:
        pending = asyncio.ensure_future(post_all(url + "/predict", [{"texts": [t]} for t in texts]))
        async with httpx.AsyncClient() as client:  # wait until the server holds all 12 requests
            for _ in range(100):
                metrics = (await client.get(url + "/metrics")).text
                if "bert4keras_queue_depth 12" in metrics:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the 12 requests never reached the queue")
        server.process.send_signal(signal.SIGTERM)
        return await pending

    responses = asyncio.run(load_then_terminate())
    assert server.process.wait(60) in (0, -signal.SIGTERM)
    for response, row in zip(responses, want):
        assert not isinstance(response, Exception) and response.status_code == 200, response
        scores = {s["label"]: s["score"] for s in response.json()["predictions"][0]["scores"]}
        np.testing.assert_allclose([scores[label] for label in LABELS], row, atol=1e-5)
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=2)


# --------------------------------------------------------------------------- /ner and /generate

NER_TEXTS = ["the cat sat on a mat", "people sang old songs about rivers and winter light",
             "Rain fell over quiet hills"]


def test_ner_matches_in_process(servers, ner_dir):
    from bert4keras.cli_ner import load_ner, predict_ner

    response = httpx.post(servers["ner"].url + "/ner", json={"texts": NER_TEXTS}, timeout=300)
    assert response.status_code == 200, response.text
    got = response.json()["entities"]
    want = predict_ner(*load_ner(ner_dir), NER_TEXTS)
    assert got == json.loads(json.dumps(want))
    assert any(got), "the random model found no entity at all: the comparison would be empty"
    for text, entities in zip(NER_TEXTS, got):
        for e in entities:
            assert text[e["start"]:e["end"]] == e["text"] and e["label"] in ("PER", "PLACE")
    bad = httpx.post(servers["ner"].url + "/ner", json={"texts": [7]}, timeout=60)
    assert bad.status_code == 422 and "texts[0] must be a string" in bad.json()["error"]


@pytest.fixture(scope="module")
def lm_reference(lm_dir):
    from bert4keras.cli import load_generator, prompt_ids

    model, tokenizer, application = load_generator(lm_dir)

    def generate(prompts: list[str], n: int, **options) -> list[list[int]]:
        ids = [prompt_ids(tokenizer, p, application) for p in prompts]
        return model.generate(ids, n, end_id=tokenizer._token_end_id, **options)

    return generate, tokenizer


def test_generate_matches_in_process(servers, lm_reference):
    from bert4keras.cli import answer_text

    generate, tokenizer = lm_reference
    url = servers["generate"].url + "/generate"
    prompts = ["the cat sat", "people sang"]
    for options in ({}, {"num_beams": 3}, {"top_k": 5, "top_p": 0.9, "temperature": 0.7, "seed": 11}):
        response = httpx.post(url, json={"prompts": prompts, "max_new_tokens": 12, **options}, timeout=900)
        assert response.status_code == 200, (options, response.text)
        want = generate(prompts, 12, **options)
        got = response.json()["generations"]
        assert [g["ids"] for g in got] == want, options
        assert [g["text"] for g in got] == [answer_text(tokenizer, ids) for ids in want]


def test_generate_streams_one_event_per_step(servers, lm_reference):
    generate, tokenizer = lm_reference
    body = {"prompts": ["the cat sat"], "max_new_tokens": 12, "stream": True}
    with httpx.stream("POST", servers["generate"].url + "/generate", json=body, timeout=900) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [block for block in response.read().decode().split("\n\n") if block]
    steps = [json.loads(e[len("data: "):]) for e in events if e.startswith("data: ")]
    done = [json.loads(e.split("data: ", 1)[1]) for e in events if e.startswith("event: done")]
    want = generate(["the cat sat"], 12)[0]
    assert [s["step"] for s in steps] == list(range(len(steps)))
    assert [s["ids"][0] for s in steps if s["ids"][0] is not None] == want
    assert len(done) == 1 and done[0]["generations"][0]["ids"] == want
    streamed = "".join(s["text"][0] for s in steps)
    assert tokenizer.decode(want).startswith(streamed)


GENERATE_BAD = [
    ({"prompts": ["a"], "top_p": 2}, "top_p must be in (0, 1], got 2"),
    ({"prompts": ["a"], "top_k": 0}, "top_k must be in [1"),
    ({"prompts": ["a"], "temperature": 0}, "temperature must be in (0"),
    ({"prompts": ["a"], "max_new_tokens": 13}, "max_new_tokens must be in [1, 12]"),
    ({"prompts": ["a"], "num_beams": "3"}, "num_beams must be an integer"),
    ({"prompts": ["a"], "seed": True}, "seed must be an integer"),
    ({"prompts": ["a"], "num_beams": 2, "stream": True}, "num_beams > 1"),
    ({"prompts": []}, "prompts is empty"),
    ({"prompt": ["a"]}, "unknown field 'prompt'"),
    ({"prompts": [" ".join(["cat"] * 70)]}, "prompts[0] has"),
]


def test_generate_bad_inputs_are_422(servers):
    url = servers["generate"].url
    for body, words in GENERATE_BAD:
        response = httpx.post(url + "/generate", json=body, timeout=60)
        assert response.status_code == 422, (body, response.text)
        assert words in response.json()["error"], (body, response.json())
    assert httpx.post(url + "/embed", json={"texts": ["a"]}).status_code == 404
    assert httpx.get(url + "/health").status_code == 200


# --------------------------------------------------------------------------- 0.11.5 WebServing

WEB_SERVING_SCRIPT = """
import sys
from bert4keras.snippets import WebServing

def add(a, b=10):
    if a < 0:
        raise ValueError("negative a")
    return {"sum": a + b}

web = WebServing(host="127.0.0.1", port=int(sys.argv[1]), server="paste")
web.route("/add", add, {"a": (int, True), "b": (int, False)})
web.route("/echo", lambda text: text[::-1], {"text": (None, True)}, method="POST")
web.start()
"""


def test_web_serving_get_and_post(tmp_path):
    port = free_port()
    (tmp_path / "web.py").write_text(WEB_SERVING_SCRIPT, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, str(tmp_path / "web.py"), str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(timeout=120)
    try:
        deadline = time.monotonic() + 600
        while True:
            assert process.poll() is None, process.stderr.read()
            try:
                first = client.get(base + "/add", params={"a": 2, "b": 5})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "WebServing never answered"
                time.sleep(0.2)
        assert first.json() == {"code": 0, "desc": "succeeded", "data": {"sum": 7}}
        assert client.get(base + "/add?a=2").json()["data"] == {"sum": 12}
        assert client.get(base + "/add?b=2").json() == {"code": 1, "desc": 'lack of "a" argument', "data": {}}
        assert client.get(base + "/add?a=-1").json() == {"code": 2, "desc": "negative a", "data": {}}
        assert client.get(base + "/add?a=x").json()["code"] == 2  # the converter failed
        echo = client.post(base + "/echo", data={"text": "你好abc"})
        assert echo.json() == {"code": 0, "desc": "succeeded", "data": "cba好你"}
        assert client.get(base + "/echo").status_code == 405
    finally:
        client.close()
        process.terminate()
        process.wait(30)


def test_serve_command_line_errors(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bert4keras", "serve", *args], capture_output=True,
                              text=True, timeout=600, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])))

    missing = run(str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "model directory not found" in missing.stderr
    empty = run(str(tmp_path), "--port", "-5")
    assert empty.returncode != 0 and "--port must be positive" in empty.stderr
    assert "--max-batch-tokens" in run("--help").stdout
    unloadable = run(str(tmp_path), "--port", str(free_port()))  # the server starts, loading fails
    assert unloadable.returncode == 1 and "no config.json" in unloadable.stderr
