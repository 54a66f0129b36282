"""Language codes to XMOD adapters.

Callers name a language as an ISO 639-1/639-3 code (`fr`, `fra`), a BCP-47 tag (`pt-BR`, `zh-Hant`,
`sr-Latn`) or an adapter code (`fr_XX`); the checkpoint's `config.languages` lists its adapters. A
language with no adapter follows the configured policy: the fallback adapter (logged once per code)
or an UnknownLanguageError. A malformed or unknown code is always an error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import langcodes

from xmsearch.retriever.errors import CheckpointError, UnknownLanguageError

log = logging.getLogger(__name__)

Policy = Literal["fallback", "error"]
Source = Literal["given", "detected", "hint", "prior", "fallback"]  # how a text's adapter was chosen
# Languages whose adapter goes by another code: Filipino/Tagalog, Norwegian Bokmål/Nynorsk.
_ALIASES = {"fil": "tl", "nb": "no", "nn": "no"}


@dataclass(frozen=True)
class Resolution:
    """The adapter chosen for a requested language, and whether the fallback policy chose it."""

    requested: str
    adapter: str
    fallback: bool = False
    confidence: float | None = None  # set when the language was detected (the best guess's, when unsure)
    reason: str | None = None  # why the fallback adapter encoded the text
    # how the language was chosen: given with the text; detected; by a hint where detection was unsure;
    # none (fallback: detection unsure, or off). `fallback` says whether the fallback adapter encoded it
    source: Source = "given"

    @property
    def code(self) -> str:
        """The base language of the text (pt-BR -> pt): the one given or detected, even when the
        fallback adapter encoded it; the adapter's own where no language is known. Payloads, filters
        and API answers all report this."""
        return base_language(self.requested or self.adapter.split("_")[0])


@dataclass(frozen=True)
class _Tag:
    language: str
    script: str | None


@lru_cache(maxsize=4096)
def _parse(code: str) -> _Tag | None:
    """Base language and script of a tag, or None when it is not a real language code."""
    tag = code.strip().replace("_", "-")
    if not tag:
        return None
    try:
        lang = langcodes.Language.get(langcodes.standardize_tag(tag, macro=True), normalize=True)
    except (langcodes.tag_parser.LanguageTagError, ValueError):
        return None
    if not lang.language or lang.language == "und" or not lang.is_valid():
        return None
    base = _ALIASES.get(lang.language, lang.language)
    return _Tag(language=base, script=lang.maximize().script)


def _parse_adapter(code: str) -> _Tag | None:
    """An adapter code such as zh_TW, or eo_EO whose region is not a real one."""
    return _parse(code) or _parse(code.split("_")[0])


def is_language(code: str) -> bool:
    """Whether `code` names a language (ISO 639-1/639-3, BCP-47, an adapter code), adapter or not."""
    return isinstance(code, str) and _parse(code) is not None


def script_of(code: str) -> str | None:
    """The script a language is written in, as ISO 15924 (Latn, Cyrl, Hans, Jpan...; None: unknown)."""
    parsed = _parse(code) if code else None
    return parsed.script if parsed is not None else None


def base_language(code: str) -> str:
    """The base language of a code (pt-BR -> pt, zh-Hant -> zh, fra -> fr), for payloads and filters."""
    parsed = _parse(code) if code else None
    return parsed.language if parsed is not None else (code or "und")


class LanguageResolver:
    """Maps language codes onto the adapters of one checkpoint."""

    def __init__(self, adapters: Sequence[str], policy: Policy = "fallback", fallback: str = "en") -> None:
        self.adapters = tuple(adapters)
        self.index = {code: i for i, code in enumerate(self.adapters)}
        self.policy = policy
        self._by_language: dict[str, list[str]] = {}
        for code in self.adapters:
            parsed = _parse_adapter(code)
            if parsed is not None:
                self._by_language.setdefault(parsed.language, []).append(code)
        self._warned: set[str] = set()
        found = self.lookup(fallback)
        if found is None:
            raise CheckpointError(
                f"fallback language {fallback!r} has no adapter in this checkpoint; "
                f"choose one of {', '.join(self.adapters)}"
            )
        self.fallback = found

    def resolve(self, code: str) -> Resolution:
        """The adapter for `code`, applying the policy when the checkpoint has none for it."""
        if not isinstance(code, str):
            raise UnknownLanguageError(f"a language code must be a string, not {type(code).__name__}")
        found = self.lookup(code)
        if found is not None:
            return Resolution(code, found)
        if _parse(code) is None:
            raise UnknownLanguageError(
                f"{code!r} is not a language code (use ISO 639-1/639-3, BCP-47 such as pt-BR, or an "
                f"adapter code such as fr_XX)"
            )
        return self.no_adapter(code, f"language {code!r} has no adapter in this checkpoint")

    def no_adapter(
        self, code: str, reason: str, confidence: float | None = None, source: Source = "given"
    ) -> Resolution:
        """Apply the policy: the fallback adapter (logged once per code and process; every answer
        carries the reason) or an error."""
        if self.policy == "error":
            raise UnknownLanguageError(f"{reason}; adapters: {', '.join(self.adapters)}")
        if base_language(code) not in self._warned:  # sv and sv-SE: one warning
            self._warned.add(base_language(code))
            log.warning("%s; using the fallback adapter %s (said once per process)", reason, self.fallback)
        return Resolution(code, self.fallback, True, confidence, reason, source)

    def lookup(self, code: str) -> str | None:
        """The adapter for `code`, or None when the checkpoint has none (no policy applied)."""
        if code in self.index:
            return code
        parsed = _parse(code)
        if parsed is None:
            return None
        candidates = self._by_language.get(parsed.language, [])
        if len(candidates) > 1:  # e.g. zh_CN (Hans) and zh_TW (Hant): choose by script
            for candidate in candidates:
                tag = _parse_adapter(candidate)
                if tag is not None and tag.script == parsed.script:
                    return candidate
        return candidates[0] if candidates else None


# The adapters of antoinelouis/colbert-xm in its config order (the last five unverified); the encoder
# always reads a checkpoint's own `config.languages`, this list only feeds `make-tiny --languages all`.
COLBERT_XM_LANGUAGES = tuple(
    [
        "en_XX",
        "id_ID",
        "vi_VN",
        "ru_RU",
        "fa_IR",
        "sv_SE",
        "ja_XX",
        "fr_XX",
        "de_DE",
        "ro_RO",
        "ko_KR",
        "hu_HU",
        "es_XX",
        "fi_FI",
        "uk_UA",
        "da_DK",
        "pt_XX",
        "no_XX",
        "th_TH",
        "pl_PL",
        "bg_BG",
        "nl_XX",
        "zh_CN",
        "he_IL",
        "el_GR",
        "it_IT",
        "sk_SK",
        "hr_HR",
        "tr_TR",
        "ar_AR",
        "cs_CZ",
        "lt_LT",
        "hi_IN",
        "zh_TW",
        "ca_ES",
        "ms_MY",
        "sl_SI",
        "lv_LV",
        "ta_IN",
        "bn_IN",
        "et_EE",
        "az_AZ",
        "sq_AL",
        "sr_RS",
        "kk_KZ",
        "ka_GE",
        "tl_XX",
        "ur_PK",
        "is_IS",
        "hy_AM",
        "ml_IN",
        "mk_MK",
        "be_BY",
        "la_VA",
        "te_IN",
        "eu_ES",
        "gl_ES",
        "mn_MN",
        "kn_IN",
        "ne_NP",
        "sw_KE",
        "si_LK",
        "mr_IN",
        "af_ZA",
        "gu_IN",
        "cy_GB",
        "eo_EO",
        "km_KH",
        "ky_KG",
        "uz_UZ",
        "ps_AF",
        "pa_IN",
        "ga_IE",
        "ha_NG",
        "am_ET",
        "lo_LA",
        "ku_TR",
        "my_MM",
        "or_IN",
        "sa_IN",
        "so_SO",
    ]
)
