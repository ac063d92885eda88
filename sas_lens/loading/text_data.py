"""Plain text in, fixed-length token sequences out: the data every SAE-side job reads.

Sources are local text files, folders of them, or ``"hf:<dataset id>"`` (a Hugging
Face dataset with a ``text`` column, where a hub is reachable). Files are read as
UTF-8; documents are separated by a blank line (the layout of the Wikipedia corpus
in ``shared/datasets/corpus``), and a file without blank lines is one document per
line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from sas_lens.errors import DataError
from sas_lens.typing import Tokens

_TEXT_SUFFIXES = {".txt", ".text", ".md", ""}


def resolve_text_files(sources: str | Path | Iterable[str | Path]) -> list[Path | str]:
    """Expand files and folders into a sorted list of files (``hf:`` ids pass through).

    Args:
        sources: a path, or several; folders are searched for text files.

    Raises:
        DataError: a path that does not exist, a folder with no text files, an empty
            file, or a file that is not UTF-8 text.

    Example:
        >>> resolve_text_files(["corpus/"])  # doctest: +SKIP
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    resolved: list[Path | str] = []
    for source in sources:
        if isinstance(source, str) and source.startswith("hf:"):
            resolved.append(source)
            continue
        path = Path(source)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in _TEXT_SUFFIXES
                and not p.name.startswith(".")
                and p.name.upper() != "SOURCE.MD"
            )
            if not files:
                raise DataError(
                    f"The folder {path} holds no text files (looked for {sorted(_TEXT_SUFFIXES - {''})} "
                    "or no suffix). Point at a folder of UTF-8 .txt files, or at the files themselves."
                )
            resolved.extend(files)
        elif path.is_file():
            resolved.append(path)
        else:
            raise DataError(f"No such file or folder: {path}. Give paths to UTF-8 text files or folders of them.")
    if not resolved:
        raise DataError("No text sources were given. Give at least one text file or folder.")
    for path in resolved:
        if isinstance(path, Path):
            _check_text_file(path)
    return resolved


def _check_text_file(path: Path) -> None:
    head = path.read_bytes()[:65536]
    if not head.strip():
        raise DataError(f"The text file {path} is empty. Remove it or give a file with text in it.")
    if b"\x00" in head:
        raise DataError(f"{path} looks like a binary file (it contains NUL bytes), not UTF-8 text.")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a multi-byte character cut by the 64 KiB read
            raise DataError(f"{path} is not UTF-8 text (bad byte at offset {err.start}).") from err


def iter_documents(sources: Iterable[Path | str]) -> Iterator[str]:
    """Yield the documents of each source in order (see the module docstring).

    Args:
        sources: from :func:`resolve_text_files`.

    Example:
        >>> next(iter_documents(resolve_text_files("corpus/")))[:80]  # doctest: +SKIP
    """
    for source in sources:
        if isinstance(source, str) and source.startswith("hf:"):
            from datasets import load_dataset

            dataset = load_dataset(source[3:], split="train", streaming=True)
            for row in dataset:
                if row.get("text"):
                    yield row["text"]
            continue
        text = Path(source).read_text(encoding="utf-8")
        separator = "\n\n" if "\n\n" in text else "\n"
        for document in text.split(separator):
            if document.strip():
                yield document.strip()


def iter_token_sequences(tokenizer, documents: Iterable[str], context_size: int, batch_size: int) -> Iterator[Tokens]:
    """Yield ``[batch_size, context_size]`` token batches: BOS + a chunk of the token stream.

    Documents are joined into one stream (separated by a blank line) and cut into
    chunks of ``context_size - 1`` tokens, so there is no padding and every
    position but the first (BOS) is real text. The last, partial batch is dropped.

    Args:
        tokenizer: the model's tokenizer.
        documents: texts, e.g. from :func:`iter_documents`.
        context_size: tokens per sequence, BOS included.
        batch_size: sequences per batch.

    Example:
        >>> batch = next(iter_token_sequences(model.tokenizer, iter_documents(files), 128, 16))  # doctest: +SKIP
    """
    if context_size < 2:
        raise ValueError(f"context_size must be at least 2 (BOS + one token), got {context_size}.")
    bos = tokenizer.bos_token_id
    if bos is None:
        raise ValueError("The tokenizer has no BOS token; sas_lens needs one to start each sequence.")
    separator = tokenizer.encode("\n\n", add_special_tokens=False)
    chunk = context_size - 1
    stream: list[int] = []
    rows: list[list[int]] = []
    for document in documents:
        stream.extend(tokenizer.encode(document, add_special_tokens=False))
        stream.extend(separator)
        while len(stream) >= chunk:
            rows.append([bos] + stream[:chunk])
            del stream[:chunk]
            if len(rows) == batch_size:
                yield torch.tensor(rows, dtype=torch.long)
                rows = []
