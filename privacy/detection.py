"""What to detect (entities, regions, custom patterns), which texts could hold it, and what was
found (spans).

This module imports neither Presidio nor spaCy: a contract's detection settings are checked,
and texts that cannot hold PII are set aside, in the gateway process, while detection itself
runs where the models are loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from privacy.policy import PolicyError

DEFAULT_ENTITIES = frozenset(
    {"PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS"}
)
# Entities found by the spaCy NER model, with the model labels that mean them.
NER_LABELS: Mapping[str, frozenset[str]] = {
    "PERSON": frozenset({"PERSON"}),
    "LOCATION": frozenset({"GPE", "LOC", "FAC"}),
    "NRP": frozenset({"NORP"}),
    "ORGANIZATION": frozenset({"ORG"}),
}
# Entities found by Presidio pattern recognizers (see privacy.recognizers). Country-specific
# ones (UK_NHS, US_PASSPORT, ...) are only used when a contract asks for them.
PATTERN_ENTITIES = frozenset(
    {
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "US_SSN",
        "IP_ADDRESS",
        "URL",
        "DATE_TIME",
        "MAC_ADDRESS",
        "US_BANK_NUMBER",
        "US_DRIVER_LICENSE",
        "US_PASSPORT",
        "UK_NHS",
        "UK_NINO",
    }
)
KNOWN_ENTITIES = PATTERN_ENTITIES | frozenset(NER_LABELS)
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR")

# Cheap polars pre-filters: a cell that cannot hold the entity is not given to its recognizer,
# and a cell that cannot hold any configured entity is not sent to a detector at all.
CANDIDATES: Mapping[str, str] = {
    "EMAIL_ADDRESS": r"@",
    "PHONE_NUMBER": r"\d(?:[\s().\-/+]*\d){6}",
    "CREDIT_CARD": r"\d(?:[\s\-]*\d){11}",
    "IBAN_CODE": r"(?i)[a-z]{2}\s*\d{2}",
    "US_SSN": r"\d{3}[\s.\-]?\d{2}[\s.\-]?\d{4}",
    "IP_ADDRESS": r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9a-fA-F]{0,4}:[0-9a-fA-F]{0,4}:",
    "URL": r"(?i)https?://|www\.|\.[a-z]{2,}",
    "DATE_TIME": r"\d",
}
# The NER model is given only texts with a capitalised word.
NAME_WORD = r"[A-Z][a-z]"
NUMERIC_ENTITIES = frozenset(
    {"PHONE_NUMBER", "US_SSN", "CREDIT_CARD", "US_BANK_NUMBER", "UK_NHS", "US_PASSPORT"}
)
# Where digits cannot be a phone, card or SSN: codes that start with a letter and join parts
# with hyphens ("ORD-2023-529959", "T-0900000123"), letters glued to digits ("TCK00012345"),
# and money amounts with two decimals standing alone. Only the candidate pre-filter uses this;
# the detector drops a span that touches such a code anyway.
NOT_A_NUMBER = (
    r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+|[A-Za-z]+[0-9][A-Za-z0-9]*"
    r"|(?:^|[\s$€£(])[0-9]+[.,][0-9]{2}(?:$|[\s)])"
)


def without_codes(texts: pl.Series) -> pl.Series:
    """The texts with codes and amounts blanked: what numeric recognizers need to look at."""
    return texts.str.replace_all(NOT_A_NUMBER, " ")


def candidates(texts: pl.Series, entity: str) -> pl.Series | None:
    """Which texts could hold ``entity`` (None: no pre-filter, every text could)."""
    if entity in NER_LABELS:
        return texts.str.contains(NAME_WORD).fill_null(False)
    pattern = CANDIDATES.get(entity)
    return None if pattern is None else texts.str.contains(pattern).fill_null(False)


def may_hold_pii(texts: pl.Series, config: DetectionConfig) -> pl.Series:
    """Which texts could hold any entity ``config`` asks for; the others need no detector."""
    if config.custom:
        return pl.Series(texts.name, [True] * texts.len(), dtype=pl.Boolean)
    unglued = without_codes(texts) if config.entities & NUMERIC_ENTITIES else texts
    mask = pl.Series(texts.name, [False] * texts.len(), dtype=pl.Boolean)
    for entity in config.entities:
        found = candidates(unglued if entity in NUMERIC_ENTITIES else texts, entity)
        if found is None:
            return pl.Series(texts.name, [True] * texts.len(), dtype=pl.Boolean)
        mask = mask | found
    return mask


@dataclass(frozen=True, order=True)
class Span:
    """A detected entity inside a text: [start, end) character offsets."""

    start: int
    end: int
    entity: str
    score: float


def replace_spans(text: str, spans: Sequence[Span]) -> str:
    """``text`` with each span replaced by its ``<ENTITY>`` placeholder."""
    parts: list[str] = []
    cursor = 0
    for span in sorted(spans):
        parts.append(text[cursor : span.start])
        parts.append(f"<{span.entity}>")
        cursor = span.end
    parts.append(text[cursor:])
    return "".join(parts)


@dataclass(frozen=True)
class CustomPattern:
    """A contract's own pattern recognizer (``Config.metadata['pii_recognizers']``)."""

    entity: str
    patterns: tuple[tuple[str, str, float], ...]
    context: tuple[str, ...] = ()


@dataclass(frozen=True)
class DetectionConfig:
    """Which entities to look for, and how: built from a contract's metadata."""

    entities: frozenset[str] = DEFAULT_ENTITIES
    phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS
    custom: tuple[CustomPattern, ...] = field(default_factory=tuple)
    min_score: float = 0.4
    # Names found by NER must have this many words (2 outside free text, where a lone
    # capitalised word is far more often a city or product than a person).
    min_name_words: int = 1

    @property
    def ner_entities(self) -> frozenset[str]:
        """The requested entities that need the NER model."""
        return self.entities & frozenset(NER_LABELS)

    def structured_only(self) -> DetectionConfig:
        """The same settings without the NER entities: what pattern recognizers find."""
        return replace(self, entities=self.entities - frozenset(NER_LABELS))

    def full_names_only(self) -> DetectionConfig:
        """The same settings, names counted only when they have two words or more."""
        return replace(self, min_name_words=2)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> DetectionConfig:
        """The config a contract's ``Config.metadata`` asks for.

        Keys: ``pii_entities`` (the set), ``pii_entities_extra`` (added to it),
        ``pii_phone_regions`` and ``pii_recognizers`` (custom patterns).

        Raises:
            PolicyError: an unknown entity or a malformed recognizer.
        """
        custom = tuple(_custom_pattern(item) for item in metadata.get("pii_recognizers", ()))
        custom_entities = {c.entity for c in custom}
        entities = set(metadata.get("pii_entities", DEFAULT_ENTITIES))
        entities |= set(metadata.get("pii_entities_extra", ()))
        unknown = entities - KNOWN_ENTITIES - custom_entities
        if unknown:
            raise PolicyError(
                f"unknown PII entities {sorted(unknown)}; known: {sorted(KNOWN_ENTITIES)} "
                "or those of pii_recognizers"
            )
        regions = tuple(metadata.get("pii_phone_regions", DEFAULT_PHONE_REGIONS))
        return cls(
            entities=frozenset(entities | custom_entities), phone_regions=regions, custom=custom
        )


def _custom_pattern(item: Any) -> CustomPattern:
    try:
        entity = str(item["entity"])
        patterns = tuple(
            (str(p.get("name", entity)), str(p["regex"]), float(p.get("score", 0.8)))
            for p in item["patterns"]
        )
        context = tuple(str(c) for c in item.get("context", ()))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PolicyError(
            "pii_recognizers entries need 'entity' and 'patterns' [{'regex', 'score'}]"
        ) from exc
    if not patterns:
        raise PolicyError(f"pii_recognizers entry for {entity} has no patterns")
    for name, regex, _ in patterns:
        try:
            re.compile(regex)
        except re.error as exc:
            raise PolicyError(f"pii_recognizers {entity}/{name}: bad regex ({exc})") from exc
    return CustomPattern(entity=entity, patterns=patterns, context=context)
