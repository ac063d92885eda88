"""Where a vector came from: model, hook, SAE, extraction settings, version, as frozen dataclasses.

Saved vectors carry this as the JSON header of their ``.safetensors`` file, in the
layout sas_lens has always written (``sae_fingerprint`` at the top level beside an
``sae`` object), so files written by earlier versions load unchanged.

Example:
    >>> p = Provenance.from_json({"name": "x", "layer": 9, "hook_name": "blocks.9.hook_resid_post",
    ...                           "sae": {"d_sae": 16, "architecture": "jumprelu"}, "sae_fingerprint": "ab12"})
    >>> p.sae.fingerprint, p.layer
    ('ab12', 9)
    >>> Provenance.from_json(p.to_json()) == p
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sas_lens.errors import IncompatibleSAEError
from sas_lens.loading.saes import fingerprint_matches, hook_layer, sae_fingerprint, sae_release_and_id


@dataclass(frozen=True)
class SAEIdentity:
    """Which SAE a sparse vector lives in: enough to refuse another one and to say how to load the right one."""

    d_sae: int
    architecture: str | None = None
    fingerprint: str | None = None  # see :func:`~sas_lens.loading.saes.sae_fingerprint`
    release: str | None = None  # SAELens release ("sas_lens" for a shipped SAE)
    id: str | None = None  # SAE id in that release (a shipped SAE: its folder name)

    @classmethod
    def of(cls, sae) -> "SAEIdentity":
        release, sae_id = sae_release_and_id(sae)
        return cls(sae.cfg.d_sae, sae.cfg.architecture(), sae_fingerprint(sae), release, sae_id)

    def describe(self) -> str:
        """``load_sae`` arguments that give this SAE back, or what is known of it."""
        if self.release and self.id:
            return f"sl.load_sae({self.release!r}, {self.id!r})"
        return f"an SAE with d_sae={self.d_sae} (fingerprint {self.fingerprint})"

    def matches(self, sae) -> bool:
        """Whether ``sae`` is this SAE (same width, and same weights where a fingerprint was recorded)."""
        return sae.cfg.d_sae == self.d_sae and fingerprint_matches(self.fingerprint, sae)

    def same_sae_as(self, other: "SAEIdentity") -> bool:
        """Whether two recorded identities name one SAE (same width and fingerprint), e.g. to combine vectors."""
        return self.d_sae == other.d_sae and self.fingerprint == other.fingerprint

    def check(self, sae, what: str) -> None:
        """Raise :class:`IncompatibleSAEError` unless ``sae`` is this SAE; ``what`` names the object that needs it."""
        if not self.matches(sae):
            release, sae_id = sae_release_and_id(sae)
            given = f"{release}/{sae_id}" if release and sae_id else f"d_sae={sae.cfg.d_sae}"
            raise IncompatibleSAEError(
                f"{what} was built on another SAE ({self.describe()}, d_sae={self.d_sae}) than the one given "
                f"({given}). Pass the SAE it was built on, or rebuild it with this SAE."
            )


@dataclass(frozen=True)
class Provenance:
    """A vector's provenance. ``extraction`` and ``topic`` hold the settings of the method that built it;
    ``extra`` keeps any other header keys, so files with more fields round-trip."""

    name: str | None = None
    model_name: str | None = None
    hook_name: str | None = None
    layer: int | None = None
    sae: SAEIdentity | None = None
    extraction: Mapping[str, Any] = field(default_factory=dict)
    topic: Mapping[str, Any] | None = None
    sas_lens_version: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def for_hook(cls, model, hook_name: str, **fields: Any) -> "Provenance":
        """Provenance of something built on ``model`` at ``hook_name``, stamped with this version."""
        from sas_lens._version import __version__

        return cls(
            model_name=model.cfg.model_name,
            hook_name=hook_name,
            layer=hook_layer(hook_name),
            sas_lens_version=__version__,
            **fields,
        )

    def replace(self, **changes: Any) -> "Provenance":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The header layout of saved files (unchanged since the first version)."""
        out: dict[str, Any] = {
            key: value
            for key, value in (
                ("name", self.name),
                ("model_name", self.model_name),
                ("layer", self.layer),
                ("hook_name", self.hook_name),
                ("sas_lens_version", self.sas_lens_version),
            )
            if value is not None
        }
        if self.sae is not None:
            out["sae"] = {
                "release": self.sae.release,
                "id": self.sae.id,
                "d_sae": self.sae.d_sae,
                "architecture": self.sae.architecture,
            }
            out["sae_fingerprint"] = self.sae.fingerprint
        if self.extraction:
            out["extraction"] = dict(self.extraction)
        if self.topic is not None:
            out["topic"] = dict(self.topic)
        return {**self.extra, **out}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None, d_sae: int | None = None) -> "Provenance":
        """Read a header (or a plain metadata dict); ``d_sae`` fills in the SAE width of old files."""
        raw = dict(raw or {})
        sae_raw = raw.pop("sae", None) or {}
        fingerprint = raw.pop("sae_fingerprint", None)
        width = sae_raw.get("d_sae", d_sae)
        sae = None
        if width is not None and (sae_raw or fingerprint or d_sae is not None):
            sae = SAEIdentity(
                int(width), sae_raw.get("architecture"), fingerprint, sae_raw.get("release"), sae_raw.get("id")
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"sae", "extra"}
        fields = {key: raw.pop(key) for key in list(raw) if key in known}
        if fields.get("extraction") is None:
            fields.pop("extraction", None)
        return cls(sae=sae, **fields, extra=raw)
