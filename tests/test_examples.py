"""The examples/ scripts run end to end in smoke mode (BERT4KERAS_SMOKE=1: fewer steps, less
data, a smaller random model; the same code path), each in its own process and folder, as a
user would run them. Slow: every example on JAX, a representative third on PyTorch."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, EXAMPLES)

# script(s) run in order in one folder -> text the last one must print
CASES = {
    "basic_extract_features": (["basic_extract_features"], "max abs difference after reloading"),
    "basic_masked_language_model": (["basic_masked_language_model"], "masked characters predicted as"),
    "basic_gibbs_sampling_via_mlm": (["basic_gibbs_sampling_via_mlm"], "some samples after burn-in"),
    "basic_make_uncased_model_cased": (["basic_make_uncased_model_cased"], "max abs difference to the uncased model"),
    "task_sentiment_albert+integrated_gradients": (
        ["task_sentiment_albert", "task_sentiment_integrated_gradients"], "l2 [("),
    "task_sentiment_virtual_adversarial_training": (["task_sentiment_virtual_adversarial_training"], "final test acc"),
    "task_sequence_labeling_ner_crf": (["task_sequence_labeling_ner_crf"], "final test f1"),
    "task_sequence_labeling_cws_crf": (["task_sequence_labeling_cws_crf"], "final valid word f1"),
    "task_iflytek_adversarial_training": (["task_iflytek_adversarial_training"], "final val acc"),
    "task_iflytek_gradient_penalty": (["task_iflytek_gradient_penalty"], "final val acc"),
    "task_iflytek_multigpu": (["task_iflytek_multigpu"], "final val acc"),
    "task_sentence_similarity_lcqmc": (["sample_data", "task_sentence_similarity_lcqmc"], "final test acc"),
}
ON_TORCH = ["basic_masked_language_model", "task_sentiment_albert+integrated_gradients",
            "task_sequence_labeling_ner_crf", "task_iflytek_gradient_penalty"]


def run_example(name: str, folder, backend: str, extra_env=None) -> str:
    arguments = ["lcqmc"] if name == "sample_data" else []
    env = {**os.environ, "KERAS_BACKEND": backend, "BERT4KERAS_SMOKE": "1",
           "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), **(extra_env or {})}
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, name + ".py"), *arguments], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{name} failed on {backend}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def check(case: str, folder, backend: str) -> None:
    scripts, expected = CASES[case]
    extra = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"} if case == "task_iflytek_multigpu" else None
    for script in scripts:
        stdout = run_example(script, folder, backend, extra)
    assert expected in stdout, f"{scripts[-1]} did not print {expected!r}:\n{stdout[-3000:]}"
    if case == "task_iflytek_multigpu":
        assert "data parallel over 2 devices" in stdout


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_example_runs_on_jax(case, tmp_path):
    check(case, tmp_path, "jax")


@pytest.mark.slow
@pytest.mark.parametrize("case", ON_TORCH)
def test_example_runs_on_torch(case, tmp_path):
    check(case, tmp_path, "torch")


def test_missing_data_file_is_named_with_a_fix(tmp_path):
    import examples_common as common

    with pytest.raises(SystemExit) as stop:
        common.require(str(tmp_path / "absent.txt"), "the data file")
    assert "absent.txt" in str(stop.value) and "fix:" in str(stop.value)


def test_checkpoint_that_does_not_fit_its_config_is_named_with_a_fix(tmp_path, minilm_dir):
    import json

    import examples_common as common
    from bert4keras.models import build_transformer_model

    config = json.load(open(os.path.join(minilm_dir, "config.json")))
    config["hidden_size"], config["num_attention_heads"], config["intermediate_size"] = 64, 2, 128
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    with pytest.raises(SystemExit) as stop:
        common.build(build_transformer_model, str(config_path), os.path.join(minilm_dir, "model.safetensors"),
                     config["vocab_size"])
    message = str(stop.value)
    assert "does not match config" in message and "fix:" in message, message
    assert "Traceback" not in message
