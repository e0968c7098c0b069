"""The catalogue of bad inputs and faults: each row names the input, the outcome the library
promises (a clear error naming the culprit, or correct handling) and the test that asserts it.

This file checks that the catalogue holds no silent or crashing row, that every test it names
exists, and prints the counts; ``python tests/test_catalogue.py`` prints the table that
docs/reliability.md carries. Rows for the command line point at tests/test_cli*.py, which the
CLI's own tests provide.
"""

from __future__ import annotations

import ast
import collections
import os
import re

ERROR, HANDLED, SILENT, CRASH = "clear error", "correct handling", "silent", "crash"

R = "tests/test_reliability.py"
C = "tests/test_checkpoints.py"
L = "tests/test_checkpoint_loading.py"
T = "tests/test_tokenizers.py"
S = "tests/test_serving.py"
G = "tests/test_generation.py"
CLI = "tests/test_cli.py"

_SERVER = ["not json", "json array", "texts is a string", "text is a number", "missing texts",
           "unknown field", "empty list", "bad pooling", "normalize not bool", "too many texts",
           "10 MB body", "invalid UTF-8", "deeply nested", "lone surrogate", "unknown route",
           "wrong method", "wrong task", "no API key", "wrong API key", "openai bad input",
           "tokenize bad type"]

CATALOGUE: list[tuple[str, str, str, str]] = [
    # (area, bad input or fault, outcome, test)
    ("write", "process killed while overwriting a TF checkpoint (4 kills; 60 in the slow suite)", HANDLED,
     f"{R}::test_checkpoint_overwrite_survives_kills"),
    ("write", "process killed while overwriting a TF checkpoint, 60 random kills", HANDLED,
     f"{R}::test_checkpoint_overwrite_survives_many_kills"),
    ("write", "process dies between the two renames of a checkpoint overwrite", HANDLED,
     f"{R}::test_checkpoint_overwrite_killed_between_renames_loads_the_new_one"),
    ("write", "disk full while writing a checkpoint", ERROR,
     f"{R}::test_checkpoint_overwrite_that_fails_keeps_the_old_one_and_no_temp_files"),
    ("write", "write journal that does not match the files", ERROR,
     f"{R}::test_checkpoint_journal_that_does_not_match_the_files_is_reported"),
    ("write", "disk full during model.save('x.keras')", ERROR,
     f"{R}::test_model_save_that_fails_midway_keeps_the_old_file_and_no_temp_file"),
    ("write", "tensor TF checkpoints cannot hold (writer)", ERROR, f"{C}::test_writer_rejects_what_tf_cannot_hold"),
    *[("input", f"token id >= vocabulary size through {entry}", ERROR,
       f"{R}::test_every_entry_point_rejects_ids_past_the_vocabulary[{entry}]")
      for entry in ("predict_on_batch", "__call__", "train_on_batch", "test_on_batch", "predict",
                    "predict generator", "fit generator")],
    *[("input", f"{case} (and the model still predicts and saves)", ERROR,
       f"{R}::test_bad_input_is_rejected_and_the_model_still_predicts_and_saves[{case}]")
      for case in ("too long", "id past vocab", "negative id", "segment 2", "short segments",
                   "batches differ", "empty batch", "wrong rank")],
    ("input", "predict / evaluate on an empty batch", ERROR,
     f"{R}::test_predict_and_evaluate_on_an_empty_batch_say_so"),
    ("input", "custom position id past the position table", ERROR,
     f"{R}::test_position_ids_input_is_checked_against_the_table"),
    *[("input", f"bad token id in batch 1 of a {source} given to {method}", ERROR,
       f"{R}::test_datasets_are_checked_batch_by_batch[{method}-{source}]")
      for method in ("fit", "evaluate", "predict")
      for source in ("generator", "PyDataset", "PyDataset, 2 threads")],
    ("input", "bad segment id in validation_data given as a PyDataset", ERROR,
     f"{R}::test_validation_data_given_as_a_dataset_is_checked"),
    ("input", "bad token id in a tf.data.Dataset (skipped without TensorFlow)", ERROR,
     f"{R}::test_tf_dataset_is_checked_batch_by_batch"),
    ("input", "batch rejected midway through fit on JAX: weights kept, training goes on", HANDLED,
     f"{R}::test_a_rejected_batch_leaves_trained_weights_and_a_usable_model"),
    ("input", "MEMM accuracy as a compile() metric on JAX", ERROR,
     f"{R}::test_memm_accuracy_as_a_compile_metric_says_why_and_the_model_survives"),
    ("input", "generate: prompt longer than the positions, empty prompt, bad beams/top_p/top_k/end_id", ERROR,
     f"{G}::test_generate_rejects_bad_input_with_the_numbers"),
    ("input", "generate: invalid sampling arguments", ERROR, f"{G}::test_invalid_arguments_are_rejected"),
    *[("config", f"config field of the wrong type: {field} {value}", ERROR,
       f"{R}::test_config_value_of_the_wrong_type_is_named[{field}]")
      for field, value in (("hidden_size", "'8'"), ("num_hidden_layers", "1.0"), ("type_vocab_size", "'2'"),
                           ("hidden_dropout_prob", "'0.1'"), ("layer_norm_eps", "[1e-12]"),
                           ("custom_position_ids", "'yes'"), ("vocab_size", "true"))],
    ("config", "HF GPT-2 / T5 config field of the wrong type (n_embd '8', version list)", ERROR,
     f"{R}::test_config_of_another_family_with_a_wrong_type_is_named"),
    ("config", "ints for float fields, numpy ints for int fields", HANDLED,
     f"{R}::test_config_with_ints_for_floats_and_numpy_ints_builds"),
    ("config", "checkpoint with a different hidden_size / vocab_size than the config", ERROR,
     f"{L}::test_shape_mismatch_names_the_variable_and_both_shapes"),
    ("config", "checkpoint of another size with autoresize_weights=True", HANDLED,
     f"{L}::test_autoresize_weights_loads_another_size"),
    ("config", "model weight missing from the checkpoint", ERROR,
     f"{L}::test_missing_weight_is_an_error_naming_it_and_changes_nothing"),
    ("config", "model weight missing, ignore_invalid_weights=True", HANDLED,
     f"{L}::test_ignore_invalid_weights_warns_and_loads_the_rest"),
    ("saved model", "load a .keras file after importing only bert4keras.layers", HANDLED,
     f"{R}::test_saved_model_loads_after_importing_only_bert4keras_layers"),
    ("saved model", "load a .keras file with plain keras (nothing of bert4keras imported)", ERROR,
     f"{R}::test_saved_model_loaded_with_plain_keras_says_which_class_is_missing"),
    ("checkpoint file", "TF index with a bad magic number", ERROR, f"{C}::test_bad_magic_is_reported"),
    ("checkpoint file", "truncated TF index", ERROR, f"{C}::test_truncated_index_is_reported"),
    ("checkpoint file", "truncated TF data shard", ERROR, f"{C}::test_truncated_data_shard_is_reported_at_open"),
    ("checkpoint file", "missing TF data shard", ERROR, f"{C}::test_missing_data_shard_is_reported"),
    ("checkpoint file", "flipped bytes in a TF data shard (crc32c)", ERROR,
     f"{C}::test_wrong_crc_is_caught_on_load_unless_disabled"),
    ("checkpoint file", "missing or ambiguous checkpoint path", ERROR,
     f"{C}::test_missing_and_ambiguous_checkpoints_are_reported"),
    ("checkpoint file", "malicious pickle in a .bin file (refused without running code)", ERROR,
     f"{C}::test_malicious_pickles_are_refused"),
    ("checkpoint file", "corrupt torch .bin files", ERROR, f"{C}::test_corrupt_torch_files_are_reported"),
    *[("checkpoint file", f"{what}", ERROR, f"{L}::test_bad_checkpoint_files_are_errors_naming_the_file[{case}]")
      for what, case in (("truncated safetensors file", "truncated_safetensors"),
                         ("safetensors index naming a missing shard", "missing_safetensors_shard"),
                         ("truncated pytorch_model.bin", "truncated_bin"),
                         ("empty checkpoint directory", "empty_directory"))],
    ("checkpoint file", "int32 weight in a TF checkpoint", ERROR, f"{R}::test_integer_weight_is_refused_naming_it"),
    ("checkpoint file", "int32 weight in a safetensors file", ERROR,
     f"{R}::test_integer_safetensors_weight_is_refused_naming_it"),
    ("checkpoint file", "NaN in a weight (allow_nonfinite_weights=True loads it)", ERROR,
     f"{R}::test_nan_weight_is_refused_unless_allowed"),
    ("tokenizer", "encode(b'hello world')", ERROR, f"{R}::test_encode_refuses_what_is_not_text[bytes]"),
    ("tokenizer", "encode(None)", ERROR, f"{R}::test_encode_refuses_what_is_not_text[None]"),
    ("tokenizer", "encode(3)", ERROR, f"{R}::test_encode_refuses_what_is_not_text[int]"),
    ("tokenizer", "token list holding None", ERROR, f"{R}::test_encode_refuses_what_is_not_text[None item]"),
    ("tokenizer", "batch holding None or bytes", ERROR, f"{R}::test_encode_batch_names_the_item_that_is_not_text"),
    ("tokenizer", "decode([99999])", ERROR, f"{R}::test_decode_of_an_id_outside_the_vocabulary_names_it"),
    ("vocabulary", "vocab file with a UTF-8 BOM", HANDLED,
     f"{R}::test_vocab_file_with_a_byte_order_mark_keeps_pad_at_zero"),
    ("vocabulary", "vocab file with blank and repeated lines (warning naming the lines)", HANDLED,
     f"{R}::test_vocab_file_with_blank_and_repeated_lines_warns_with_line_numbers"),
    ("vocabulary", "vocab without [UNK], [CLS] or [SEP]; latin-1 vocab file; missing file; maxlen below "
     "the special tokens", ERROR, f"{T}::test_bad_vocab_and_maxlen"),
    ("vocabulary", "words unknown to the vocabulary, words longer than word_maxlen", HANDLED,
     f"{T}::test_unknown_words_and_word_maxlen"),
    ("tokenizer", "100,000-string fuzz: fast and pure tokenizers agree", HANDLED, f"{T}::test_fast_equals_pure_fuzz"),
    ("tokenizer", "bad SentencePiece model files and arguments", ERROR, f"{T}::test_sp_tokenizer_errors"),
    ("tokenizer", "bad BPE vocab / merges files", ERROR, f"{T}::test_bpe_errors"),
    ("server", "over-long text without truncate", ERROR, f"{S}::test_over_long_text_needs_truncate"),
    *[("server", f"request: {name}", ERROR, f"{S}::test_bad_inputs_are_4xx_with_a_message[{name}]")
      for name in _SERVER],
    ("server", "serve command line errors (missing model, bad port, ...)", ERROR,
     f"{S}::test_serve_command_line_errors"),
    ("CLI", "train/predict reader: TAB inside a quoted text", HANDLED, f"{CLI}::*"),
    ("CLI", "train/predict reader: sentence<TAB>label header row", HANDLED, f"{CLI}::*"),
    ("CLI", "train/predict reader: latin-1 bytes in a UTF-8 file", ERROR, f"{CLI}::*"),
    ("CLI", "train with a vocab.txt larger than the checkpoint's vocabulary", ERROR, f"{CLI}::*"),
    ("CLI", "train's model save on a full disk keeps the old file", ERROR, f"{CLI}::*"),
]


def _tests_in(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def counts() -> collections.Counter:
    return collections.Counter(outcome for _, _, outcome, _ in CATALOGUE)


def test_the_catalogue_covers_the_issue_and_has_no_silent_or_crashing_row(capsys):
    found = counts()
    with capsys.disabled():
        print("\nbad-input catalogue:", ", ".join(f"{k} {found[k]}" for k in (ERROR, HANDLED, SILENT, CRASH)),
              f"(total {len(CATALOGUE)})")
    assert set(found) <= {ERROR, HANDLED, SILENT, CRASH}
    assert found[SILENT] == 0 and found[CRASH] == 0
    assert len(CATALOGUE) >= 96


def test_every_row_names_a_test_that_exists():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    missing = []
    for area, what, outcome, test in CATALOGUE:
        path, name = test.split("::")
        if path == CLI and name == "*":  # the command line's own tests
            continue
        function = re.sub(r"\[.*\]$", "", name)
        if function not in _tests_in(os.path.join(root, path)):
            missing.append(test)
    assert not missing, missing


def markdown() -> str:
    lines = ["| Area | Bad input or fault | Outcome | Test |", "|---|---|---|---|"]
    lines += [f"| {area} | {what} | {outcome} | `{test}` |" for area, what, outcome, test in CATALOGUE]
    found = counts()
    lines += ["", f"{len(CATALOGUE)} rows: " + ", ".join(f"{k} {found[k]}" for k in (ERROR, HANDLED, SILENT, CRASH)) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
