"""Loading what steering works on: models, SAEs, contrastive pairs, prompt formats, text corpora, embeddings.

The bottom layer: it imports nothing else of sas_lens but ``errors``, ``typing`` and ``_version``.
"""
