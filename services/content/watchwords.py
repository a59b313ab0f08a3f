"""Watched words: matching text against moderation rules, pure and deterministic.

A word rule matches Latin words on word boundaries ("sale" does not hit
"wholesale") and everything else as a substring, because Chinese and Japanese
are written without spaces ("代购" must hit "专业代购微信"). Boundaries are ASCII
letters and digits only, so a Latin word embedded in Chinese text still matches
("加我vx领红包" hits "vx"). A pattern rule is a case-insensitive regular
expression, checked when the rule is created.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache, partial


class RuleAction(StrEnum):
    BLOCK = "block"
    REQUIRE_APPROVAL = "require_approval"
    FLAG = "flag"
    REPLACE = "replace"
    MASK = "mask"


class RuleKind(StrEnum):
    WORD = "word"
    PATTERN = "pattern"


# Strongest first: one hit of a stronger action decides what happens to the text.
STRENGTH = {
    RuleAction.BLOCK: 5,
    RuleAction.REQUIRE_APPROVAL: 4,
    RuleAction.FLAG: 3,
    RuleAction.REPLACE: 2,
    RuleAction.MASK: 1,
}
LATIN_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9 '_-]*")
DEFAULT_REPLACEMENT = "***"


@dataclass(frozen=True)
class WatchRule:
    id: str
    kind: RuleKind
    value: str
    action: RuleAction
    replacement: str | None = None


@dataclass(frozen=True)
class Screening:
    """What the rules did to one text: the text to store and the hits to alert on."""

    text: str
    rule_ids: tuple[str, ...]
    words: tuple[str, ...]
    action: RuleAction | None

    @property
    def hit(self) -> bool:
        return self.action is not None


class InvalidPattern(ValueError):
    pass


@lru_cache(maxsize=4096)
def compile_rule(kind: RuleKind, value: str) -> re.Pattern[str]:
    if kind is RuleKind.PATTERN:
        try:
            return re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise InvalidPattern(f"not a valid regular expression: {exc}") from None
    escaped = re.escape(value)
    if LATIN_WORD.fullmatch(value):
        return re.compile(rf"(?<![A-Za-z0-9_]){escaped}(?![A-Za-z0-9_])", re.IGNORECASE)
    return re.compile(escaped, re.IGNORECASE)


def _literal(replacement: str, _match: re.Match[str]) -> str:
    return replacement


def screen(text: str, rules: Iterable[WatchRule]) -> Screening:
    """Apply every matching rule; mask and replace rewrite the text, the rest only report."""
    hits: list[WatchRule] = []
    for rule in rules:
        pattern = compile_rule(rule.kind, rule.value)
        if not pattern.search(text):
            continue
        hits.append(rule)
        if rule.action is RuleAction.MASK:
            text = pattern.sub(lambda m: "*" * len(m.group(0)), text)
        elif rule.action is RuleAction.REPLACE:
            # A function, not a template: the replacement is literal text, never a backreference.
            replacement = rule.replacement or DEFAULT_REPLACEMENT
            text = pattern.sub(partial(_literal, replacement), text)
    if not hits:
        return Screening(text, (), (), None)
    strongest = max((rule.action for rule in hits), key=STRENGTH.__getitem__)
    return Screening(
        text=text,
        rule_ids=tuple(rule.id for rule in hits),
        words=tuple(dict.fromkeys(rule.value for rule in hits)),
        action=strongest,
    )


def screen_many(texts: Iterable[str | None], rules: list[WatchRule]) -> list[Screening | None]:
    return [None if text is None else screen(text, rules) for text in texts]


def combine(
    screenings: Iterable[Screening | None],
) -> tuple[tuple[str, ...], tuple[str, ...], RuleAction | None]:
    """Merge the hits of several fields (title and body) of one item."""
    rule_ids: dict[str, None] = {}
    words: dict[str, None] = {}
    action: RuleAction | None = None
    for screening in screenings:
        if screening is None or screening.action is None:
            continue
        rule_ids.update(dict.fromkeys(screening.rule_ids))
        words.update(dict.fromkeys(screening.words))
        if action is None or STRENGTH[screening.action] > STRENGTH[action]:
            action = screening.action
    return tuple(rule_ids), tuple(words), action
