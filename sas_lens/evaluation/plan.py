"""Planning an evaluation run: every (kind, behaviour, layer, method, λ) cell, in the order they are run."""

from __future__ import annotations

from sas_lens.evaluation.config import EvalConfig

Cell = tuple[str, str, int, str, float]


def base_method(method: str) -> str:
    """The steering method of a cell's method name: ``"sas@tau=0.5"`` → ``"sas"``.

    Args:
        method: a method, or a sweep variant ``method@setting=value``.

    Example:
        >>> base_method("dense@n=50"), base_method("sas")
        ('dense', 'sas')
    """
    return method.split("@", 1)[0]


def variant_settings(method: str) -> dict[str, float]:
    """The settings a sweep variant changes: ``"sas@tau=0.5"`` → ``{"tau": 0.5}``; none for a plain method.

    Args:
        method: a cell's method name.

    Example:
        >>> variant_settings("sas@n=50")
        {'n': 50.0}
    """
    if "@" not in method:
        return {}
    key, value = method.split("@", 1)[1].split("=")
    return {key: float(value)}


def steers_at_zero(method: str) -> bool:
    """Whether λ = 0 still changes the model: SAS without Δ splices the SAE's reconstruction in.

    Args:
        method: a cell's method name.

    Example:
        >>> steers_at_zero("sas@delta=0"), steers_at_zero("sas")
        (True, False)
    """
    return variant_settings(method).get("delta") == 0


def plan_cells(cfg: EvalConfig) -> list[Cell]:
    """Every (kind, behaviour, layer, method, λ) of the run, in the order they are run (for an ``ab_kl`` cell
    the "λ" is the signed KL target).

    Args:
        cfg: the run's config.

    Example:
        >>> from sas_lens.evaluation.config import EvalConfig
        >>> plan_cells(EvalConfig(behaviours=("b",), data_dir=".", methods=("dense",), lams={"dense": (4.0,)}))[0]
        ('ab', 'b', 9, 'dense', 4.0)
    """
    cells = []
    main_layer = cfg.layers[0]
    for behaviour in cfg.behaviours:
        for layer in cfg.layers:
            if layer != main_layer and behaviour != (cfg.layer_sweep_behaviour or behaviour):
                continue
            for method in cfg.methods:
                if method == "sas" and cfg.sae_for(layer) is False:
                    continue
                if method == "prompting" and layer != main_layer:
                    continue  # prompting does not depend on the layer
                cells += [("ab", behaviour, layer, method, lam) for lam in cfg.grid(method)]
                if layer == main_layer:
                    for kind in ("capability", "open") if cfg.open_ended else ("capability",):  # 0: none
                        cells += [(kind, behaviour, layer, method, lam) for lam in cfg.grid(method, costs=True)]
    if cfg.delta_ablation:
        cells += _delta_ablation_cells(cfg)
    steered = [m for m in cfg.methods if m != "prompting" and (m != "sas" or cfg.sae_for(main_layer) is not False)]
    if cfg.kl_targets and steered:
        cells += _matched_kl_cells(cfg, steered, cells)
    for a, b in cfg.compositions:  # "sas@b=4": vector b at 4 (the method's variant), vector a at the cell's λ
        cells += [
            ("composition", f"{a}+{b}", main_layer, f"{method}@b={lam_b:g}", lam_a)
            for method in steered
            for lam_b in cfg.composition_lams
            for lam_a in cfg.composition_lams
        ]
    for behaviour in cfg.conditional:
        cells += [
            ("conditional", behaviour, main_layer, method, lam)
            for method in steered
            for lam in cfg.grid(method)
            if lam != 0
        ]
    if cfg.sae_for(main_layer) is False:
        sweeps = [f"dense@n={n}" for n in cfg.data_sizes]
    else:
        sweeps = [f"sas@tau={t:g}" for t in cfg.tau_sweep] + [
            f"{m}@n={n}" for n in cfg.data_sizes for m in ("sas", "dense")
        ]
    for behaviour in cfg.behaviours:
        for variant in sweeps:
            cells += [("ab", behaviour, main_layer, variant, lam) for lam in cfg.grid(base_method(variant))]
    for topic in cfg.topics:
        cells += [("topic", topic, main_layer, "amplify", lam) for lam in sorted({0.0, *cfg.topic_strengths})]
        cells += [
            ("topic", topic, main_layer, mode, lam) for mode in ("swap", "clamp", "weight") for lam in cfg.topic_swap
        ]
        if cfg.finetune_steps:
            cells.append(("topic", topic, main_layer, "finetune", float(cfg.finetune_steps)))
    return cells


def _delta_ablation_cells(cfg: EvalConfig) -> list[Cell]:
    """SAS without Δ beside SAS, at every layer with an SAE: A/B cells, and capability cells for both."""
    cells = []
    main_layer = cfg.layers[0]
    for behaviour in cfg.behaviours:
        for layer in cfg.layers:
            if cfg.sae_for(layer) is False or (
                layer != main_layer and behaviour != (cfg.layer_sweep_behaviour or behaviour)
            ):
                continue
            cells += [("ab", behaviour, layer, "sas@delta=0", lam) for lam in cfg.grid("sas")]
            for method in ("sas@delta=0",) if layer == main_layer else ("sas", "sas@delta=0"):
                cells += [("capability", behaviour, layer, method, lam) for lam in cfg.grid("sas", costs=True)]
    return cells


def _matched_kl_cells(cfg: EvalConfig, steered: list[str], planned: list[Cell]) -> list[Cell]:
    """At the main layer, an ``ab_kl`` cell per behaviour, steered method and signed KL target (its "λ": +0.1
    is the positive λ at KL 0.1), and the unsteered A/B cell the shifts are read from, if not planned already."""
    main_layer = cfg.layers[0]
    cells = []
    for behaviour in cfg.behaviours:
        if not any(
            (kind, b, layer, lam) == ("ab", behaviour, main_layer, 0.0) and not steers_at_zero(method)
            for kind, b, layer, method, lam in planned
        ):
            cells.append(("ab", behaviour, main_layer, steered[0], 0.0))
        cells += [
            ("ab_kl", behaviour, main_layer, method, sign * kl)
            for method in steered
            for kl in sorted(set(cfg.kl_targets))
            for sign in (1, -1)
        ]
    return cells
