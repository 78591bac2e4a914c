"""Find public-figure names in prompts, whatever the spelling tricks.

    text -> NFKD, drop accents, casefold -> leetspeak folded (0->o, 1/!/|/l->i, 3->e, 4/@->a, 5/$->s, 7->t ...)
         -> tokens (anything not a letter or digit separates)
    names are normalised the same way and put in one Aho-Corasick automaton (pyahocorasick),
    so matching costs one pass over the prompt however large the lexicon.

Two patterns per name: the token form " tom hanks " (word boundaries respected, so
"custom hanks" does not match) and the squashed form "tomhanks", searched in the prompt's
tokens written together and kept only when it starts and ends on token boundaries
(so "TomHanks", "t o m h a n k s" and "tom h.a.n.k.s" match, "custom hanks" does not).
Allow-listed aliases (common words such as "prince") are never patterns by themselves.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import ahocorasick

LEET = str.maketrans({"0": "o", "1": "i", "l": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                      "6": "g", "2": "z"})
LEET_SYMBOLS = {"!": "i", "|": "i", "@": "a", "$": "s", "+": "t"}
_SYMBOL_IN_WORD = re.compile(r"[!|@$+](?=\w)")  # "h@nks" is a letter; "Obama!" ends a sentence
_SEPARATORS = re.compile(r"[\W_]+")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    symbols_read = _SYMBOL_IN_WORD.sub(lambda match: LEET_SYMBOLS[match.group()], stripped)
    return symbols_read.casefold().translate(LEET)


def tokens(text: str) -> list[str]:
    return [token for token in _SEPARATORS.split(_fold(text)) if token]


@dataclass(frozen=True)
class LexiconEntry:
    name: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class NameMatch:
    name: str
    alias: str
    form: str


def read_lexicon(path: Path) -> list[LexiconEntry]:
    """One entry per line: `Canonical Name | alias | alias`; blank lines and # comments are skipped."""
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [part.strip() for part in line.split("|") if part.strip()]
        entries.append(LexiconEntry(parts[0], tuple(parts)))
    return entries


class NameMatcher:
    def __init__(self, entries: list[LexiconEntry], allow_list: list[str] = (), min_alias_length: int = 3) -> None:
        allowed = {" ".join(tokens(word)) for word in allow_list}
        self._tokens = ahocorasick.Automaton()
        self._squashed = ahocorasick.Automaton()
        for entry in entries:
            for alias in entry.aliases:
                parts = tokens(alias)
                token_form = " ".join(parts)
                if not parts or token_form in allowed or len(token_form.replace(" ", "")) < min_alias_length:
                    continue
                self._tokens.add_word(f" {token_form} ", (entry.name, alias))
                squashed = "".join(parts)
                self._squashed.add_word(squashed, (entry.name, alias, len(squashed)))
        self.size = len(self._tokens)
        for automaton in (self._tokens, self._squashed):
            if len(automaton):
                automaton.make_automaton()

    def find(self, text: str) -> list[NameMatch]:
        """Every lexicon entry named in `text`, once each, in order of first appearance."""
        if not self.size:
            return []
        parts = tokens(text)
        found: dict[str, NameMatch] = {}
        for _, (name, alias) in self._tokens.iter(f" {' '.join(parts)} "):
            found.setdefault(name, NameMatch(name, alias, "words"))
        starts, ends, offset = set(), set(), 0
        for part in parts:
            starts.add(offset)
            offset += len(part)
            ends.add(offset)
        for end, (name, alias, length) in self._squashed.iter("".join(parts)):
            if end + 1 - length in starts and end + 1 in ends:
                found.setdefault(name, NameMatch(name, alias, "squashed"))
        return list(found.values())
