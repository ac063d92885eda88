"""Tiny random models, tokenizers and SAEs: unit tests run in milliseconds on them."""

from __future__ import annotations

import tempfile

WORDS = (
    "the a movie film was is good great bad awful happy sad and but very not i you it this that "
    "of to in on with for love hate story plot actor music ending boring fun dark bright cat dog "
    "news sport market team won lost price rose fell . , ! ? A B ( ) : answer question yes no"
).split()
SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]
D_MODEL = 16
N_LAYERS = 3
HOOK = "blocks.1.hook_resid_post"


_TOKENIZER_DIR: str | None = None


def tiny_tokenizer():
    """A whitespace word-level tokenizer over a fixed vocabulary (no hub).

    It is saved to a temporary folder once and loaded from there, because
    TransformerLens re-creates tokenizers by ``from_pretrained(name_or_path)``.
    """
    global _TOKENIZER_DIR
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if _TOKENIZER_DIR is None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        vocab = {word: i for i, word in enumerate(SPECIAL + WORDS)}
        tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
        )
        tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
        _TOKENIZER_DIR = tempfile.mkdtemp(prefix="sas_lens_tiny_tokenizer_")
        PreTrainedTokenizerFast(
            tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
        ).save_pretrained(_TOKENIZER_DIR)
    return AutoTokenizer.from_pretrained(_TOKENIZER_DIR)


def tiny_model(seed: int = 0, positional_embedding_type: str = "standard"):
    """A 3-layer random HookedSAETransformer with the tiny tokenizer (``"rotary"`` as in Gemma)."""
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    tokenizer = tiny_tokenizer()
    cfg = HookedTransformerConfig(
        n_layers=N_LAYERS,
        d_model=D_MODEL,
        d_head=4,
        n_heads=4,
        d_mlp=32,
        n_ctx=64,
        d_vocab=len(tokenizer),
        act_fn="gelu",
        normalization_type="LN",
        seed=seed,
        model_name="tiny-random",
        default_prepend_bos=True,
        positional_embedding_type=positional_embedding_type,
        rotary_dim=4 if positional_embedding_type == "rotary" else None,
    )
    model = HookedSAETransformer(cfg, tokenizer=tokenizer)
    model.eval()
    return model


ARCHITECTURES = ("jumprelu", "standard", "topk")


def random_sae(
    architecture: str = "jumprelu", *, d_in: int = D_MODEL, d_sae: int = 48, hook_name: str = HOOK, **kwargs
):
    """A random SAELens SAE on the tiny model's hook (see :func:`sas_lens.testing.random_sae`)."""
    from sas_lens.testing import random_sae as make

    return make(architecture, d_in=d_in, d_sae=d_sae, hook_name=hook_name, **kwargs)


def tiny_hf_gemma(seed: int = 0):
    """A 3-layer random transformers Gemma 3 (width 16) with the tiny tokenizer, built offline from a config.

    The same kind of model as the embedded default (RMS norms before and after each sublayer, rotary
    positions, sliding-window and global attention), for the TransformerBridge and plain-transformers paths.
    """
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = tiny_tokenizer()
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=D_MODEL,
        intermediate_size=32,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=4,
        max_position_embeddings=64,
        sliding_window=8,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        architectures=["Gemma3ForCausalLM"],
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():  # norms of random weight, so that a missed norm shows (HF initialises them to 0 = x1)
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(0.0, 0.5)
    return model, tokenizer


def always_raising(error: type[Exception], message: str = "from the search"):
    """A stand-in for a function (e.g. ``strength_for_kl``) that raises ``error(message)`` whatever it is given."""

    def stand_in(*args, **kwargs):
        raise error(message)

    return stand_in
