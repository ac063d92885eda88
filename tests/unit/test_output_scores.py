"""Output scores against the reference procedure written out latent by latent (a hook, the whole model)."""

import pytest
import torch

from sas_lens.steering.output_scores import NEUTRAL_PROMPT, output_scores
from tests.helpers import ARCHITECTURES, HOOK, random_sae


def literal_output_score(model, sae, latent, amplification=10.0, lens_k=20):
    """Arad et al.'s procedure as their code runs it: amplify at the last position with the error kept, one
    latent per forward; rank by argsort; the lens through the final norm (here a LayerNorm: centre, weight)."""
    tokens = model.to_tokens(NEUTRAL_PROMPT)

    def amplify(acts, hook):
        codes = sae.encode(acts)
        error = acts - sae.decode(codes)
        shifted = codes.clone()
        shifted[:, -1, latent] += amplification * codes[:, -1].max()
        return sae.decode(shifted) + error

    with torch.no_grad():
        clean = model(tokens)[0, -1].log_softmax(-1)
        log_probs = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, amplify)])[0, -1].log_softmax(-1)
        direction = sae.W_dec[latent]
        if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
            direction = direction / direction.norm()
        normed = (direction - direction.mean()) * model.ln_final.w
        lens = (normed @ model.W_U).topk(lens_k).indices
    probs = log_probs.exp()
    order = probs.argsort(descending=True)
    min_rank = min(int((order == token).nonzero()[0]) for token in lens)
    max_probability = float(probs[lens].max())
    kl = float((clean.exp() * (clean - log_probs)).sum())
    return (1 - min_rank / model.cfg.d_vocab) * max_probability, min_rank, kl


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_output_scores_equal_the_literal_procedure(model, architecture, tmp_path, monkeypatch):
    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))
    sae = random_sae(architecture)
    table = output_scores(model, sae, batch_size=7, progress=False)  # batches that do not divide d_sae
    assert list(table.index) == list(range(sae.cfg.d_sae))
    for latent in (0, 13, 47):
        score, min_rank, kl = literal_output_score(model, sae, latent)
        assert table.loc[latent, "min_rank"] == min_rank
        assert table.loc[latent, "output_score"] == pytest.approx(score, rel=1e-4, abs=1e-7)
        assert table.loc[latent, "kl"] == pytest.approx(kl, rel=1e-3, abs=1e-6)
        assert table.loc[latent, "kl_per_norm"] == pytest.approx(
            kl / table.loc[latent, "edit_norm"], rel=1e-3, abs=1e-6
        )
    assert table["output_score"].nunique() > 1  # latents differ in what they write


def test_scores_are_cached_per_sae_and_model_and_recomputed_when_either_changes(model, tmp_path, monkeypatch):
    from sas_lens.steering import output_scores as module

    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))
    sae = random_sae("jumprelu")
    first = output_scores(model, sae, progress=False)
    assert len(list((tmp_path / "output_scores").iterdir())) == 1

    def no_compute(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(module, "_compute", no_compute)
    assert output_scores(model, sae, progress=False).equals(first)  # from disk
    sae.threshold.data.mul_(1.5)  # re-calibrated: another SAE
    with pytest.raises(AssertionError, match="computed again"):
        output_scores(model, sae, progress=False)
    with pytest.raises(AssertionError, match="computed again"):
        output_scores(model, random_sae("jumprelu"), amplification=5.0, progress=False)  # other settings
    with pytest.raises(ValueError, match="amplification"):
        output_scores(model, sae, amplification=0.0)


def test_top_latents_and_the_report_show_output_scores(model, tmp_path, monkeypatch):
    import sas_lens as sl
    from tests.unit.test_attribution import vector_on

    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path))
    sae = random_sae("jumprelu")
    scores = output_scores(model, sae, progress=False)
    vec = vector_on(sae, {3: 0.5, 10: -2.0})
    table = sl.top_latents(vec, sae, model, scores=scores)
    assert table.loc[0, "latent"] == 10 and table.loc[0, "output_score"] == pytest.approx(
        scores.loc[10, "output_score"]
    )
    page = sl.write_report(tmp_path / "r.html", [vec], model=model, sae=sae, scores=scores).read_text()
    assert "output score" in page and f"{scores.loc[10, 'output_score']:.3f}" in page
