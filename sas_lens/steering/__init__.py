"""Steering vectors and the hook engine that applies them.

Vectors (:mod:`.vectors`, with their :mod:`.provenance`), built from contrastive pairs
(:mod:`.build_vectors`, Algorithm 1, on residuals from :mod:`.extraction`, with the paper's or a
contrastive :mod:`.selection` rule and :mod:`.diagnostics` of what it kept); their size on one
:mod:`.strength` scale; the edits they
make (:mod:`.edits`: the protocol every kind of steering implements); the hook engine
(:mod:`.engine`, Algorithm 2); steered generation (:mod:`.generation`, :mod:`.hf_backend`),
A/B scoring (:mod:`.scoring`) and fluency (:mod:`.fluency`). Imports only
:mod:`sas_lens.loading` below it.
"""
