"""The detector: one Presidio AnalyzerEngine per process on the installed spaCy model.

Nothing here reaches the network: the spaCy model comes from an installed package (never
downloaded), and email validation uses tldextract's bundled suffix list. Without the model the
detector runs pattern-only and says so in ``status``. Importing this module loads Presidio and
spaCy, so the gateway runs it in worker processes (see ``privacy.engine``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import polars as pl
import spacy
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import SpacyRecognizer

from privacy.detection import (
    DEFAULT_PHONE_REGIONS,
    NAME_WORD,
    NER_LABELS,
    NUMERIC_ENTITIES,
    PATTERN_ENTITIES,
    DetectionConfig,
    Span,
    candidates,
    without_codes,
)
from privacy.recognizers import pattern_recognizers

NER_SCORE = 0.85
NER_BATCH = 256
_NON_NER_PIPES = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter")


def load_spacy_model(name: str) -> spacy.language.Language:
    """The installed model with only its NER component (never downloads).

    Raises:
        OSError: the model package is not installed.
    """
    return spacy.load(name, exclude=list(_NON_NER_PIPES))


class _InstalledModelNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine on an installed model, NER only; a blank tokenizer without one."""

    def __init__(self, language: spacy.language.Language) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": language.meta.get("name", "")}])
        self._language = language

    def load(self) -> None:
        self.nlp = {"en": self._language}  # type: ignore[assignment]


def _ner(
    nlp: spacy.language.Language, texts: Sequence[str], labels: dict[str, str]
) -> list[list[tuple[int, int, str]]]:
    return [
        [(e.start_char, e.end_char, labels[e.label_]) for e in doc.ents if e.label_ in labels]
        for doc in nlp.pipe(texts, batch_size=NER_BATCH)
    ]


# -- the engine ----------------------------------------------------------------------------


class Detector:
    """Finds PII spans with Presidio's recognizers and the spaCy NER model, in this process."""

    def __init__(self, spacy_model: str | None) -> None:
        self.model_name = spacy_model
        self.unavailable_reason: str | None = None
        self._nlp: spacy.language.Language | None = None
        if spacy_model:
            try:
                self._nlp = load_spacy_model(spacy_model)
            except OSError as exc:
                self.unavailable_reason = f"spaCy model {spacy_model!r} is not installed ({exc})"
        else:
            self.unavailable_reason = "no spaCy model configured"
        language = self._nlp if self._nlp is not None else spacy.blank("en")
        nlp_engine = _InstalledModelNlpEngine(language)
        nlp_engine.load()
        # The process's one AnalyzerEngine: its registry holds the recognizers of every known
        # pattern entity (Presidio's, with Datagate's additions) and its NLP engine the model.
        recognizers: list[EntityRecognizer] = pattern_recognizers(
            DetectionConfig(entities=PATTERN_ENTITIES)
        )
        if self._nlp is not None:
            recognizers.append(SpacyRecognizer(supported_entities=sorted(NER_LABELS)))
        self.analyzer = AnalyzerEngine(
            registry=RecognizerRegistry(recognizers=recognizers, supported_languages=["en"]),
            nlp_engine=nlp_engine,
            supported_languages=["en"],
        )
        self._registered: dict[DetectionConfig, list[EntityRecognizer]] = {}

    def _recognizers(self, config: DetectionConfig) -> list[EntityRecognizer]:
        # One single-entity recognizer at a time, so each sees only its candidate cells. The
        # registry's recognizers serve the default phone regions; other settings and a
        # contract's own patterns get recognizers of their own.
        if config not in self._registered:
            if config.phone_regions == DEFAULT_PHONE_REGIONS:
                chosen = self.analyzer.registry.get_recognizers(
                    language="en", entities=sorted(config.entities & PATTERN_ENTITIES)
                )
                extra = pattern_recognizers(
                    DetectionConfig(entities=frozenset(), custom=config.custom)
                )
            else:
                chosen, extra = pattern_recognizers(config), []
            self._registered[config] = [
                r for r in [*chosen, *extra] if len(r.supported_entities) == 1
            ]
        return self._registered[config]

    @property
    def status(self) -> dict[str, Any]:
        """What the detector runs on, for start-up logs, ``/readyz`` and PII reports."""
        if self._nlp is None:
            return {"mode": "patterns-only", "model": None, "reason": self.unavailable_reason}
        version = self._nlp.meta.get("version")
        return {"mode": "ner+patterns", "model": f"{self.model_name} {version}"}

    def detect(self, texts: list[str], config: DetectionConfig) -> list[list[Span]]:
        """Spans of the configured entities in each text; validated patterns win overlaps."""
        series = pl.Series(texts, dtype=pl.String)
        found: list[list[Span]] = [[] for _ in texts]
        unglued = without_codes(series)
        for recognizer in self._recognizers(config):
            (entity,) = recognizer.supported_entities
            numeric = entity in NUMERIC_ENTITIES
            mask = candidates(unglued if numeric else series, entity)
            rows = range(len(texts)) if mask is None else mask.arg_true().to_list()
            for row in rows:
                text = texts[row]
                for result in recognizer.analyze(text, [entity], None):  # type: ignore[arg-type]
                    if result.score < config.min_score:
                        continue
                    if numeric and _inside_code(text, result.start, result.end):
                        continue
                    found[row].append(Span(result.start, result.end, entity, result.score))
        resolved = [_resolve_overlaps(spans) for spans in found]
        if config.ner_entities and self._nlp is not None:
            labels = {
                label: entity for entity in config.ner_entities for label in NER_LABELS[entity]
            }
            if "PERSON" in config.ner_entities:
                for label in _NAME_SHAPED_LABELS:
                    labels.setdefault(label, _MAYBE_PERSON)
            ner_rows = series.str.contains(NAME_WORD).fill_null(False).arg_true().to_list()
            ner_found = _ner(self._nlp, [texts[r] for r in ner_rows], labels)
            for row, ner_spans in zip(ner_rows, ner_found, strict=True):
                kept = resolved[row]
                for start, end, label in ner_spans:
                    named = _entity_of(label, texts[row][start:end])
                    if (
                        named
                        and _plausible(named, texts[row][start:end])
                        and (
                            named != "PERSON"
                            or len(texts[row][start:end].split()) >= config.min_name_words
                        )
                        and not _overlaps(start, end, kept)
                    ):
                        kept.append(Span(start, end, named, NER_SCORE))
                kept.sort()
        return resolved


def _overlaps(start: int, end: int, spans: Sequence[Span]) -> bool:
    return any(start < span.end and span.start < end for span in spans)


_NAME_WORD = re.compile(NAME_WORD)
# The small model often labels a person's full name as an organisation or a place. A span of
# those labels shaped like a name (two or three capitalised words, no company word) is a PERSON.
_MAYBE_PERSON = "MAYBE_PERSON"
_NAME_SHAPED_LABELS = ("ORG", "LOC", "GPE", "FAC", "DATE")
_NAME_SHAPE = re.compile(r"^(?:[A-Z][a-z'\u2019-]+\s){1,2}[A-Z][a-z'\u2019-]+$")
_NOT_NAME_WORDS = frozenset(
    (
        # organisations
        "inc ltd llc plc corp corporation company co group bank university college school "
        "hospital foundation institute association agency department council partners "
        "holdings services solutions systems technologies international "
        # places
        "new san los las saint st fort port north south east west lake mount city county "
        "island islands river valley beach park street avenue road "
        # dates
        "monday tuesday wednesday thursday friday saturday sunday christmas easter eve "
        "year years week weeks month months quarter morning evening night"
    ).split()
)


def _entity_of(label: str, text: str) -> str | None:
    if label != _MAYBE_PERSON:
        return label
    words = text.lower().replace(".", "").split()
    if _NAME_SHAPE.match(text) and not _NOT_NAME_WORDS.intersection(words):
        return "PERSON"
    return None


_GLUED_BEFORE = re.compile(r"(?:[A-Za-z]|[A-Za-z0-9]-)$")
_GLUED_AFTER = re.compile(r"(?!x\d)(?:[A-Za-z]|-[A-Za-z0-9])")


def _inside_code(text: str, start: int, end: int) -> bool:
    # "ORD-2023-529959" or "SKU-88812345B": digits glued to letters are part of an identifier
    # (order, product, ticket), not a phone, card or SSN. A phone extension ("x123") is not glue.
    return bool(_GLUED_BEFORE.search(text, 0, start) or _GLUED_AFTER.match(text, end))


def _plausible(entity: str, text: str) -> bool:
    # The small model tags dotted numbers and codes ("Order ORD-2026-734440") as names; a name
    # has a capitalised word and no digit, any NER entity at least one letter.
    if entity == "PERSON":
        return _NAME_WORD.search(text) is not None and not any(c.isdigit() for c in text)
    return any(character.isalpha() for character in text)


def _resolve_overlaps(spans: list[Span]) -> list[Span]:
    if len(spans) < 2:
        return spans
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (-s.score, s.start - s.end)):
        if not _overlaps(span.start, span.end, kept):
            kept.append(span)
    return sorted(kept)
