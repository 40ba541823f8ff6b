"""Presidio recognizers chosen deliberately: offline, and only for the entities asked for."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache

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

from privacy.detection import CustomPattern, DetectionConfig


@cache
def offline_tld_extractor() -> TLDExtract:
    """tldextract on its bundled public-suffix snapshot: never fetches, never writes a cache."""
    return TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer, validating domains against the bundled suffix list.

    Presidio's pattern lets a slash into the local part, so in a path such as
    ``exports/jane@example.com`` it matched ``exports/jane@example.com`` whole and then failed
    validation (``exports`` is no domain): the address stayed. The local part here stops at a
    slash, and only the domain is validated.
    """

    PATTERNS = [
        Pattern(
            "Email (Medium)",
            r"\b[\w!#$%&'*+=?^`{|}~\-](?:[\w!#$%&'*+=?^`{|}~.\-]*[\w!#$%&'*+=?^`{|}~\-])?"
            r"@\w+(?:[-.]\w+)*\.\w+(?:[-.]\w+)*\b",
            0.5,
        )
    ]

    def validate_result(self, pattern_text: str) -> bool:
        return bool(offline_tld_extractor()(pattern_text.rpartition("@")[2]).fqdn)


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


def _custom_recognizer(custom: CustomPattern) -> PatternRecognizer:
    return PatternRecognizer(
        supported_entity=custom.entity,
        name=f"contract:{custom.entity}",
        patterns=[Pattern(name=n, regex=r, score=s) for n, r, s in custom.patterns],
        context=list(custom.context),
    )


def pattern_recognizers(config: DetectionConfig) -> list[EntityRecognizer]:
    """The pattern-based recognizers for the configured entities (no NER)."""
    built: list[EntityRecognizer] = [
        factory(config.phone_regions)
        for entity in sorted(config.entities)
        for factory in _PATTERN_RECOGNIZERS.get(entity, ())
    ]
    built.extend(_custom_recognizer(c) for c in config.custom)
    return built
