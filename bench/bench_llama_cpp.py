"""Does an exported control vector do in llama.cpp what the vector did in sas_lens? (issue 29)

The demo's sentiment vector (contrast top 16, ``gate="none"``, on the shipped 16k layer-9 SAE) at the λ of
next-token KL 0.1 (each sign), exported with ``vec.to_gguf`` and applied in llama.cpp (llama-cpp-python,
the ``serve`` extra) to the very GGUF the library dequantises. Measured on the 32 neutral prompts of
``bench_vectors.py``, the same token ids fed to both:

- next-token agreement: mean KL(sas_lens ‖ llama.cpp) over every prompt position, unsteered and steered
  (Q4_K_M kernels against dequantised float32: the unsteered KL is the floor), and each side's own KL
  from its unsteered self (the steering's size, ~0.1 by construction in sas_lens);
- behaviour: VADER on 24 greedy tokens, the judged shift from each side's own unsteered texts;
- three prompts shown unsteered and steered, side by side.

    .venv/bin/python bench/bench_llama_cpp.py --out ~/bench_llama_cpp
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_vectors import NEUTRAL_PROMPTS  # noqa: E402


def kl(p_log: np.ndarray, q_log: np.ndarray) -> float:
    """Mean over positions of KL(p ‖ q), from log-probabilities ``[n, vocab]``."""
    return float((np.exp(p_log) * (p_log - q_log)).sum(-1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="~/bench_llama_cpp")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--kl", type=float, default=0.1)
    args = parser.parse_args()
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    import torch

    import sas_lens as sl
    from sas_lens.evaluation.judges import sentiment_scores
    from sas_lens.steering.llama_serving import apply_control_vector, llama_generate, llama_log_probs, load_llama

    model, sae = sl.load_model(), sl.load_sae("16k")
    vector = sl.sas_vector(model, sae, "demo:sentiment")
    llm = load_llama(n_ctx=128, n_threads=2)
    ids = [model.to_tokens(p)[0].tolist() for p in NEUTRAL_PROMPTS]

    def sas_lens_log_probs(steering):
        rows = []
        with torch.no_grad(), sl.steer(model, steering, sae=sae):
            for tokens in ids:
                rows.append(torch.log_softmax(model(torch.tensor([tokens]))[0].double(), -1).numpy())
        return rows

    def vader(texts):
        return float(np.mean(sentiment_scores(texts)))

    apply_control_vector(llm, None)
    base_sl = sas_lens_log_probs({})
    base_ll = [llama_log_probs(llm, tokens) for tokens in ids]
    texts_sl = sl.generate(model, NEUTRAL_PROMPTS, max_new_tokens=args.max_new_tokens, backend="hf", batch_size=32)
    texts_ll = [llama_generate(llm, tokens, args.max_new_tokens) for tokens in ids]
    rows = [
        {
            "steering": "unsteered",
            "kl_sas_lens_vs_llama": float(np.mean([kl(a, b) for a, b in zip(base_sl, base_ll)])),
            "judge_sas_lens": vader(texts_sl),
            "judge_llama": vader(texts_ll),
            "examples": list(zip(NEUTRAL_PROMPTS[:3], texts_sl[:3], texts_ll[:3])),
        }
    ]
    for sign in (1.0, -1.0):
        lam = sl.strength_for_kl(model, vector, args.kl, NEUTRAL_PROMPTS, sae=sae, sign=sign, high=4096.0)
        start = time.perf_counter()
        path = vector.to_gguf(out / f"sentiment{'+' if sign > 0 else '-'}.gguf", model, lam=lam, sae=sae)
        export_s = time.perf_counter() - start
        apply_control_vector(llm, path)
        steered_sl = sas_lens_log_probs({vector: lam})
        steered_ll = [llama_log_probs(llm, tokens) for tokens in ids]
        gen_sl = sl.generate(
            model,
            NEUTRAL_PROMPTS,
            steering={vector: lam},
            sae=sae,
            max_new_tokens=args.max_new_tokens,
            backend="hf",
            batch_size=32,
        )
        gen_ll = [llama_generate(llm, tokens, args.max_new_tokens) for tokens in ids]
        row = {
            "steering": f"sentiment {'+' if sign > 0 else '-'}",
            "lam": lam,
            "export_s": export_s,
            "kl_sas_lens_vs_llama": float(np.mean([kl(a, b) for a, b in zip(steered_sl, steered_ll)])),
            "kl_steering_sas_lens": float(np.mean([kl(a, b) for a, b in zip(steered_sl, base_sl)])),
            "kl_steering_llama": float(np.mean([kl(a, b) for a, b in zip(steered_ll, base_ll)])),
            "shift_sas_lens": vader(gen_sl) - rows[0]["judge_sas_lens"],
            "shift_llama": vader(gen_ll) - rows[0]["judge_llama"],
            "examples": list(zip(NEUTRAL_PROMPTS[:3], gen_sl[:3], gen_ll[:3])),
        }
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "examples"}, flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
