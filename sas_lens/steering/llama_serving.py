"""Running an exported control vector in llama.cpp itself (through ``llama-cpp-python``, the ``serve`` extra).

What llama.cpp's own ``--control-vector`` loader does with a file is done here from Python: its tensors
are read as that loader reads them (:func:`~sas_lens.steering.control_vectors.read_control_vector`) and
handed to llama.cpp's C API, ``llama_set_adapter_cvec``, in the layout that loader builds (block N's
vector at offset ``(N − 1)·d_model``, nothing for block 0). Everything after that — where in the
graph the vector is added, the Q4_K_M kernels — is llama.cpp's.

Example:
    >>> llm = load_llama()                                             # doctest: +SKIP
    >>> apply_control_vector(llm, "sentiment.gguf")                    # doctest: +SKIP
    >>> llama_generate(llm, model.to_tokens("The film was")[0].tolist(), 24)  # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from sas_lens.errors import MissingExtraError


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as err:
        raise MissingExtraError(
            "Running control vectors in llama.cpp needs llama-cpp-python: pip install 'sas-lens[serve]' "
            "(it compiles llama.cpp, several minutes)."
        ) from err
    return llama_cpp


def load_llama(model_path: str | Path | None = None, *, n_ctx: int = 512, n_threads: int | None = None):
    """A ``llama_cpp.Llama`` on ``model_path`` (default: the embedded Gemma 3 270M GGUF), keeping every logit.

    Args:
        model_path: a GGUF model file.
        n_ctx: the context length.
        n_threads: CPU threads (llama.cpp's default if ``None``).

    Example:
        >>> llm = load_llama(n_ctx=128)  # doctest: +SKIP
    """
    from sas_lens.loading.models import default_gguf_path

    llama_cpp = _llama_cpp()
    path = Path(model_path) if model_path is not None else default_gguf_path()
    return llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=n_threads, logits_all=True, verbose=False)


def apply_control_vector(llm, control_vector: str | Path | None, scale: float = 1.0) -> None:
    """Steer ``llm`` with a control-vector file (as ``--control-vector-scaled FILE scale``), or clear it (``None``).

    Args:
        llm: a ``llama_cpp.Llama``.
        control_vector: a ``.gguf`` control-vector file, or ``None`` to remove the steering.
        scale: what the file's vectors are multiplied by.

    Raises:
        IncompatibleSAEError: a file for another ``d_model`` or with a block the model lacks.

    Example:
        >>> apply_control_vector(llm, "sentiment.gguf", scale=0.5)  # doctest: +SKIP
    """
    from sas_lens.errors import IncompatibleSAEError
    from sas_lens.steering.control_vectors import read_control_vector

    llama_cpp = _llama_cpp()
    ctx = llm._ctx.ctx
    n_embd, n_layer = llm.n_embd(), llama_cpp.llama_model_n_layer(llm._model.model)
    llm.reset()  # a steering change invalidates every cached position
    if control_vector is None:
        if _apply(llama_cpp, ctx, None, 0, n_embd, 1, n_layer) != 0:
            raise RuntimeError("llama.cpp refused to clear the control vector.")
        return
    steering = read_control_vector(control_vector)
    data = np.zeros((n_layer - 1, n_embd), dtype=np.float32)  # blocks 1 .. n_layer - 1
    for vector, _ in steering.items():
        if vector.vector.shape[0] != n_embd or not 1 <= vector.layer < n_layer:
            raise IncompatibleSAEError(
                f"{control_vector} steers block {vector.layer} with {vector.vector.shape[0]} dimensions; this "
                f"model has blocks 1..{n_layer - 1} of width {n_embd}."
            )
        data[vector.layer - 1] += scale * vector.vector.numpy()
    pointer = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    if _apply(llama_cpp, ctx, pointer, data.size, n_embd, 1, n_layer - 1) != 0:
        raise RuntimeError(f"llama.cpp refused the control vector {control_vector}.")


def _apply(llama_cpp, ctx, data, length: int, n_embd: int, start: int, end: int) -> int:
    # llama_apply_adapter_cvec before its rename (deprecated since); the arguments are the same.
    function = getattr(llama_cpp, "llama_set_adapter_cvec", None) or llama_cpp.llama_apply_adapter_cvec
    return function(ctx, data, length, n_embd, start, end)


def llama_log_probs(llm, tokens: list[int]) -> np.ndarray:
    """Next-token log-probabilities at every position of ``tokens`` (evaluated from scratch), ``[n, n_vocab]``.

    Args:
        llm: a ``llama_cpp.Llama`` from :func:`load_llama`.
        tokens: token ids, BOS included (e.g. ``model.to_tokens(text)[0].tolist()``).

    Example:
        >>> llama_log_probs(llm, model.to_tokens("The film was")[0].tolist()).shape  # doctest: +SKIP
    """
    llm.reset()
    llm.eval(tokens)
    logits = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))


def llama_generate(llm, tokens: list[int], max_new_tokens: int) -> str:
    """Greedy continuation of ``tokens`` in llama.cpp (decoded new tokens only).

    Args:
        llm: a ``llama_cpp.Llama`` from :func:`load_llama`.
        tokens: the prompt's token ids, BOS included.
        max_new_tokens: how many tokens to add (fewer if the model ends the text).

    Example:
        >>> llama_generate(llm, model.to_tokens("The film was")[0].tolist(), 8)  # doctest: +SKIP
    """
    llm.reset()
    new = []
    for token in llm.generate(tokens, top_k=1, top_p=1.0, temp=0.0, reset=True):
        if token == llm.token_eos() or len(new) >= max_new_tokens:
            break
        new.append(token)
    return llm.detokenize(new).decode("utf-8", errors="replace")
