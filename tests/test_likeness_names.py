"""Prompt name matching: spelling tricks are caught, common words are not, big lexicons stay fast."""

from __future__ import annotations

import pytest

from consumers.likeness import LikenessRules, build_name_matcher
from pipeline.likeness.names import LexiconEntry, NameMatcher
from policies.loader import load_policy, policy_path


@pytest.fixture(scope="module")
def matcher() -> NameMatcher:
    return build_name_matcher(load_policy(policy_path("likeness"), LikenessRules, expected_stage="likeness"))


@pytest.mark.parametrize(("prompt", "name"), [
    ("Tom Hanks surfing at dawn", "Tom Hanks"),               # exact
    ("tOM hANKS eating soup", "Tom Hanks"),                   # cased
    ("Beyonce dancing in the rain", "Beyoncé"),               # accent dropped by the writer
    ("Zinédine Zidane scoring", "Zinédine Zidane"),           # accent kept
    ("t o m   h a n k s on a boat", "Tom Hanks"),           # spaced out
    ("T.O.M H.A.N.K.S waving", "Tom Hanks"),                 # dotted
    ("TomHanks in space", "Tom Hanks"),                       # squashed
    ("T0m H4nk5 flying", "Tom Hanks"),                        # leetspeak
    ("t@ylor $wift singing", "Taylor Swift"),                 # leet symbols
    ("T-Swift on tour", "Taylor Swift"),                      # alias
    ("Queen Bey at the beach", "Beyoncé"),                    # alias
    ("Барак Обама gives a speech", "Barack Obama"),           # other script
    ("a speech by Obama!", "Barack Obama"),                   # trailing punctuation is not leet
    ("Madonna Ciccone live", "Madonna"),                      # the full alias of an allow-listed word
])
def test_spelling_tricks_are_caught(matcher: NameMatcher, prompt: str, name: str) -> None:
    assert [match.name for match in matcher.find(prompt)] == [name]


@pytest.mark.parametrize("prompt", [
    "a Madonna and child painting in a chapel",   # allow-listed common word
    "a prince rides to the castle",               # allow-listed common word
    "a custom hanks of yarn",                     # 'tom hanks' inside other words
    "a bottom hank of rope",
    "a kitten chasing a laser pointer",
])
def test_ordinary_prompts_pass(matcher: NameMatcher, prompt: str) -> None:
    assert matcher.find(prompt) == []


def test_several_names_are_each_reported_once(matcher: NameMatcher) -> None:
    found = matcher.find("Tom Hanks and T0M HANKS meet Merkel")
    assert [match.name for match in found] == ["Tom Hanks", "Angela Merkel"]


def letters(n: int) -> str:
    """A distinct lowercase word per number (digits would be read as leetspeak)."""
    alphabet = "abcdefghijkmnopqrstuvwxyz"  # no "l": it reads as the leetspeak "1"/"i"
    word = ""
    for _ in range(4):
        n, digit = divmod(n, len(alphabet))
        word += alphabet[digit]
    return word


def test_a_hundred_thousand_names_build_into_one_automaton() -> None:
    entries = [LexiconEntry(f"Ana {letters(n)} Ruiz", (f"Ana {letters(n)} Ruiz", f"{letters(n)}ski"))
               for n in range(100_000)]
    matcher = NameMatcher(entries)
    assert matcher.size == 200_000
    first, second = letters(54_321), letters(99_999)
    assert [m.name for m in matcher.find(f"a video of {first.upper()}SKI and ana {second} ruiz")] == [
        f"Ana {first} Ruiz", f"Ana {second} Ruiz"]
    assert matcher.find(f"{first}skis are not a name") == []
