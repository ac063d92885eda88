"""A vector's card says how it was built with the settings its rule used, and nothing its rule ignored."""

import pytest

import sas_lens as sl
from sas_lens import cli
from sas_lens.analysis.report import vector_card
from sas_lens.loading import models
from sas_lens.loading.prompts import reference_prompts
from sas_lens.steering.card import card_fields, describe_rule
from tests.helpers import random_sae, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def sae():
    return random_sae("jumprelu")


def test_each_rule_is_named_with_its_own_settings(model, sae):
    contrast = sl.sas_vector(model, sae, "demo:sentiment", top_k=5)
    paper = sl.sas_vector(model, sae, "demo:sentiment", selection="paper", tau=0.3)
    filtered = sl.sas_vector(model, sae, "demo:sentiment", top_k=4, max_density=0.5, drop_bos=True)
    dense = sl.dense_vector(model, "demo:sentiment", layer=1)
    assert describe_rule(contrast) == "contrast: the top 5 latents by mean code difference"
    assert "τ" not in describe_rule(contrast)  # the old report card showed "τ 0.7" for a vector τ played no part in
    assert describe_rule(paper).startswith("paper (Algorithm 1): τ 0.3")
    removed = filtered.provenance.extraction["filters"]
    assert describe_rule(filtered).endswith(
        f"(candidates: density ≤ 0.5 ({removed['removed_by_density']} removed), "
        f"no latent firing on BOS ({removed['removed_by_bos']} removed))"
    )
    assert describe_rule(dense) == "dense: mean residual difference of the pairs (CAA)"
    fields = card_fields(contrast)
    assert fields["pairs"] == "sentiment: 42 completion pairs (demo:sentiment)"
    assert fields["SAE fingerprint"] == contrast.sae_identity.fingerprint and fields["latents"] == "5"
    assert "norm" in card_fields(dense) and "SAE" not in card_fields(dense)
    html = vector_card(contrast)
    provenance_table = html.split("</table>")[0]
    assert "contrast: the top 5" in provenance_table and "τ" not in provenance_table


def test_the_card_gives_lambda_at_matched_kl_and_the_top_latents(model, sae):
    vector = sl.sas_vector(model, sae, "demo:sentiment", top_k=3)
    text = vector.card(model=model, sae=sae, latents=sl.top_latents(vector, sae, model, k=3))
    lam_row = next(line for line in text.splitlines() if line.startswith("| λ at next-token KL 0.1"))
    plus = float(lam_row.split("| +")[1].split(" /")[0])
    reached = sl.strength_for_kl(model, vector, 0.1, reference_prompts()[:16], sae=sae, high=4096.0)
    assert plus == pytest.approx(reached, rel=1e-3)  # the card's default prompts: 16 reference prompts
    latent_rows = [line for line in text.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert [int(row.split("|")[1]) for row in latent_rows] == sl.top_latents(vector, sae, model, k=3).latent.tolist()


def test_the_cli_writes_the_card_beside_the_vector(model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(models, "load_model", lambda *args, **kwargs: model)
    vector = sl.dense_vector(model, "demo:sentiment", layer=1)
    path = vector.save(tmp_path / "sentiment.safetensors")
    assert cli.main(["card", str(path), "--kl", "0.05"]) == 0
    written = (tmp_path / "sentiment.card.md").read_text()
    assert written.startswith("# sentiment") and "λ at next-token KL 0.05" in written
    assert written in capsys.readouterr().out
    assert cli.main(["card", str(path), "--kl", "0"]) == 2 and "--kl must be positive" in capsys.readouterr().err
