"""The PII stage's section of the job spec."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from pipeline.stages.base import StageConfig

DEFAULT_ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN"]


class PiiConfig(StageConfig):
    ADDED_LATER: ClassVar[dict[str, Any]] = {"recognizers": "stock", "phone_regions": None}
    enabled: bool = False
    entities: list[str] = DEFAULT_ENTITIES
    """Presidio entity types to find (any Presidio entity; PERSON, LOCATION and other NER
    types need ``nlp_model``)."""
    score_threshold: float = Field(0.0, ge=0.0, le=1.0)
    """Presidio results below this score are ignored (Presidio's default: 0)."""
    nlp_model: str | None = None
    """A spaCy pipeline (installed package name or path) for NER entities; unset: a blank
    English pipeline, made locally. Nothing is downloaded."""
    replace_with: Literal["placeholder", "mask", "hash"] = "placeholder"
    """``placeholder``: ``<EMAIL_ADDRESS>``; ``mask``: the ``mask`` string; ``hash``:
    ``<EMAIL_ADDRESS:9f86d081884c>``, an HMAC-SHA256 of the value, the same for the same
    value throughout a run (salt: the environment variable REFINERY_PII_SALT if set, else
    derived from the job's name and seed)."""
    mask: str = "<PII>"
    max_entities: int | None = Field(None, ge=0)
    """Reject documents with more replaced spans than this; unset keeps every document."""
    recognizers: Literal["extended", "stock"] = "extended"
    """``extended``: Refinery's CREDIT_CARD, PHONE_NUMBER and US_SSN recognizers
    (pipeline/stages/pii/recognizers.py): every current card IIN range, phone formats of
    many countries next to a phone word, and no redaction of numbers a label calls something
    else (licence, suite, P.O. box) or of house numbers. ``stock``: Presidio's own
    recognizers, span for span."""
    phone_regions: list[str] | None = None
    """Regions (ISO 3166 codes) whose national phone numbers phonenumbers finds without a
    context word; unset: Presidio's eight (US GB DE FR IL IN CA BR). ``extended`` finds other
    countries' numbers by their format next to a phone word. Each region adds a search of
    every candidate, and some plans (AU, IT, NL) verify page ranges, years and build numbers."""
    windowed: bool = True
    """Analyze only windows that can hold the default entities (exact; see
    pipeline/stages/pii/windows.py). Turned off automatically for other entities or an NER model."""

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("name at least one region, or leave phone_regions unset")
        import phonenumbers

        unknown = [r for r in value if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown phone regions {unknown}: use ISO 3166 codes such as US, GB, DE")
        return value

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one entity")
        for entity in value:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", entity):
                raise ValueError(f"'{entity}' is not a Presidio entity name (upper case, such as EMAIL_ADDRESS)")
        return value
