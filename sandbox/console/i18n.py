"""The console's words, in simplified Chinese (the default) and English.

Keys are the language-independent names the templates use; each area of pages keeps its own
in `sandbox.console.words`, and every key exists in both languages (a test keeps them in
step)."""

from __future__ import annotations

from collections.abc import Callable

from sandbox.console.words import (
    bureau,
    common,
    datasets,
    demands,
    operator,
    products,
    provider,
    public,
    regulator,
    reviews,
    statistics,
    templates,
)

LANGUAGES = ("zh", "en")
DEFAULT = "zh"

MESSAGES: dict[str, dict[str, str]] = {"zh": {}, "en": {}}
for _area in (
    common,
    public,
    operator,
    provider,
    bureau,
    regulator,
    datasets,
    statistics,
    demands,
    reviews,
    products,
    templates,
):
    for _key in _area.ZH.keys() & MESSAGES["zh"].keys():
        raise ValueError(f"the console word {_key!r} is defined twice")
    MESSAGES["zh"].update(_area.ZH)
    MESSAGES["en"].update(_area.EN)


def translator(lang: str) -> Callable[..., str]:
    words = MESSAGES[lang if lang in MESSAGES else DEFAULT]

    def t(key: str, **values: object) -> str:
        text = words.get(key) or MESSAGES[DEFAULT].get(key) or key
        return text.format(**values) if values else text

    return t
