"""Write the lists of common words that only one of the lexicon's six languages has (pipeline/content/languages/).

    pip install -e '.[lexicon-audit]'      # wordfreq: word frequencies per language, shipped in its wheel
    python bench/language_words.py [--per-language 6000] [--min-zipf 2.5] [--margin 1.5]

The content lexicon reads a prompt through the stemmers of the languages it shows (pipeline/content/
lexicon.py). Short function words ("the", "della", "uma") showed a language; a prompt without any was read
by all six stemmers, and a stem of one language then matched an everyday word of another: Spanish
"violar" (to rape) read the Italian "una giacca viola" (a purple jacket), "follar" read "una folla enorme in
piazza" (a crowd), German "morden" read "il cane morde la palla". These lists are the common words of each
language that the others hardly use ("giacca", "piazza", "hombre"), so that such prompts show their language.

A word is listed for a language when its Zipf frequency there is at least --min-zipf (about once in three
million words) and at least --margin above its frequency in each of the other five (1.5: thirty times as
common), after the lexicon's own folding (case, accents); the --per-language most frequent are kept.
Regenerate after a wordfreq upgrade and check with `python bench/lexicon_changes.py` that no labelled
prompt changed unexpectedly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.content.lexicon import FUNCTION_WORDS, LANGUAGE_WORDS_DIR, STEMMER_OF_FILE, fold  # noqa: E402

LANGUAGES = {code: name for code, name in STEMMER_OF_FILE.items() if name in FUNCTION_WORDS}
"""The languages whose function words the lexicon knows: the six of policies/lexicons/content/."""


def folded_frequencies(language: str, least: float = 1.0) -> dict[str, float]:
    """Folded word -> Zipf frequency (the highest of the words that fold to it), down to `least`."""
    from wordfreq import get_frequency_list

    found: dict[str, float] = {}
    for bucket, words in enumerate(get_frequency_list(language)):  # bucket i: frequency 10^(-i/100)
        zipf = 9 - bucket / 100
        if zipf < least:
            break
        for word in words:
            folded = fold(word)
            if folded.isalpha() and folded not in found:
                found[folded] = zipf
    return found


def words_of_one_language(per_language: int, min_zipf: float, margin: float) -> dict[str, list[str]]:
    frequencies = {code: folded_frequencies(code) for code in LANGUAGES}
    chosen = {}
    for code, own in frequencies.items():
        others = [frequencies[other] for other in frequencies if other != code]
        ranked = sorted(((zipf, word) for word, zipf in own.items()
                         if zipf >= min_zipf and len(word) >= 2
                         and zipf - max(other.get(word, 0.0) for other in others) >= margin), reverse=True)
        chosen[LANGUAGES[code]] = [word for _, word in ranked[:per_language]]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-language", type=int, default=6000)
    parser.add_argument("--min-zipf", type=float, default=2.5)
    parser.add_argument("--margin", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=LANGUAGE_WORDS_DIR)
    args = parser.parse_args()
    from importlib.metadata import version

    args.out.mkdir(parents=True, exist_ok=True)
    for language, words in words_of_one_language(args.per_language, args.min_zipf, args.margin).items():
        header = (f"# {language}: common words the other five languages hardly use, most frequent first. Written by "
                  f"bench/language_words.py (wordfreq {version('wordfreq')}, --per-language {args.per_language} "
                  f"--min-zipf {args.min_zipf} --margin {args.margin}); edit by hand only to remove a word.\n")
        (args.out / f"{language}.txt").write_text(header + "\n".join(words) + "\n", encoding="utf-8")
        print(f"{language}: {len(words)} words")


if __name__ == "__main__":
    main()
