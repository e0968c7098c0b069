"""An HTTP service for bert4keras models with dynamic batching: ``python -m bert4keras serve``.

See docs/serving.md for the routes, the batching options and measured figures.
"""

from bert4keras.serving.app import ServeConfig, Service, create_app, serve
from bert4keras.serving.batcher import Batcher, QueueFull
from bert4keras.serving.model import ServedModel, load_served_model

__all__ = ["Batcher", "QueueFull", "ServeConfig", "ServedModel", "Service", "create_app",
           "load_served_model", "serve"]
