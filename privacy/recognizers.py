"""Presidio recognizers chosen deliberately: offline, and only for the entities asked for."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    DateRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    NhsRecognizer,
    PhoneRecognizer,
    UkNinoRecognizer,
    UrlRecognizer,
    UsBankRecognizer,
    UsLicenseRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
)
from tldextract import TLDExtract

from privacy.policy import PolicyError

DEFAULT_ENTITIES = frozenset(
    {
        "PERSON",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "US_SSN",
        "IP_ADDRESS",
    }
)
# Entities found by the spaCy NER model, with the model labels that mean them.
NER_LABELS: Mapping[str, frozenset[str]] = {
    "PERSON": frozenset({"PERSON"}),
    "LOCATION": frozenset({"GPE", "LOC", "FAC"}),
    "NRP": frozenset({"NORP"}),
    "ORGANIZATION": frozenset({"ORG"}),
}
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR")


@cache
def offline_tld_extractor() -> TLDExtract:
    """tldextract on its bundled public-suffix snapshot: never fetches, never writes a cache."""
    return TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer, validating domains against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return bool(offline_tld_extractor()(pattern_text).fqdn)


class LuhnCardRecognizer(CreditCardRecognizer):
    """A 12-19 digit number, plain or grouped as cards are printed, that passes the Luhn check.

    Presidio's own card pattern only knows some issuer prefixes and lengths (it misses, for
    example, 19-digit Visa and 12-digit Maestro numbers); its Luhn validation is kept.
    """

    def __init__(self) -> None:
        super().__init__(
            patterns=[
                Pattern("card digits", r"\b\d{12,19}\b", 0.3),
                Pattern("card in groups of 4", r"\b\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?\b", 0.3),
                Pattern("card 4-6-4/5", r"\b\d{4}[ -]\d{6}[ -]\d{4,5}\b", 0.3),
            ],
            name="LuhnCardRecognizer",
        )


class NanpPhoneRecognizer(PatternRecognizer):
    """North American numbers in their usual written forms, extensions included.

    Presidio's PhoneRecognizer (libphonenumber) keeps only numbers that are valid for a region,
    so numbers with unassigned area codes slip through; these shapes are still phone numbers.
    """

    PATTERNS = (
        Pattern(
            "NANP formatted",
            r"(?:\+1[-.\s]?|\b001[-.\s]?)?(?:\(\d{3}\)\s?|\b\d{3}[-.\s])\d{3}[-.\s]\d{4}"
            r"(?:\s?(?:x|ext\.?)\s?\d{1,6})?\b",
            0.6,
        ),
        Pattern("NANP digits only", r"\b[2-9]\d{2}[2-9]\d{6}(?:\s?x\d{1,6})?\b", 0.4),
    )

    def __init__(self) -> None:
        super().__init__(
            supported_entity="PHONE_NUMBER",
            name="NanpPhoneRecognizer",
            patterns=list(self.PATTERNS),
        )


Factory = Callable[[Sequence[str]], EntityRecognizer]
_PATTERN_RECOGNIZERS: Mapping[str, tuple[Factory, ...]] = {
    "EMAIL_ADDRESS": (lambda regions: OfflineEmailRecognizer(),),
    "PHONE_NUMBER": (
        lambda regions: PhoneRecognizer(supported_regions=tuple(regions)),
        lambda regions: NanpPhoneRecognizer(),
    ),
    "CREDIT_CARD": (lambda regions: LuhnCardRecognizer(),),
    "IBAN_CODE": (lambda regions: IbanRecognizer(),),
    "US_SSN": (lambda regions: UsSsnRecognizer(),),
    "IP_ADDRESS": (lambda regions: IpRecognizer(),),
    "URL": (lambda regions: UrlRecognizer(),),
    "DATE_TIME": (lambda regions: DateRecognizer(),),
    "MAC_ADDRESS": (lambda regions: MacAddressRecognizer(),),
    "US_BANK_NUMBER": (lambda regions: UsBankRecognizer(),),
    "US_DRIVER_LICENSE": (lambda regions: UsLicenseRecognizer(),),
    "US_PASSPORT": (lambda regions: UsPassportRecognizer(),),
    "UK_NHS": (lambda regions: NhsRecognizer(),),
    "UK_NINO": (lambda regions: UkNinoRecognizer(),),
}
KNOWN_ENTITIES = frozenset(_PATTERN_RECOGNIZERS) | frozenset(NER_LABELS)


@dataclass(frozen=True)
class CustomPattern:
    """A contract's own pattern recognizer (``Config.metadata['pii_recognizers']``)."""

    entity: str
    patterns: tuple[tuple[str, str, float], ...]
    context: tuple[str, ...] = ()

    def build(self) -> PatternRecognizer:
        """The Presidio PatternRecognizer for this entity."""
        return PatternRecognizer(
            supported_entity=self.entity,
            name=f"contract:{self.entity}",
            patterns=[Pattern(name=n, regex=r, score=s) for n, r, s in self.patterns],
            context=list(self.context),
        )


@dataclass(frozen=True)
class DetectionConfig:
    """Which entities to look for, and how: built from a contract's metadata."""

    entities: frozenset[str] = DEFAULT_ENTITIES
    phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS
    custom: tuple[CustomPattern, ...] = field(default_factory=tuple)
    min_score: float = 0.4

    @property
    def ner_entities(self) -> frozenset[str]:
        """The requested entities that need the NER model."""
        return self.entities & frozenset(NER_LABELS)

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
    recognizer = CustomPattern(entity=entity, patterns=patterns, context=context)
    recognizer.build()  # compiles the regexes: a bad one fails at contract load
    return recognizer


def pattern_recognizers(config: DetectionConfig) -> list[EntityRecognizer]:
    """The pattern-based recognizers for the configured entities (no NER)."""
    built: list[EntityRecognizer] = [
        factory(config.phone_regions)
        for entity in sorted(config.entities)
        for factory in _PATTERN_RECOGNIZERS.get(entity, ())
    ]
    built.extend(c.build() for c in config.custom)
    return built


def entities_of(recognizers: Iterable[EntityRecognizer]) -> set[str]:
    """Every entity the recognizers can find."""
    return {e for r in recognizers for e in r.supported_entities}
