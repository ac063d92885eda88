"""The ``sas-lens`` command line: a thin layer over the Python API, importing it lazily."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from sas_lens.demo import run_demo

    run_demo(out_dir=args.out, corpus=args.corpus, index_tokens=args.index_tokens)
    return 0


def _train_sae(args: argparse.Namespace) -> int:
    from sas_lens.sae_training.train import SAETrainingConfig, train_sae

    cfg = SAETrainingConfig(
        layer=args.layer, hook_point=args.hook_point, d_sae=args.d_sae, k=args.k, n_tokens=args.tokens, batch_size=args.batch_size,
        lr=args.lr, context_size=args.context_size, device=args.device, seed=args.seed,
    )
    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import check_hook_exists
    from sas_lens.loading.text_data import resolve_text_files

    resolve_text_files(args.texts)  # fail on bad input before spending time on the model
    model = load_model(args.model, device=args.device)
    check_hook_exists(model, cfg.hook_name)
    sae = train_sae(cfg, out_dir=args.out, model=model, texts=args.texts, work_dir=args.work_dir,
                    cache_dir=args.cache_dir)
    print(f"saved {sae.cfg.architecture()} SAE ({sae.cfg.d_sae} latents) to {args.out}")
    return 0


def _eval_sae(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import load_sae
    from sas_lens.loading.text_data import resolve_text_files
    from sas_lens.sae_training.evaluate import evaluate_sae

    resolve_text_files(args.texts)
    model = load_model(args.model, device=args.device)
    sae = load_sae(args.sae, model=model)
    folder = Path(args.sae) if Path(args.sae).is_dir() else Path(args.out or ".")
    out_json = Path(args.out) if args.out else folder / "eval.json"
    figures = evaluate_sae(
        model, sae, args.texts, n_tokens=args.tokens, n_loss_sequences=args.loss_sequences,
        cache_dir=args.cache_dir, out_json=out_json,
    )
    print(json.dumps(figures, indent=2))
    print(f"wrote {out_json}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from sas_lens.loading.models import load_model
    from sas_lens.loading.pairs import load_pairs
    from sas_lens.loading.saes import load_sae
    from sas_lens.steering.build_vectors import dense_vector, sas_vector

    pairs = load_pairs(args.pairs, limit=args.limit)  # bad data fails before the model loads
    model = load_model(args.model, device=args.device)
    if args.dense:
        vector = dense_vector(model, pairs, layer=args.layer, read=args.read)
    else:
        sae = load_sae(args.sae, model=model)
        vector = sas_vector(model, sae, pairs, tau=args.tau, read=args.read, mean_over=args.mean_over)
    path = vector.save(args.out)
    size = f"{len(vector)} latents" if not args.dense else f"norm {float(vector.vector.norm()):.4g}"
    print(f"{vector!r}: {size}; saved to {path}")
    return 0


def _steer(args: argparse.Namespace) -> int:
    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import load_sae
    from sas_lens.steering.generation import generate
    from sas_lens.steering.vectors import load_vector

    if len(args.strength) not in (1, len(args.vectors)):
        raise SystemExit("sas-lens steer: give one --strength, or one per vector.")
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


def _index(args: argparse.Namespace) -> int:
    from sas_lens.analysis.latent_index import latent_index
    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import load_sae
    from sas_lens.loading.text_data import resolve_text_files

    resolve_text_files(args.texts)
    model = load_model(args.model, device=args.device)
    sae = load_sae(args.sae, model=model)
    index = latent_index(model, sae, args.texts, n_tokens=args.tokens, context_size=args.context_size,
                         n_top=args.n_top, rebuild=args.rebuild)
    dead = float((index.fire_counts == 0).float().mean())
    print(f"indexed {index.n_tokens} tokens for {sae.cfg.d_sae} latents ({dead:.1%} never fired); "
          f"cached in {index.metadata['cached_at']}")
    return 0


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
    path = write_report(args.out, vectors, model=model, sae=sae, index=index, width_table=width_table,
                        sections=sections)
    print(f"wrote {path.resolve()}")
    return 0


def _align(args: argparse.Namespace) -> int:
    from sas_lens.analysis.attribution import logit_lens
    from sas_lens.loading.models import load_model
    from sas_lens.loading.saes import load_sae
    from sas_lens.topic.alignment import demo_topic_texts, topic_scores

    if args.demo_topic:
        texts = demo_topic_texts(args.demo_topic)
    else:
        from sas_lens.loading.text_data import iter_documents, resolve_text_files

        texts = [line for doc in iter_documents(resolve_text_files(args.texts)) for line in doc.splitlines()
                 if line.strip()][: args.limit]
    if not texts:
        raise SystemExit("sas-lens align: give alignment text files, or --demo-topic NAME.")
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


def _eval(args: argparse.Namespace) -> int:
    from sas_lens.evaluation.results import summary_table, topic_table
    from sas_lens.evaluation.config import load_config
    from sas_lens.evaluation.runner import run_evaluation

    cfg = load_config(args.config)  # a bad config fails before the model loads
    records = run_evaluation(cfg, args.out)
    for table in (summary_table(records), topic_table(records)):
        if len(table):
            print(table.round(3).to_string(index=False))
    print(f"results in {args.out} (results.json, one CSV per kind, summary.csv, topic_summary.csv); "
          f"`sas-lens report ... --eval {args.out}` adds them to a report")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sas-lens", description="Sparse activation steering on TransformerLens + SAELens.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the main job on the embedded Gemma 3 270M")
    demo.add_argument("--out", default="sas_lens_output", help="folder for everything the demo writes")
    demo.add_argument("--corpus", nargs="*", default=None,
                      help="text files for the latents' top contexts (default: the demo pair texts)")
    demo.add_argument("--index-tokens", type=int, default=100_000, help="corpus tokens to index")
    demo.set_defaults(run=_demo)

    train = commands.add_parser("train-sae", help="train a BatchTopK (JumpReLU inference) SAE on a residual hook")
    train.add_argument("texts", nargs="+", help="text files, folders of them, or hf:<dataset id>")
    train.add_argument("--out", required=True, help="SAELens folder to write")
    train.add_argument("--model", default=None, help="TransformerLens model name (default: the embedded Gemma 3 270M)")
    train.add_argument("--layer", type=int, required=True, help="trains on blocks.<layer>.<hook point>")
    train.add_argument("--hook-point", default="hook_resid_post", help="hook within the block (default: hook_resid_post)")
    train.add_argument("--d-sae", type=int, default=16384)
    train.add_argument("--k", type=int, default=64, help="mean active latents per token (BatchTopK)")
    train.add_argument("--tokens", type=int, default=2_000_000, help="distinct training tokens")
    train.add_argument("--batch-size", type=int, default=4096)
    train.add_argument("--lr", type=float, default=4e-4)
    train.add_argument("--context-size", type=int, default=128)
    train.add_argument("--device", default="cpu")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--work-dir", default=None, help="checkpoints, and the activation cache (default: <out>.work)")
    train.add_argument("--cache-dir", default=None, help="activation cache to build or reuse (shared by SAEs of one hook)")
    train.set_defaults(run=_train_sae)

    evaluate = commands.add_parser("eval-sae", help="explained variance, CE loss recovered, L0, dead/dense latents")
    evaluate.add_argument("sae", help="SAELens folder or shipped short name")
    evaluate.add_argument("texts", nargs="+", help="held-out text files or folders (never used in training)")
    evaluate.add_argument("--model", default=None, help="TransformerLens model name (default: the embedded Gemma 3 270M)")
    evaluate.add_argument("--tokens", type=int, default=100_000, help="tokens for EV, L0, dead and dense latents")
    evaluate.add_argument("--loss-sequences", type=int, default=64, help="128-token sequences for the loss figures")
    evaluate.add_argument("--cache-dir", default=None, help="keep held-out activations here (reused across SAEs)")
    evaluate.add_argument("--out", default=None, help="JSON path (default: eval.json in the SAE folder)")
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(run=_eval_sae)
    extract = commands.add_parser("extract", help="build a steering vector from contrastive pairs")
    extract.add_argument("pairs", help="demo:<name>, or a CAA .json, .jsonl or .csv file")
    extract.add_argument("--out", required=True, help="vector file to write (.safetensors)")
    extract.add_argument("--sae", default=None, help="SAE (shipped short name or folder; default: the shipped 16k)")
    extract.add_argument("--dense", action="store_true", help="build the dense CAA vector instead")
    extract.add_argument("--layer", type=int, default=9, help="layer of a dense vector (SAS: the SAE's layer)")
    extract.add_argument("--tau", type=float, default=0.7)
    extract.add_argument("--read", choices=["mean", "last"], default="mean")
    extract.add_argument("--mean-over", choices=["all", "active"], default="all")
    extract.add_argument("--limit", type=int, default=None, help="use the first N pairs")
    extract.add_argument("--model", default=None)
    extract.add_argument("--device", default="cpu")
    extract.set_defaults(run=_extract)

    steer = commands.add_parser("steer", help="unsteered and steered continuations side by side")
    steer.add_argument("vectors", nargs="+", help="vector files from `sas-lens extract`")
    steer.add_argument("--prompt", dest="prompts", action="append", required=True)
    steer.add_argument("--strength", type=float, action="append", required=True, help="λ (once, or once per vector)")
    steer.add_argument("--sae", default=None)
    steer.add_argument("--max-new-tokens", type=int, default=30)
    steer.add_argument("--model", default=None)
    steer.add_argument("--device", default="cpu")
    steer.set_defaults(run=_steer)

    index = commands.add_parser("index", help="index every SAE latent's top contexts and frequency over a corpus")
    index.add_argument("texts", nargs="+", help="text files or folders")
    index.add_argument("--sae", default=None, help="SAE (shipped short name or folder; default: the shipped 16k)")
    index.add_argument("--tokens", type=int, default=300_000)
    index.add_argument("--context-size", type=int, default=64)
    index.add_argument("--n-top", type=int, default=20, help="contexts kept per latent")
    index.add_argument("--rebuild", action="store_true", help="rebuild even if cached")
    index.add_argument("--model", default=None)
    index.add_argument("--device", default="cpu")
    index.set_defaults(run=_index)

    report = commands.add_parser("report", help="write a self-contained HTML report of vector files")
    report.add_argument("vectors", nargs="+", help="vector files from `sas-lens extract`")
    report.add_argument("--topics", nargs="*", default=[], help="topic alignments (from `sas-lens align`)")
    report.add_argument("--out", default="sas_lens_report.html")
    report.add_argument("--sae", default=None, help="the SAE the SAS vectors were built on")
    report.add_argument("--index-texts", nargs="*", default=None, help="corpus for top contexts (see `index`)")
    report.add_argument("--index-tokens", type=int, default=300_000)
    report.add_argument("--compare-saes", nargs="*", default=None,
                        help="other SAEs of the same hook: rebuild each SAS vector on them and compare widths")
    report.add_argument("--eval", default=None, help="an output folder of `sas-lens eval` to include")
    report.add_argument("--model", default=None)
    report.add_argument("--device", default="cpu")
    report.set_defaults(run=_report)

    align = commands.add_parser("align", help="score SAE latents against a topic's example texts")
    align.add_argument("texts", nargs="*", help="text files (one example per line) or folders")
    align.add_argument("--demo-topic", default=None, help="a shipped topic text set instead (medicine, sports, business)")
    align.add_argument("--name", default=None)
    align.add_argument("--limit", type=int, default=200, help="at most this many example lines")
    align.add_argument("--k", type=int, default=10, help="aligned latents to print")
    align.add_argument("--out", required=True, help="alignment file to write (.safetensors)")
    align.add_argument("--sae", default=None)
    align.add_argument("--model", default=None)
    align.add_argument("--device", default="cpu")
    align.set_defaults(run=_align)

    evaluate_run = commands.add_parser("eval", help="A/B behaviour, capability and open-ended evaluation (resumable)")
    evaluate_run.add_argument("config", help="a .toml or .json evaluation config (see sas_lens.evaluation.EvalConfig)")
    evaluate_run.add_argument("--out", default="sas_lens_eval", help="results folder; rerun to resume")
    evaluate_run.set_defaults(run=_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sas_lens.errors import SASLensError

    try:
        return args.run(args)
    except SASLensError as err:
        print(f"sas-lens {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
