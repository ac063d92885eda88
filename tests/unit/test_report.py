"""The HTML report: self-contained, every figure present, and (in a real headless Chromium) rendered
with no JavaScript error."""

import os
import shutil

import pytest
import torch

import sas_lens as sl
from sas_lens.analysis.latent_index import build_latent_index
from sas_lens.analysis.monosemanticity import width_comparison
from sas_lens.analysis.report import Section, topic_section, write_report
from sas_lens.topic.alignment import topic_scores
from tests.helpers import WORDS, random_sae

PAIRS = sl.load_pairs(
    [
        {"prompt": "the movie was", "positive": " good and fun", "negative": " bad"},
        {"prompt": "i", "positive": " love this story", "negative": " hate this boring story ."},
        {"prompt": "the plot of this film was very", "positive": " great", "negative": " awful"},
    ],
    name="tiny-sentiment",
)
OTHER = sl.load_pairs(
    [
        {"prompt": "the movie was", "positive": " boring", "negative": " fun"},
        {"prompt": "i", "positive": " hate it", "negative": " love it"},
    ],
    name="tiny-other",
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def report(model, tmp_path, monkeypatch):
    sae, wide = random_sae("jumprelu", d_sae=48), random_sae("jumprelu", d_sae=96, seed=1)
    vectors = [
        sl.sas_vector(model, sae, PAIRS, tau=0.5),
        sl.sas_vector(model, sae, OTHER, tau=0.5),
        sl.dense_vector(model, PAIRS, layer=1),
    ]
    assert all(len(v) for v in vectors[:2])
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(WORDS * 8))
    index = build_latent_index(model, sae, corpus, n_tokens=2000, context_size=8, n_top=3, batch_size=4, progress=False)
    widths, _ = width_comparison(model, [sae, wide], PAIRS, tau=0.5)
    extra = Section("Evaluation", "<p>λ sweep</p>", [])
    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path / "cache"))
    by_length = lambda texts: torch.nn.functional.normalize(  # noqa: E731 (hand-made sentence embeddings)
        torch.tensor([[float(len(t)), t.count("o") + 1.0, 1.0] for t in texts]), dim=1
    )
    topic = topic_scores(
        model,
        sae,
        ["the story was good"],
        reference=[" ".join(WORDS[i : i + 6]) for i in range(12)],
        name="tiny-topic",
        embed_fn=by_length,
    )
    topics = topic_section([topic], model=model, sae=sae, index=index, k=3, min_prompts=2)
    assert f"<tr><td>{topic.top(1, min_prompts=2)[0][0]}</td>" in topics.html
    rare = [latent for latent in range(topic.d_sae) if 0 < topic.n_firing[latent] < 2]
    assert rare and not any(f"<tr><td>{latent}</td>" in topics.html for latent in rare)  # what amplify skips
    path = write_report(
        tmp_path / "out" / "report.html",
        vectors,
        model=model,
        sae=sae,
        index=index,
        width_table=widths,
        sections=[topics, extra],
    )
    # 2 top-latent bars + 2 diagnostics (frequency filter) + Jaccard, weighted Jaccard, decoded cosine
    # heatmaps + the width figure
    return path, 8


def test_report_is_self_contained_with_every_figure(report):
    path, n_figures = report
    page = path.read_text()
    assert page.count('class="plotly-graph-div"') == n_figures
    assert "<script src=" not in page and "cdn.plot.ly" not in page.split("</script>", 1)[1]
    assert "<mark>" in page  # top contexts with the peak token marked
    for heading in (
        "Overlap between vectors",
        "Monosemanticity across SAE widths",
        "Evaluation",
        "tiny-other",
        "Topic alignments",
        "tiny-topic",
    ):
        assert heading in page


def test_nothing_to_report_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Nothing to report"):
        write_report(tmp_path / "r.html", [])


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("SAS_LENS_REQUIRE_BROWSER"),
    reason="Chromium is not installed (.ci/run installs Debian's chromium)",
)
def test_report_renders_in_headless_chromium_without_errors(report):
    from playwright.sync_api import sync_playwright

    path, n_figures = report
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(path.as_uri())
            page.wait_for_function(
                f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {n_figures}", timeout=30_000
            )
            rendered = page.evaluate(
                "Array.from(document.querySelectorAll('.plotly-graph-div'))"
                ".filter(d => d.querySelector('.main-svg') && d._fullLayout).length"
            )
        finally:
            browser.close()
    assert rendered == n_figures
    assert errors == []
