"""Tracing a text: intensities and hovers are the codes by hand, the steering row is the KL by hand, and the
page renders in headless Chromium with the hover showing the latent list."""

import os

import pytest
import torch

import sas_lens as sl
from sas_lens.steering.vectors import SASVector
from tests.helpers import HOOK, random_sae
from tests.unit.test_conditions import dense
from tests.unit.test_report import CHROMIUM
from tests.unit.test_steering import residual

TEXT = "the movie was very good and the music was fun"


@pytest.fixture
def traced(model):
    sae = random_sae("jumprelu")
    tokens = model.to_tokens(TEXT)
    codes = sae.encode(residual(model, tokens))[0, 1:].detach()
    fired = torch.nonzero(codes.sum(0) > 0).squeeze(-1)[:6]
    vec = SASVector(
        fired,
        torch.linspace(-1.0, 2.0, len(fired)),
        sae.cfg.d_sae,
        {"hook_name": HOOK, "layer": 1, "model_name": "tiny-random", "name": "hand"},
    )
    return sae, vec, codes, sl.trace(model, sae, TEXT, vectors=[vec, dense()], steering={vec.with_gate("none"): 9.0})


def test_intensities_and_hovers_are_the_codes_by_hand(model, traced):
    sae, vec, codes, t = traced
    assert t.tokens == model.to_str_tokens(model.to_tokens(TEXT)[0])[1:]
    expected = (codes[:, vec.indices] * vec.values.abs()).sum(-1)
    torch.testing.assert_close(t.vectors[0].intensity, expected)
    position = int(expected.argmax())
    top_latent, activation, value = t.vectors[0].top[position][0]
    assert activation == pytest.approx(float(codes[position, vec.indices].max()))
    assert value == float(vec.values[vec.indices.tolist().index(top_latent)])
    residual_at = residual(model, model.to_tokens(TEXT))[0, 1:]
    direction = dense().vector / dense().vector.norm()
    torch.testing.assert_close(t.vectors[1].intensity, residual_at @ direction)


def test_the_steering_row_is_the_kl_by_hand(model, traced):
    sae, vec, _, t = traced
    tokens = model.to_tokens(TEXT)
    before = model(tokens)[0, 1:].log_softmax(-1)
    with sl.steer(model, {vec.with_gate("none"): 9.0}, sae=sae):
        after = model(tokens)[0, 1:].log_softmax(-1)
    kl = (before.exp() * (before - after)).sum(-1)
    torch.testing.assert_close(torch.tensor(t.kl), kl.clamp_min(0), atol=1e-5, rtol=1e-4)
    assert max(t.kl) > 0 and t.after == model.to_str_tokens(after.argmax(-1))


def test_the_html_is_self_contained_and_lists_latents_per_token(traced, tmp_path):
    _, vec, _, t = traced
    page = t._repr_html_()
    assert "<script" not in page and "http" not in page
    assert page.count('class="tok"') == 3 * len(t.tokens)  # two vectors and the steering row
    assert f"latent {t.vectors[0].top[0][0][0]}" in page if t.vectors[0].top[0] else "no latent" in page
    assert t.to_html(tmp_path / "t.html").read_text().startswith("<!DOCTYPE html>")
    assert len(t.figure().data) == 1


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("SAS_LENS_REQUIRE_BROWSER"),
    reason="Chromium is not installed (.ci/run installs Debian's chromium)",
)
def test_the_trace_renders_and_hovers_in_headless_chromium(traced, tmp_path):
    from playwright.sync_api import sync_playwright

    _, _, codes, t = traced
    path = t.to_html(tmp_path / "trace.html")
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(path.as_uri())
            token = page.locator(".tok").nth(int(t.vectors[0].intensity.argmax()))
            tip = token.locator(".tip")
            assert not tip.is_visible()
            token.hover()
            assert tip.is_visible() and "latent" in tip.inner_text()
        finally:
            browser.close()
    assert errors == []
