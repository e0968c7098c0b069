"""MLM / LM / UniLM pretraining on Keras 3: data_utils.py writes records, pretraining.py trains (docs/pretraining.md)."""
