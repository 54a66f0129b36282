"""Language identification for texts given without a language.

py3langid (an offline naive-Bayes model shipped in its wheel, deterministic) restricted to the
ColBERT-XM languages, plus hanzidentifier to tell Traditional from Simplified Chinese. It was chosen
after measuring the candidates on short queries and passages in all 81 XMOD languages (README,
"Language identification"). A detection below the confidence threshold, or of a language this
checkpoint has no adapter for, follows the unknown-language policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import hanzidentifier
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from xmsearch.retriever.model.languages import COLBERT_XM_LANGUAGES, LanguageResolver, Resolution


@dataclass(frozen=True)
class Detection:
    """A detected language as a BCP-47 tag (zh split into zh-Hans / zh-Hant) and its confidence."""

    language: str
    confidence: float


class LanguageDetector:
    """Detects languages and maps them onto a checkpoint's adapters."""

    def __init__(self, resolver: LanguageResolver, min_confidence: float) -> None:
        self.resolver = resolver
        self.min_confidence = min_confidence
        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        known = {code.split("_")[0] for code in (*COLBERT_XM_LANGUAGES, *resolver.adapters)} | {"nn"}
        self._identifier.set_languages(sorted(known & set(self._identifier.nb_classes)))

    def detect(self, text: str) -> Detection:
        """The most likely language of `text`, with its normalised probability."""
        language, confidence = self._identifier.classify(text)
        if language == "zh":
            language = "zh-Hant" if hanzidentifier.identify(text) == hanzidentifier.TRADITIONAL else "zh-Hans"
        return Detection(language, float(confidence))

    def __call__(self, texts: list[str]) -> list[Resolution]:
        return [self.resolve(self.detect(text)) for text in texts]

    def resolve(self, found: Detection) -> Resolution:
        """The adapter for a detection, or the policy's answer when unsure or without an adapter."""
        label = f"{found.language} ({found.confidence:.2f})"
        if found.confidence < self.min_confidence:
            return self.resolver.no_adapter(
                "und",
                f"language detection is unsure (best guess {label}, below {self.min_confidence})",
                found.confidence,
            )
        adapter = self.resolver.lookup(found.language)
        if adapter is None:
            return self.resolver.no_adapter(
                found.language, f"detected language {label} has no adapter", found.confidence
            )
        return Resolution(found.language, adapter, confidence=found.confidence)
