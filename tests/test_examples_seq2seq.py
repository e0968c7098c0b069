"""The seq2seq examples run end to end in smoke mode (BERT4KERAS_SMOKE=1: fewer steps, less
data, a smaller random model; the same code path), each in its own process and folder, as a
user would run them; the sample-data writers and the ROUGE / BLEU helpers they share."""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, EXAMPLES)

CSL = ("seq2seq_data", "csl", os.path.join("datasets", "csl"))
APE210K = ("seq2seq_data", "ape210k", os.path.join("datasets", "ape210k"))
WEBQA = ("seq2seq_data", "webqa", os.path.join("datasets", "qa"))
# (script, *arguments) run in order in one folder -> text the last one must print
CASES = {
    "task_seq2seq_autotitle": ([("task_seq2seq_autotitle",)], "final test: rouge-1"),
    "task_seq2seq_autotitle_multigpu": ([("task_seq2seq_autotitle_multigpu",)], "final test: rouge-1"),
    "task_seq2seq_autotitle_csl": ([CSL, ("task_seq2seq_autotitle_csl",)], "final test: rouge-1"),
    "task_seq2seq_autotitle_csl_mt5": ([CSL, ("task_seq2seq_autotitle_csl_mt5",)], "final test: rouge-1"),
    "task_seq2seq_ape210k_math_word_problem": (
        [APE210K, ("task_seq2seq_ape210k_math_word_problem",)], "final test acc"),
    "task_question_answer_generation_by_seq2seq": (
        [WEBQA, ("task_question_answer_generation_by_seq2seq",)], "generated pairs: 4 in qa.csv"),
    "task_reading_comprehension_by_seq2seq": ([WEBQA, ("task_reading_comprehension_by_seq2seq",)],
                                              "final valid: accuracy"),
}
ON_TORCH = ["task_seq2seq_autotitle", "task_seq2seq_autotitle_csl_mt5", "task_reading_comprehension_by_seq2seq"]


def run_script(command: tuple, folder, backend: str, extra_env=None) -> subprocess.CompletedProcess:
    name, *arguments = command
    env = {**os.environ, "KERAS_BACKEND": backend, "BERT4KERAS_SMOKE": "1",
           "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), **(extra_env or {})}
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, name + ".py"), *arguments], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900)


def check(case: str, folder, backend: str) -> None:
    commands, expected = CASES[case]
    extra = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"} if case.endswith("multigpu") else None
    for command in commands:
        result = run_script(command, folder, backend, extra)
        assert result.returncode == 0, \
            f"{command} failed on {backend}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert expected in result.stdout, f"{commands[-1][0]} did not print {expected!r}:\n{result.stdout[-3000:]}"
    if case.endswith("multigpu") and backend == "jax":
        assert "data parallel over 2 devices" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_example_runs_on_jax(case, tmp_path):
    check(case, tmp_path, "jax")


@pytest.mark.slow
@pytest.mark.parametrize("case", ON_TORCH)
def test_example_runs_on_torch(case, tmp_path):
    check(case, tmp_path, "torch")


@pytest.mark.slow
def test_missing_dataset_names_the_file_and_the_sample_data_command(tmp_path):
    result = run_script(("task_seq2seq_ape210k_math_word_problem",), tmp_path, "jax")
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()
    assert message[-2].startswith("error: the ape210k file") and "train.ape.json" in message[-2], message
    assert "python examples/seq2seq_data.py ape210k" in message[-1], message
    assert "Traceback" not in result.stderr


def test_rouge_and_bleu_against_hand_computed_values():
    from seq2seq_data import bleu, generation_metrics, rouge_l, rouge_n

    assert rouge_l("abcde", "abxde") == pytest.approx(0.8)  # LCS abde: P = R = 4/5
    assert rouge_l("ab", "xyz") == 0.0
    assert rouge_n(list("abcde"), list("abxde"), 2) == pytest.approx(0.5)  # ab, de of 4 bigrams each
    assert rouge_n(list("aab"), list("ab"), 1) == pytest.approx(0.8)  # clipped: 2 matches, P 2/3, R 1
    assert bleu(list("abcdefg"), list("abcdefg")) == pytest.approx(1.0)
    # precisions 5/6, 4/5, 3/4, 2/3 and brevity penalty exp(1 - 7/6)
    want = math.exp((math.log(5 / 6) + math.log(4 / 5) + math.log(3 / 4) + math.log(2 / 3)) / 4 + 1 - 7 / 6)
    assert bleu(list("abcdex"), list("abcdefg")) == pytest.approx(want)
    # a 3-character title has no 4-gram: 0.1 matches instead of a zero score
    assert bleu(list("abc"), list("abc")) == pytest.approx(0.1 ** 0.25)
    metrics = generation_metrics([("", "标题"), ("标 题", "标题")])
    assert metrics["rouge-l"] == pytest.approx(0.5) and metrics["bleu"] < 0.5


def test_people_daily_headlines_are_short_lines_before_a_lead_paragraph():
    from seq2seq_data import people_daily_titles

    pairs = people_daily_titles(50)
    assert len(pairs) == 50
    assert all(4 <= len(t) <= 30 and "。" not in t and c.count("。") >= 2 for t, c in pairs)


def test_sample_data_is_in_the_original_formats(tmp_path):
    import seq2seq_data

    seq2seq_data.csl(str(tmp_path / "csl"), sizes=(5, 2, 2))
    lines = (tmp_path / "csl" / "train.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5 and all(len(line.split("\t")) == 2 for line in lines)
    seq2seq_data.ape210k(str(tmp_path / "ape"), sizes=(30, 2, 2))
    records = [json.loads(line) for line in (tmp_path / "ape" / "train.ape.json").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 30
    assert all({"id", "original_text", "segmented_text", "equation", "ans"} <= set(r) for r in records)
    assert all(r["equation"].startswith("x=") for r in records)
    assert any("%" in r["equation"] for r in records) and any("(1/2)" in r["ans"] for r in records)
    seq2seq_data.webqa(str(tmp_path / "qa"))
    data = json.loads((tmp_path / "qa" / "SogouQA.json").read_text(encoding="utf-8"))
    assert all({"question", "passages"} <= set(d) and all({"passage", "answer"} <= set(p) for p in d["passages"])
               for d in data)
