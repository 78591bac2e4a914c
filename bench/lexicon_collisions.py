"""Lexicon audit: one-word phrases that are everyday words of another language the lexicons cover.

    pip install -e '.[lexicon-audit]'      # wordfreq: word frequencies per language, shipped in its wheel
    python bench/lexicon_collisions.py [--min-zipf 3.0] [--stems]

A lexicon word is matched as written in every prompt, whatever its language: Italian "negro" (a slur) is
the Spanish word for black, French "pédé" is Portuguese "pede" (asks), German "Dessous" (lingerie) is French
"dessous" (under). This lists, for the lines that refuse or restrict and the groups rules combine (minors, protected groups, dehumanizing words,
insults), each one-word phrase that is common
(Zipf frequency >= --min-zipf, i.e. more than once per million words) in one to three of the other
languages. Words common nearly everywhere ("sex", "porno", "nazi") are loanwords with the same meaning and
are left out. Each row is a place to look, not a verdict: where the meanings differ, give the word a line
of its own whose `unless:` lists words of the other language (see `negro` in it.txt, `pede` in fr.txt), or
for a group word an `unless:` of longer phrases that give it the other sense (`bebe` in es.txt: "que bebe"),
and add the everyday sentence to policies/examples/content_prompts_everyday.jsonl.

--stems: the same phrases read through their stems. A phrase also matches every word that its file's
stemmer cuts to the same stem, in a prompt that shows no word of one language only (function words and the
lists of pipeline/content/languages/, bench/language_words.py) or shows its file's language as well:
Italian "negro" read Spanish "negra" (its stem "negr"), Italian "ammazzarmi" (kill myself) read "ammazza".
This lists each common word of the other languages that shares a phrase's stem and is not itself a phrase
of some line (a word listed as written keeps that reading). Where the meanings differ, write the phrase
`word*` (a prefix is never stemmed) or give the line an `unless:` of the other language's forms.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.content.lexicon import MIN_STEM, STEMMER_OF_FILE, fold, read_content_lexicon  # noqa: E402
LANGUAGES = ("en", "it", "es", "fr", "de", "pt")
CHECKED = {("hate", "high"), ("sexual", "high"), ("sexual", "medium"), ("self_harm", "high"),
           ("violence_graphic", "high"), ("illicit_instructions", "high"), ("extremism", "high"),
           ("harassment", "high"), ("harassment", "medium"), ("violence", "high")}
GROUPS = {"minor", "protected_group", "dehumanizing", "insult"}
"""Groups whose words decide a rule on their own with any other word of the rule ("sexy" + a minor)."""


def everyday_words() -> dict[str, dict[str, float]]:
    """Per language: folded word -> Zipf frequency (the sibling tool bench/language_words.py reads wordfreq)."""
    from language_words import folded_frequencies

    return {language: folded_frequencies(language) for language in LANGUAGES}


def one_word_phrases(path: Path):
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        parts = [part.strip() for part in line.split("|")]
        if len(parts) < 3 or ((parts[0], parts[1]) not in CHECKED and not (parts[0] == "group" and parts[1] in GROUPS)):
            continue
        for phrase in parts[2].split(","):
            phrase = phrase.strip()
            if phrase and " " not in phrase and not phrase.endswith("*"):
                yield number, f"{parts[0]} | {parts[1]}", phrase


def listed_words(lexicons: Path) -> set[str]:
    """Every one-word phrase of every line, group and intensifier (not their `unless:` senses), folded: those
    words keep their literal reading."""
    rules = read_content_lexicon(sorted(lexicons.glob("*.txt")))
    phrases = [phrase for _, _, listed, _ in rules.lines for phrase in listed]
    phrases += [phrase for listed in [*rules.groups.values(), *rules.intensify.values()] for phrase in listed]
    return {fold(phrase) for phrase in phrases if " " not in phrase and "*" not in phrase}


def stem_collisions(lexicons: Path, words: dict[str, dict[str, float]], min_zipf: float) -> None:
    import Stemmer

    listed = listed_words(lexicons)
    for path in sorted(lexicons.glob("*.txt")):
        stemmer = Stemmer.Stemmer(STEMMER_OF_FILE[path.stem])
        stems_of = {language: {} for language in LANGUAGES if language != path.stem}
        for language, found in stems_of.items():
            for word, zipf in words[language].items():
                if zipf >= min_zipf and word not in listed:
                    found.setdefault(stemmer.stemWord(word), []).append(word)
        for number, line, phrase in one_word_phrases(path):
            stem = stemmer.stemWord(fold(phrase))
            if len(stem) < MIN_STEM:
                continue
            read = [f"{language} {word}" for language, found in stems_of.items()
                    for word in found.get(stem, []) if word != fold(phrase)]
            if read:
                print(f"{path.name}:{number:<4} {line:<28} {phrase:<16} stem {stem!r} reads {', '.join(read)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lexicons", type=Path, default=ROOT / "policies" / "lexicons" / "content")
    parser.add_argument("--min-zipf", type=float, default=3.0)
    parser.add_argument("--stems", action="store_true", help="common words of other languages read through stems")
    args = parser.parse_args()
    words = everyday_words()
    if args.stems:
        stem_collisions(args.lexicons, words, args.min_zipf)
        return
    for path in sorted(args.lexicons.glob("*.txt")):
        for number, line, phrase in one_word_phrases(path):
            elsewhere = {language: words[language][phrase] for language in LANGUAGES
                         if language != path.stem and words[language].get(phrase, 0) >= args.min_zipf}
            if 1 <= len(elsewhere) <= 3:
                common = ", ".join(f"{language} {zipf:.1f}" for language, zipf in elsewhere.items())
                print(f"{path.name}:{number:<4} {line:<28} {phrase:<16} everyday in {common}")


if __name__ == "__main__":
    main()
