"""Evaluation cells and the latent index on a local Ray cluster: the same results as serial runs, resumes, retries."""

import json

import pytest
import torch

from sas_lens.errors import EvalError
from sas_lens.evaluation import runner as evaluation
from sas_lens.evaluation.runner import run_evaluation
from sas_lens.testing import FlakyCellWorker, save_random_sae
from tests.helpers import tiny_model
from tests.unit.test_evaluation import caa_dir, config  # noqa: F401  (caa_dir is a fixture)

ray = pytest.importorskip("ray")

# Cells run in other processes, one torch thread each. The driver's serial runs here use one thread too
# (the ``one_thread`` fixture), so both run the same kernels on the same CPU and generated texts can be
# compared exactly; figures are compared to 1e-5 all the same (summation order across batch shapes).
TOLERANCE = 1e-5


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def ray_config(caa_dir, tmp_path, model):  # noqa: F811
    """The harness test's grid (SAS at layer 1, dense at 1 and 2), its SAE on disk so that workers can load it."""
    return config(caa_dir, saes={"1": str(save_random_sae(model, 1, tmp_path / "sae", d_sae=48))}, open_ended=2)


def executor(**kwargs):
    from sas_lens.distributed import RayExecutor

    return RayExecutor(actors=2, model_factory=tiny_model, **kwargs)


def assert_same_cells(got, expected):
    assert [r["key"] for r in got] == [r["key"] for r in expected]
    for a, b in zip(got, expected):
        assert a.keys() == b.keys(), a["key"]
        for name in a.keys() - {"seconds"}:
            if isinstance(a[name], float):
                assert a[name] == pytest.approx(b[name], abs=TOLERANCE, nan_ok=True), (a["key"], name)
            else:
                assert a[name] == b[name], (a["key"], name)


def test_a_ray_run_equals_the_serial_run_cell_for_cell(model, ray_config, tmp_path, local_cluster):
    serial = run_evaluation(ray_config, tmp_path / "serial", model=model, progress=False)
    on_ray = run_evaluation(ray_config, tmp_path / "ray", model=model, progress=False, executor=executor())
    assert_same_cells(on_ray, serial)
    assert {r["kind"] for r in on_ray} == {"ab", "capability", "open"}
    assert any(r["lam"] != 0 and r["mean"] != serial[0]["mean"] for r in on_ray if r["kind"] == "ab")  # it steers
    assert (tmp_path / "ray" / "results.json").exists()


def test_a_dead_workers_cell_is_retried(model, ray_config, tmp_path, local_cluster):
    out = tmp_path / "ray"
    out.mkdir()
    doomed = "ab|tiny|L1|sas|2"
    (out / "die_on.json").write_text(json.dumps({doomed: 1}))  # its first worker dies
    ray_run = executor(worker=FlakyCellWorker)
    records = run_evaluation(ray_config, out, model=model, progress=False, executor=ray_run)
    assert ray_run.report == {"retried": [doomed], "failed": []}
    assert len(list((out / "deaths").iterdir())) == 1
    assert_same_cells(records, run_evaluation(ray_config, tmp_path / "serial", model=model, progress=False))


def test_a_cell_that_keeps_failing_is_reported_and_the_run_resumes_serially_or_on_ray(
    model, ray_config, tmp_path, local_cluster, monkeypatch
):
    serial = run_evaluation(ray_config, tmp_path / "serial", model=model, progress=False)
    out = tmp_path / "ray"
    out.mkdir()
    doomed = "ab|tiny|L1|sas|-2"
    (out / "die_on.json").write_text(json.dumps({doomed: 99}))
    with pytest.raises(EvalError, match="(?s)1 cell\\(s\\) failed.*ab\\|tiny\\|L1\\|sas\\|-2: its actor died 2 times"):
        run_evaluation(
            ray_config, out, model=model, progress=False, executor=executor(max_retries=1, worker=FlakyCellWorker)
        )
    saved = [json.loads(line)["key"] for line in (out / "cells.jsonl").read_text().splitlines()]
    assert doomed not in saved and len(saved) == len(serial) - 1  # every other cell is kept

    resumed_serially = out.parent / "resumed"
    resumed_serially.mkdir()
    for name in ("cells.jsonl", "run_identity.json"):  # the Ray run's folder, copied
        (resumed_serially / name).write_text((out / name).read_text())
    calls = []
    real_ab = evaluation._RUNNERS["ab"]
    monkeypatch.setitem(evaluation._RUNNERS, "ab", lambda res, *cell: calls.append(cell) or real_ab(res, *cell))
    assert_same_cells(run_evaluation(ray_config, resumed_serially, model=model, progress=False), serial)
    assert calls == [("tiny", 1, "sas", -2.0)]

    (out / "die_on.json").unlink()  # on Ray: only the failed cell runs
    assert_same_cells(run_evaluation(ray_config, out, model=model, progress=False, executor=executor()), serial)
    assert len((out / "cells.jsonl").read_text().splitlines()) == len(serial)


def test_ray_runs_refuse_what_cannot_work_before_writing_anything(model, ray_config, tmp_path, monkeypatch):
    from sas_lens.distributed import RayExecutor

    with pytest.raises(ValueError, match="model_factory"):
        run_evaluation(ray_config, tmp_path / "out", model=model, executor=RayExecutor())
    with pytest.raises(ValueError, match="executor must be"):
        run_evaluation(ray_config, tmp_path / "out", model=model, executor="dask")
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        run_evaluation(ray_config, tmp_path / "out", executor="ray")
    assert not (tmp_path / "out").exists()


def test_the_latent_index_built_on_two_actors_equals_the_serial_one(model, tmp_path, local_cluster):
    from sas_lens.analysis.latent_index import build_latent_index
    from tests.helpers import random_sae
    from tests.unit.test_latent_index import CONTEXT

    corpus = tmp_path / "corpus.txt"
    words = ["the", "movie", "was", "good", "bad", "and", "story", "fun", "sad", "i", "love", "it"]
    generator = torch.Generator().manual_seed(3)
    corpus.write_text(
        "\n\n".join(
            " ".join(words[int(i)] for i in torch.randint(len(words), (30,), generator=generator)) for _ in range(40)
        )
    )
    sae = random_sae("jumprelu")
    settings = dict(n_tokens=2_000, context_size=CONTEXT, n_top=5, batch_size=4, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each actor: the same matmuls, so that equal activations stay equal
    try:
        serial = build_latent_index(model, sae, corpus, **settings)
    finally:
        torch.set_num_threads(threads)
    ray_run = executor()
    sharded = build_latent_index(model, sae, corpus, executor=ray_run, **settings)
    assert ray_run.report == {"retried": [], "failed": []}
    assert torch.equal(sharded.tokens, serial.tokens) and sharded.n_tokens == serial.n_tokens
    assert torch.equal(sharded.fire_counts, serial.fire_counts)
    torch.testing.assert_close(sharded.values, serial.values, atol=1e-6, rtol=0)
    assert torch.equal(sharded.positions, serial.positions)
    assert (serial.positions[:, 0] >= 0).sum() > 10  # latents fired and were placed
    assert serial.tokens.shape[0] > 8  # more than one batch per shard
