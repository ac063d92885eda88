"""Training and evaluating SAEs on a model's residual stream: activation cache, BatchTopK trainer, evaluation."""
