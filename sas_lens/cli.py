"""The ``sas-lens`` command line: a thin layer over the Python API, importing it lazily.

Every argument is checked before anything is loaded (argparse types below, then each
command's ``check``), and every user error ends with one line on stderr and status 2;
a real crash still shows its traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from sas_lens.errors import SASLensError


class UsageError(SASLensError):
    """A command-line argument that cannot work, found before anything was loaded."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``sas-lens extract: error: ...``) and status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind, *, low=None, high=None, low_open=False, what="a number"):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if (
            not math.isfinite(value)
            or (low is not None and (value <= low if low_open else value < low))
            or (high is not None and value > high)
        ):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    parse.__doc__ = (
        f"Parse {what}, or say in one line why the text is not one.\n\n"
        "Args:\n    text: the argument as typed.\n\n"
        f"Example:\n    >>> build_parser().parse_args(['extract', 'x', '--out', 'v', '--tau', 'text'])"
        "  # doctest: +SKIP\n"
    )
    return parse


# argparse types: each parses one argument or says, in one line, why it cannot.
positive_int = _number(int, low=1, what="a positive integer")
layer_index = _number(int, low=0, what="a layer index (0 or more)")
unit_interval = _number(float, low=0.0, high=1.0, what="a number in [0, 1]")
positive_float = _number(float, low=0.0, low_open=True, what="a positive number")
finite_float = _number(float, what="a finite number")


def _existing(test, what: str):
    def parse(text: str) -> str:
        if not test(Path(text)):
            raise argparse.ArgumentTypeError(f"no such {what}: {text}")
        return text

    parse.__doc__ = (
        f"The path, if it is a {what}.\n\nArgs:\n    text: the argument as typed.\n\n"
        f"Example:\n    >>> build_parser().parse_args(['steer', 'v.safetensors', '--prompt', 'x', "
        "'--strength', '1'])  # doctest: +SKIP\n"
    )
    return parse


existing_file = _existing(Path.is_file, "file")
existing_dir = _existing(Path.is_dir, "folder")


def sae_spec(text: str) -> str:
    """A shipped SAE's short name or an SAELens folder (the CLI does not download).

    Args:
        text: the argument as typed.

    Example:
        >>> sae_spec("16k")
        '16k'
    """
    from sas_lens.errors import suggest
    from sas_lens.loading import saes

    if text in saes.shipped_saes() or Path(text).expanduser().is_dir():
        return text
    shipped = sorted(saes.shipped_saes())
    raise argparse.ArgumentTypeError(
        f"{text!r} is neither a shipped SAE ({shipped}) nor a folder.{suggest(text, shipped)}"
    )


def _check_texts(paths) -> None:
    from sas_lens.loading.text_data import resolve_text_files

    if paths:
        resolve_text_files(paths)  # raises DataError: missing, empty or binary input


def _demo(args: argparse.Namespace) -> int:
    from sas_lens.demo import run_demo

    run_demo(out_dir=args.out, corpus=args.corpus, index_tokens=args.index_tokens)
    return 0


def _check_train_sae(args: argparse.Namespace) -> None:
    import torch

    from sas_lens.sae_training.train import SAETrainingConfig

    _check_texts(args.texts)
    if len(args.layer) != len(set(args.layer)):
        raise UsageError(f"--layer lists a layer twice: {args.layer}.")
    if len(args.layer) > 1 and "{layer}" not in args.out:
        raise UsageError("With several --layer values, --out must contain {layer}, e.g. --out saes/l{layer}-4k.")
    try:
        args.training_configs = [
            SAETrainingConfig(
                layer=layer,
                hook_point=args.hook_point,
                d_sae=args.d_sae,
                k=args.k,
                n_tokens=args.tokens,
                batch_size=args.batch_size,
                lr=args.lr,
                context_size=args.context_size,
                seed=args.seed,
                device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),  # load_model's default
            )
            for layer in args.layer
        ]
    except ValueError as err:
        raise UsageError(str(err)) from None


def _train_sae(args: argparse.Namespace) -> int:
    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import check_hook_exists
    from sas_lens.sae_training.activation_cache import build_activation_caches
    from sas_lens.sae_training.train import train_sae

    configs = args.training_configs
    model = load_model(args.model, device=configs[0].device)
    for cfg in configs:
        check_hook_exists(model, cfg.hook_name)
    if len(configs) == 1:
        cache_dirs = {configs[0].hook_name: args.cache_dir}
    else:  # one pass over the text caches every layer; each SAE then trains from its own layer's cache
        root = Path(args.cache_dir or Path(args.out.format(layer="s")).with_suffix(".work") / "activations")
        cache_dirs = {cfg.hook_name: root / cfg.hook_name for cfg in configs}
        build_activation_caches(
            model, cache_dirs, args.texts, configs[0].n_tokens, context_size=configs[0].context_size
        )
    for cfg in configs:
        out = args.out.format(layer=cfg.layer)
        work_dir = args.work_dir.format(layer=cfg.layer) if args.work_dir else None
        sae = train_sae(
            cfg, out_dir=out, model=model, texts=args.texts, work_dir=work_dir, cache_dir=cache_dirs[cfg.hook_name]
        )
        print(f"saved {sae.cfg.architecture()} SAE ({sae.cfg.d_sae} latents, {cfg.hook_name}) to {out}")
    return 0


def _eval_sae(args: argparse.Namespace) -> int:
    import json

    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import load_sae
    from sas_lens.sae_training.evaluate import evaluate_sae

    model = load_model(args.model, device=args.device)
    sae = load_sae(args.sae, model=model)
    folder = Path(args.sae) if Path(args.sae).is_dir() else Path(args.out or ".")
    out_json = Path(args.out) if args.out else folder / "eval.json"
    figures = evaluate_sae(
        model,
        sae,
        args.texts,
        n_tokens=args.tokens,
        n_loss_sequences=args.loss_sequences,
        cache_dir=args.cache_dir,
        out_json=out_json,
    )
    print(json.dumps(figures, indent=2))
    print(f"wrote {out_json}")
    return 0


def _check_extract(args: argparse.Namespace) -> None:
    from sas_lens.loading.pairs import load_pairs

    args.loaded_pairs = load_pairs(args.pairs, limit=args.limit)  # bad data fails before the model loads


def _extract(args: argparse.Namespace) -> int:
    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import load_sae
    from sas_lens.steering.build_vectors import dense_vector, sas_vector

    pairs = args.loaded_pairs
    model = load_model(args.model, device=args.device)
    if args.dense:
        vector = dense_vector(model, pairs, layer=args.layer, read=args.read)
    else:
        sae = load_sae(args.sae, model=model)
        chosen = {k: v for k, v in (("selection", args.selection), ("top_k", args.top_k)) if v is not None}
        vector = sas_vector(
            model, sae, pairs, tau=args.tau, read=args.read, mean_over=args.mean_over, gate=args.gate, **chosen
        )
    path = vector.save(args.out)
    size = f"{len(vector)} latents" if not args.dense else f"norm {float(vector.vector.norm()):.4g}"
    print(f"{vector!r}: {size}; saved to {path}")
    if not args.dense:
        print(vector.diagnostics.summary())
    return 0


def _check_steer(args: argparse.Namespace) -> None:
    if len(args.strength) not in (1, len(args.vectors)):
        raise UsageError(f"give one --strength, or one per vector ({len(args.vectors)}); got {len(args.strength)}.")


def _steer(args: argparse.Namespace) -> int:
    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import load_sae
    from sas_lens.steering.generation import generate
    from sas_lens.steering.vectors import load_vector

    strengths = args.strength * len(args.vectors) if len(args.strength) == 1 else args.strength
    model = load_model(args.model, device=args.device)
    sae = load_sae(args.sae, model=model)
    vectors = [load_vector(path, model=model, sae=sae) for path in args.vectors]
    steering = dict(zip(vectors, strengths))
    plain = generate(model, args.prompts, max_new_tokens=args.max_new_tokens)
    steered = generate(model, args.prompts, steering=steering, sae=sae, max_new_tokens=args.max_new_tokens)
    label = ", ".join(f"{v.name} x {s:g}" for v, s in steering.items())
    for prompt, a, b in zip(args.prompts, plain, steered):
        print(f"\n### {prompt}\n  unsteered: {a!r}\n  steered ({label}): {b!r}")
    return 0


def _check_export(args: argparse.Namespace) -> None:
    args.lam = args.lam or [1.0]
    if len(args.lam) not in (1, len(args.vectors)):
        raise UsageError(f"give one --lam, or one per vector ({len(args.vectors)}); got {len(args.lam)}.")


def _export(args: argparse.Namespace) -> int:
    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import load_sae
    from sas_lens.steering.control_vectors import control_vector, write_control_vector
    from sas_lens.steering.vectors import SASVector, load_vector

    lams = args.lam * len(args.vectors) if len(args.lam) == 1 else args.lam
    model = load_model(args.model, device=args.device)
    vectors = [load_vector(path, model=model) for path in args.vectors]
    sae = load_sae(args.sae, model=model) if any(isinstance(v, SASVector) for v in vectors) else None
    steering = dict(zip(vectors, lams))
    cv = control_vector(model, steering, sae=sae, exact=not args.linearise)
    path = write_control_vector(args.gguf, cv)
    for layer, direction in cv.directions.items():
        exactness = "exact" if cv.errors[layer] == 0 else f"linearised, {cv.errors[layer]:.1%} of the edit left out"
        print(f"direction.{layer}: norm {float(direction.norm()):.4g} ({exactness})")
    label = ", ".join(f"{v.name} x {lam:g}" for v, lam in steering.items())
    print(f"{label} -> {path}; in llama.cpp: --control-vector {path} (adds it at every position, prompt included)")
    return 0


def _check_card(args: argparse.Namespace) -> None:
    if args.kl <= 0:
        raise UsageError(f"--kl must be positive, got {args.kl:g}.")


def _card(args: argparse.Namespace) -> int:
    from sas_lens.analysis.attribution import top_latents
    from sas_lens.loading.files import atomic_write_text
    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import load_sae
    from sas_lens.steering.vectors import SASVector, load_vector

    model = load_model(args.model, device=args.device)
    vector = load_vector(args.vector, model=model)
    sae = load_sae(args.sae, model=model) if isinstance(vector, SASVector) else None
    latents = top_latents(vector, sae, model, k=args.k) if sae is not None else None
    text = vector.card(model=model, sae=sae, matched_kl=args.kl, latents=latents)
    out = Path(args.out) if args.out else Path(args.vector).with_suffix(".card.md")
    atomic_write_text(out, text)
    print(text + f"\n(written to {out})")
    return 0


def _index(args: argparse.Namespace) -> int:
    from sas_lens.analysis.latent_index import latent_index
    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import load_sae

    model = load_model(args.model, device=args.device)
    sae = load_sae(args.sae, model=model)
    index = latent_index(
        model,
        sae,
        args.texts,
        n_tokens=args.tokens,
        context_size=args.context_size,
        n_top=args.n_top,
        rebuild=args.rebuild,
    )
    dead = float((index.fire_counts == 0).float().mean())
    print(
        f"indexed {index.n_tokens} tokens for {sae.cfg.d_sae} latents ({dead:.1%} never fired); "
        f"cached in {index.metadata['cached_at']}"
    )
    return 0


def _check_report(args: argparse.Namespace) -> None:
    _check_texts(args.index_texts)


def _check_demo(args: argparse.Namespace) -> None:
    _check_texts(args.corpus)


def _check_index(args: argparse.Namespace) -> None:
    _check_texts(args.texts)


def _check_eval_sae(args: argparse.Namespace) -> None:
    _check_texts(args.texts)


def _report(args: argparse.Namespace) -> int:
    from sas_lens.analysis.report import write_report
    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import load_sae
    from sas_lens.steering.vectors import SASVector, load_vector

    model = load_model(args.model, device=args.device)
    sae = load_sae(args.sae, model=model)
    vectors = [load_vector(path, model=model, sae=sae) for path in args.vectors]  # SAS ones checked against sae
    sparse = [v for v in vectors if isinstance(v, SASVector)]
    index = None
    if args.index_texts:
        from sas_lens.analysis.latent_index import latent_index

        index = latent_index(model, sae, args.index_texts, n_tokens=args.index_tokens)
    width_table = None
    if args.compare_saes:
        from sas_lens.analysis.monosemanticity import compare_widths

        others = [load_sae(name, model=model) for name in args.compare_saes]
        width_table = compare_widths(model, [sae, *others], sparse)
    sections = []
    if args.topics:
        from sas_lens.analysis.report import topic_section
        from sas_lens.topic.alignment import TopicAlignment

        alignments = [TopicAlignment.load(path, sae=sae) for path in args.topics]
        sections.append(topic_section(alignments, model=model, sae=sae, index=index))
    if args.eval:
        from sas_lens.evaluation.results import evaluation_section

        sections.append(evaluation_section(args.eval))
    path = write_report(
        args.out, vectors, model=model, sae=sae, index=index, width_table=width_table, sections=sections
    )
    print(f"wrote {path.resolve()}")
    return 0


def _check_align(args: argparse.Namespace) -> None:
    from sas_lens.loading.text_data import iter_documents, resolve_text_files
    from sas_lens.topic.alignment import demo_topic_texts

    if args.demo_topic:
        args.alignment_texts = demo_topic_texts(args.demo_topic)
    elif args.texts:
        args.alignment_texts = [
            line for doc in iter_documents(resolve_text_files(args.texts)) for line in doc.splitlines() if line.strip()
        ][: args.limit]
    else:
        raise UsageError("give alignment text files, or --demo-topic NAME.")
    if not args.alignment_texts:
        raise UsageError(f"no non-empty lines in {args.texts}.")


def _align(args: argparse.Namespace) -> int:
    from sas_lens.analysis.attribution import logit_lens
    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import load_sae
    from sas_lens.topic.alignment import topic_scores

    texts = args.alignment_texts
    name = args.name or args.demo_topic or "topic"
    model = load_model(args.model, device=args.device)
    sae = load_sae(args.sae, model=model)
    alignment = topic_scores(model, sae, texts, name=name)
    top = alignment.top(args.k)
    for (latent, score), (promotes, _) in zip(top, logit_lens(sae, model, [latent for latent, _ in top], 5)):
        print(f"  latent {latent:>6}  score {score:.3f}  promotes {' '.join(promotes)!r}")
    path = alignment.save(args.out)
    print(f"aligned {name!r} from {len(texts)} texts in {alignment.metadata['scoring_s']:.1f} s; saved to {path}")
    return 0


def _check_eval(args: argparse.Namespace) -> None:
    from sas_lens.evaluation.config import load_config

    args.loaded_config = load_config(args.config)  # a bad config fails before the model loads
    if args.ray is not None:
        from sas_lens.distributed import RayExecutor

        args.executor = RayExecutor(address=args.ray or None, actors=args.actors, gpus_per_actor=args.gpus_per_actor)
        args.executor.check()  # Ray installed, or say how to install it
    else:
        args.executor = "serial"


def _eval(args: argparse.Namespace) -> int:
    from sas_lens.evaluation.results import matched_kl_table, summary_table, topic_table
    from sas_lens.evaluation.runner import run_evaluation

    records = run_evaluation(args.loaded_config, args.out, executor=args.executor, restart=args.restart)
    for table in (summary_table(records), matched_kl_table(records), topic_table(records)):
        if len(table):
            print(table.round(3).to_string(index=False))
    print(
        f"results in {args.out} (results.json, one CSV per kind, summary.csv, matched_kl.csv, topic_summary.csv); "
        f"`sas-lens report ... --eval {args.out}` adds them to a report"
    )
    return 0


def _model_options() -> argparse.ArgumentParser:
    """``--model`` and ``--device``, shared by every command that loads a model (defaults as in the API)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--model", default=None, help="TransformerLens model name (default: the embedded Gemma 3 270M)")
    parent.add_argument("--device", default=None, help="torch device (default: CUDA when available, as load_model)")
    return parent


def _add_demo(commands, model) -> None:
    demo = commands.add_parser("demo", help="run the main job on the embedded Gemma 3 270M")
    demo.add_argument("--out", default="sas_lens_output", help="folder for everything the demo writes")
    demo.add_argument(
        "--corpus",
        nargs="*",
        default=None,
        help="text files for the latents' top contexts (default: the demo pair texts)",
    )
    demo.add_argument("--index-tokens", type=positive_int, default=100_000, help="corpus tokens to index")
    demo.set_defaults(run=_demo, check=_check_demo)


def _add_train_sae(commands, model) -> None:
    train = commands.add_parser(
        "train-sae", parents=[model], help="train a BatchTopK (JumpReLU inference) SAE on a residual hook"
    )
    train.add_argument("texts", nargs="+", help="text files, folders of them, or hf:<dataset id>")
    train.add_argument(
        "--out",
        required=True,
        help="SAELens folder to write; with several layers a pattern with {layer} (saes/l{layer}-4k)",
    )
    train.add_argument(
        "--layer",
        type=layer_index,
        nargs="+",
        required=True,
        help="trains on blocks.<layer>.<hook point>; several layers share one activation pass",
    )
    train.add_argument(
        "--hook-point", default="hook_resid_post", help="hook within the block (default: hook_resid_post)"
    )
    train.add_argument("--d-sae", type=positive_int, default=16384)
    train.add_argument("--k", type=positive_int, default=64, help="mean active latents per token (BatchTopK)")
    train.add_argument("--tokens", type=positive_int, default=2_000_000, help="distinct training tokens")
    train.add_argument("--batch-size", type=positive_int, default=4096)
    train.add_argument("--lr", type=positive_float, default=4e-4)
    train.add_argument("--context-size", type=positive_int, default=128)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--work-dir",
        default=None,
        help="checkpoints, and a single layer's activation cache (default: <out>.work; may use {layer})",
    )
    train.add_argument(
        "--cache-dir",
        default=None,
        help="activation cache to build or reuse; with several layers the folder holding one per hook",
    )
    train.set_defaults(run=_train_sae, check=_check_train_sae)


def _add_eval_sae(commands, model) -> None:
    evaluate = commands.add_parser(
        "eval-sae", parents=[model], help="explained variance, CE loss recovered, L0, dead/dense latents"
    )
    evaluate.add_argument("sae", type=sae_spec, help="SAELens folder or shipped short name")
    evaluate.add_argument("texts", nargs="+", help="held-out text files or folders (never used in training)")
    evaluate.add_argument(
        "--tokens", type=positive_int, default=100_000, help="tokens for EV, L0, dead and dense latents"
    )
    evaluate.add_argument(
        "--loss-sequences", type=positive_int, default=64, help="128-token sequences for the loss figures"
    )
    evaluate.add_argument("--cache-dir", default=None, help="keep held-out activations here (reused across SAEs)")
    evaluate.add_argument("--out", default=None, help="JSON path (default: eval.json in the SAE folder)")
    evaluate.set_defaults(run=_eval_sae, check=_check_eval_sae)


def _add_extract(commands, model) -> None:
    extract = commands.add_parser("extract", parents=[model], help="build a steering vector from contrastive pairs")
    extract.add_argument("pairs", help="demo:<name>, or a CAA .json, .jsonl or .csv file")
    extract.add_argument("--out", required=True, help="vector file to write (.safetensors)")
    extract.add_argument(
        "--sae", type=sae_spec, default=None, help="SAE (shipped short name or folder; default: the shipped 16k)"
    )
    extract.add_argument("--dense", action="store_true", help="build the dense CAA vector instead")
    extract.add_argument("--layer", type=layer_index, default=9, help="layer of a dense vector (SAS: the SAE's layer)")
    extract.add_argument(
        "--selection",
        choices=["paper", "contrast", "decompose", "attribution"],
        default=None,
        help="which latents: 'paper' (Algorithms 1 and 2 exactly), 'contrast' (the top-k latents "
        "whose mean code differs most), 'decompose' (the top-k that rebuild the dense "
        "vector) or 'attribution' (the top-k whose decoder row most raises the positive completions' "
        "log-probability against the negatives'); default: sas_vector's",
    )
    extract.add_argument(
        "--top-k", type=positive_int, default=None, help="latents kept by contrast/decompose/attribution"
    )
    extract.add_argument(
        "--gate",
        choices=["sae", "none"],
        default=None,
        help="apply through the SAE's σ ('sae', the paper) or decode the shift as is ('none'); "
        "default: 'sae' for --selection paper, else 'none'",
    )
    extract.add_argument("--tau", type=unit_interval, default=0.7, help="frequency filter of Algorithm 1, in [0, 1]")
    extract.add_argument(
        "--read",
        choices=["mean", "last", "tokens", "token_mean"],
        default="mean",
        help="completion pairs: encode the mean residual, the last token's, or every token's",
    )
    extract.add_argument("--mean-over", choices=["all", "active"], default="all")
    extract.add_argument("--limit", type=positive_int, default=None, help="use the first N pairs")
    extract.set_defaults(run=_extract, check=_check_extract)


def _add_steer(commands, model) -> None:
    steer = commands.add_parser("steer", parents=[model], help="unsteered and steered continuations side by side")
    steer.add_argument("vectors", nargs="+", type=existing_file, help="vector files from `sas-lens extract`")
    steer.add_argument("--prompt", dest="prompts", action="append", required=True)
    steer.add_argument(
        "--strength", type=finite_float, action="append", required=True, help="λ (once, or once per vector)"
    )
    steer.add_argument("--sae", type=sae_spec, default=None)
    steer.add_argument("--max-new-tokens", type=positive_int, default=30)
    steer.set_defaults(run=_steer, check=_check_steer)


def _add_export(commands, model) -> None:
    export = commands.add_parser(
        "export", parents=[model], help="write vectors at their strengths as a llama.cpp control vector (GGUF)"
    )
    export.add_argument("vectors", nargs="+", type=existing_file, help="vector files from `sas-lens extract`")
    export.add_argument("--gguf", required=True, help="the control-vector file to write")
    export.add_argument(
        "--lam", type=finite_float, action="append", default=None, help="λ baked in (once, or once per vector; 1)"
    )
    export.add_argument("--sae", type=sae_spec, default=None, help="the SAE the SAS vectors were built on")
    export.add_argument(
        "--linearise",
        action="store_true",
        help="export an SAS vector steered through the SAE's σ as its mean edit (its error is printed)",
    )
    export.set_defaults(run=_export, check=_check_export)


def _add_card(commands, model) -> None:
    card = commands.add_parser(
        "card", parents=[model], help="print a vector's card (provenance, λ at matched KL, top latents), as markdown"
    )
    card.add_argument("vector", type=existing_file, help="a vector file from `sas-lens extract`")
    card.add_argument("--sae", type=sae_spec, default=None, help="the SAE an SAS vector was built on")
    card.add_argument("--kl", type=finite_float, default=0.1, help="the next-token KL whose λ the card gives")
    card.add_argument("--k", type=positive_int, default=8, help="top latents listed")
    card.add_argument("--out", default=None, help="where to write it (default: beside the vector, .card.md)")
    card.set_defaults(run=_card, check=_check_card)


def _add_index(commands, model) -> None:
    index = commands.add_parser(
        "index", parents=[model], help="index every SAE latent's top contexts and frequency over a corpus"
    )
    index.add_argument("texts", nargs="+", help="text files or folders")
    index.add_argument(
        "--sae", type=sae_spec, default=None, help="SAE (shipped short name or folder; default: the shipped 16k)"
    )
    index.add_argument("--tokens", type=positive_int, default=300_000)
    index.add_argument("--context-size", type=positive_int, default=64)
    index.add_argument("--n-top", type=positive_int, default=20, help="contexts kept per latent")
    index.add_argument("--rebuild", action="store_true", help="rebuild even if cached")
    index.set_defaults(run=_index, check=_check_index)


def _add_report(commands, model) -> None:
    report = commands.add_parser("report", parents=[model], help="write a self-contained HTML report of vector files")
    report.add_argument("vectors", nargs="+", type=existing_file, help="vector files from `sas-lens extract`")
    report.add_argument(
        "--topics", nargs="*", type=existing_file, default=[], help="topic alignments (from `sas-lens align`)"
    )
    report.add_argument("--out", default="sas_lens_report.html")
    report.add_argument("--sae", type=sae_spec, default=None, help="the SAE the SAS vectors were built on")
    report.add_argument("--index-texts", nargs="*", default=None, help="corpus for top contexts (see `index`)")
    report.add_argument("--index-tokens", type=positive_int, default=300_000)
    report.add_argument(
        "--compare-saes",
        nargs="*",
        type=sae_spec,
        default=None,
        help="other SAEs of the same hook: rebuild each SAS vector on them and compare widths",
    )
    report.add_argument(
        "--eval", type=existing_dir, default=None, help="an output folder of `sas-lens eval` to include"
    )
    report.set_defaults(run=_report, check=_check_report)


def _add_align(commands, model) -> None:
    align = commands.add_parser("align", parents=[model], help="score SAE latents against a topic's example texts")
    align.add_argument("texts", nargs="*", help="text files (one example per line) or folders")
    align.add_argument(
        "--demo-topic", default=None, help="a shipped topic text set instead (medicine, sports, business)"
    )
    align.add_argument("--name", default=None)
    align.add_argument("--limit", type=positive_int, default=200, help="at most this many example lines")
    align.add_argument("--k", type=positive_int, default=10, help="aligned latents to print")
    align.add_argument("--out", required=True, help="alignment file to write (.safetensors)")
    align.add_argument("--sae", type=sae_spec, default=None)
    align.set_defaults(run=_align, check=_check_align)


def _add_eval(commands, model) -> None:
    evaluate_run = commands.add_parser("eval", help="A/B behaviour, capability and open-ended evaluation (resumable)")
    evaluate_run.add_argument(
        "config", help="a .toml or .json evaluation config (see sas_lens.evaluation.config.EvalConfig)"
    )
    evaluate_run.add_argument("--out", default="sas_lens_eval", help="results folder; rerun to resume")
    evaluate_run.add_argument(
        "--restart",
        action="store_true",
        help="delete the results a run with other settings left in --out and start over",
    )
    evaluate_run.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run the cells on Ray actors: on the cluster at ADDRESS ('auto', 'ray://head:10001'), "
        "or on a local one without ADDRESS (pip install -e '.[ray]')",
    )
    evaluate_run.add_argument(
        "--actors", type=int, default=None, help="Ray actors (default: one per GPU of the cluster, else one per CPU)"
    )
    evaluate_run.add_argument(
        "--gpus-per-actor",
        type=float,
        default=None,
        help="GPUs each Ray actor holds (default: 1 when the cluster has GPUs)",
    )
    evaluate_run.set_defaults(run=_eval, check=_check_eval)


def build_parser() -> argparse.ArgumentParser:
    """The ``sas-lens`` parser: one sub-command per job, each checking its arguments as it parses them.

    Example:
        >>> build_parser().parse_args(["extract", "demo:sentiment", "--out", "v"]).tau
        0.7
    """
    parser = _Parser(prog="sas-lens", description="Sparse activation steering on TransformerLens + SAELens.")
    commands = parser.add_subparsers(dest="command", required=True)
    model = _model_options()
    for add in (
        _add_demo,
        _add_train_sae,
        _add_eval_sae,
        _add_extract,
        _add_steer,
        _add_export,
        _add_card,
        _add_index,
        _add_report,
        _add_align,
        _add_eval,
    ):
        add(commands, model)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``sas-lens``; returns the exit status (2 for a user error, after one line on stderr).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Example:
        >>> main(["extract", "demo:sentiment", "--out", "v", "--tau", "0.5"])  # doctest: +SKIP
    """
    args = build_parser().parse_args(argv)
    try:
        args.check(args)  # everything the arguments can tell, before any model is loaded
        return args.run(args)
    except SASLensError as err:
        print(f"sas-lens {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
