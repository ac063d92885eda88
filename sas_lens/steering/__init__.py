"""Steering vectors and the hook engine that applies them.

Vectors (:mod:`.vectors`), built from contrastive pairs (:mod:`.build_vectors`, Algorithm 1, on
residuals from :mod:`.extraction`); the edits they make (:mod:`.edits`); the hook engine
(:mod:`.engine`, Algorithm 2); steered generation (:mod:`.generation`, :mod:`.hf_backend`) and
A/B scoring (:mod:`.scoring`). Imports only :mod:`sas_lens.loading` below it.
"""
