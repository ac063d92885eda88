"""The main job end to end on the tiny model: vectors, top latents, report, all under --out."""

import pytest

import sas_lens as sl
from sas_lens import demo
from tests.helpers import random_sae, tiny_model


def test_demo_writes_vectors_continuations_and_report_under_out(tmp_path, monkeypatch, capsys):
    model = tiny_model()
    saes = {
        "16k": random_sae("jumprelu", d_sae=48),
        "4k": random_sae("jumprelu", d_sae=24, seed=1),
        "4k-6.4M": random_sae("jumprelu", d_sae=24, seed=2),  # a second SAE of one width: not a width of its own
    }
    # The demo imports from the modules, not the package root: patch them there (else it converts the real model).
    monkeypatch.setattr("sas_lens.loading.models.load_model", lambda *a, **k: model)
    loaded = []
    monkeypatch.setattr(
        "sas_lens.loading.saes.load_sae", lambda name=None, **k: loaded.append(name) or saes[name or "16k"]
    )
    monkeypatch.setattr("sas_lens.loading.saes.shipped_saes", lambda layer=None: dict.fromkeys(saes))
    monkeypatch.setattr("sas_lens.loading.saes.shipped_sae_per_width", lambda layer: {"24": "4k", "48": "16k"})
    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    timings = demo.run_demo(out_dir=tmp_path / "out", max_new_tokens=2, index_tokens=2000)
    out = capsys.readouterr().out
    assert f"{model.cfg.n_layers} layers, d_model={model.cfg.d_model}" in out  # the tiny model, not the real one
    written = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {"out", "cache"}  # nothing outside the named folder (and the cache)
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "continuations.txt").exists()
    assert len(list((tmp_path / "out" / "vectors").glob("*.safetensors"))) == 2 * len(sl.demo_sets())
    assert f"report: {(tmp_path / 'out' / 'report.html').resolve()}" in out
    assert "top latents of caution:" in out and "monosemanticity across widths" in out
    widths_line = out.split("monosemanticity across widths")[1].splitlines()[1]
    assert widths_line.count(": ") == 2, widths_line  # 24 and 48 latents, the 6.4M-token SAE left out
    # compare_widths keys SAEs by width: had the 6.4M-token one been loaded, it would have replaced the 4k
    assert "4k" in loaded and "4k-6.4M" not in loaded
    assert "overlap between SAS vectors" in out
    assert "λ sweep on the 12 held-out items of demo:caution" in out
    assert "[topic 'medicine', amplify" in out
    assert "+ topic 'medicine' strength 12, composed]" in out and "[sentiment SAS λ=" in out
    assert "VADER sentiment:" in out and "similarity to food texts:" in out  # judges beside the continuations
    assert "steering at matched cost" in out
    page = (tmp_path / "out" / "report.html").read_text()
    assert "λ sweep: demo:caution, held-out items" in page and "Topic alignments" in page
    caution = sl.load_vector(tmp_path / "out" / "vectors" / "caution.dense.safetensors")
    assert caution.metadata["extraction"]["pairs"]["n"] == 42 - 12  # the swept items stay out of the vector
    steps = {name: s for name, s in timings.items() if name.endswith("_s") and name != "total_s"}
    assert len(steps) == 6 and timings["total_s"] >= sum(steps.values())  # the total spans the timed steps


def test_matched_strength_lets_an_sae_mismatch_through(model):
    from sas_lens.demo import _matched_strength
    from sas_lens.errors import IncompatibleSAEError
    from tests.helpers import random_sae
    from tests.unit.test_steering import vector_for

    vec = vector_for(random_sae("jumprelu"))
    with pytest.raises(IncompatibleSAEError):  # printed as "too weak" and steered with nothing before the fix
        _matched_strength(model, random_sae("jumprelu", seed=5), vec, 0.1)
