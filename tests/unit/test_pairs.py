"""Reading contrastive pairs: every format, and errors that name the file and record."""

import json
from pathlib import Path

import pytest

import sas_lens as sl
from sas_lens.errors import DataError
from sas_lens.loading.pairs import ABItem, CompletionPair

CAA_DIR = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "caa"
AB = {
    "question": "Is it good?\n\nChoices:\n (A) Yes\n (B) No",
    "answer_matching_behavior": "(A)",
    "answer_not_matching_behavior": "(B)",
}
COMPLETION = {"prompt": "The film was", "positive": " wonderful", "negative": " dreadful"}


@pytest.mark.skipif(not CAA_DIR.is_dir(), reason="shared/datasets/caa is not on this machine")
def test_reads_caa_json():
    pairs = sl.load_pairs(CAA_DIR / "test" / "sycophancy" / "test_dataset_ab.json")
    assert (pairs.name, pairs.kind, len(pairs)) == ("test_dataset_ab", "ab", 50)
    assert pairs[0].matching == "B" and pairs[0].choices == ("A", "B")


def test_reads_jsonl_csv_and_memory(tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps(COMPLETION) + "\n\n" + json.dumps(COMPLETION) + "\n")
    (tmp_path / "p.csv").write_text(
        'question,answer_matching_behavior,answer_not_matching_behavior\n"Is it good? (A) Yes (B) No",A,B\n'
    )
    assert len(sl.load_pairs(tmp_path / "p.jsonl")) == 2
    csv_item = sl.load_pairs(tmp_path / "p.csv")[0]
    assert csv_item == ABItem("Is it good? (A) Yes (B) No", "A", "B")
    in_memory = sl.load_pairs([AB, ABItem(AB["question"], "B", "A")], name="mine")
    assert in_memory.name == "mine" and in_memory[1].matching == "B"
    assert sl.load_pairs([COMPLETION] * 5, limit=3).split(2)[1].pairs == (CompletionPair(**COMPLETION),)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"question": "x"', "not valid JSON"),
        ("[]", "is empty"),
        ('{"question": "x"}', "must hold a JSON array"),
        (json.dumps([AB, {**AB, "answer_matching_behavior": "(C)"}]), r"record 1: answer \(C\) is not among"),
        (json.dumps([{"text": "hi"}]), "record 0: keys \\['text'\\] are neither"),
        (json.dumps([{**AB, "answer_not_matching_behavior": "(A)"}]), "both \\(A\\)"),
        (json.dumps([{**COMPLETION, "negative": " wonderful"}]), "identical"),
        (json.dumps([AB, COMPLETION]), "mixes A/B items and completion pairs"),
    ],
)
def test_malformed_files_name_file_and_record(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        sl.load_pairs(path)
    if "mixes" not in message:
        assert "bad.json" in str(info.value)


def test_jsonl_error_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(COMPLETION) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: not valid JSON"):
        sl.load_pairs(path)


def test_unknown_demo_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="No demo pair set 'nope'"):
        sl.load_pairs("demo:nope")
    with pytest.raises(DataError, match="No such pair file"):
        sl.load_pairs(tmp_path / "missing.json")
    with pytest.raises(DataError, match="use a .json"):
        (tmp_path / "pairs.txt").write_text("x")
        sl.load_pairs(tmp_path / "pairs.txt")


def test_shipped_demo_sets_are_valid_and_large_enough():
    assert {"sentiment", "formality", "topic-food", "caution"} <= set(sl.demo_sets())
    kinds = {}
    for name in sl.demo_sets():
        pairs = sl.load_pairs(f"demo:{name}")
        assert len(pairs) >= 40, name
        kinds[name] = pairs.kind
    assert kinds["caution"] == "ab" and kinds["sentiment"] == "completion"
    caution = sl.load_pairs("demo:caution")
    assert {item.matching for item in caution} == {"A", "B"}  # the behaviour's letter is balanced
