"""Text sources: clear errors for unusable input, BOS-led fixed-length sequences."""

import pytest
import torch

from sas_lens.errors import DataError
from sas_lens.loading.text_data import (
    iter_documents,
    iter_token_sequences,
    resolve_text_files,
)


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match="holds no text files"):
        resolve_text_files(tmp_path)


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(DataError, match="binary file"):
        resolve_text_files(path)


def test_empty_file_and_missing_path_are_refused(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="is empty"):
        resolve_text_files(tmp_path / "empty.txt")
    with pytest.raises(DataError, match="No such file or folder"):
        resolve_text_files(tmp_path / "missing.txt")


def test_documents_split_on_blank_lines(tmp_path):
    (tmp_path / "a.txt").write_text("Title one\nfirst para\n\nTitle two\nsecond para\n")
    (tmp_path / "b.txt").write_text("line one\nline two\n")
    files = resolve_text_files(tmp_path)
    assert [p.name for p in files] == ["a.txt", "b.txt"]
    assert list(iter_documents(files)) == ["Title one\nfirst para", "Title two\nsecond para", "line one", "line two"]


def test_sequences_start_with_bos_and_cover_the_stream_in_order(tokenizer):
    documents = ["the movie was good", "the plot was bad and boring"]
    batches = list(iter_token_sequences(tokenizer, documents, context_size=4, batch_size=2))
    stream = []
    for doc in documents:
        stream += tokenizer.encode(doc, add_special_tokens=False) + tokenizer.encode("\n\n", add_special_tokens=False)
    rows = torch.cat(batches)
    assert rows.shape[1] == 4
    assert (rows[:, 0] == tokenizer.bos_token_id).all()
    assert rows[:, 1:].flatten().tolist() == stream[: rows.shape[0] * 3]
