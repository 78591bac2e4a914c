"""The embedded offline text classifier: category lexicons in several languages, plus a few rules.

    text -> fold (emoji to tokens: 🍆 -> "emojieggplant"; accents, case, leetspeak: 0->o 3->e 4/@->a 5/$->s
            1/!->i) -> tokens
         -> runs of 3+ single letters joined ("p o r n", "s.e.x" -> "porn", "sex")
         -> self-censored words restored where one lexicon word of a category people mask (profanity,
            hate, sexual) fits the letters shown: "f***" -> "fuck", "s**t" -> "shit", "n****r"
         -> letters repeated 3+ times cut to 2 ("killlll" -> "kill"); one Aho-Corasick pass over
            " token token ... " for every phrase of every line
         -> with an elongated word in the text, a second pass with runs cut to 1 ("seeeex" -> "sex"), whose
            matches count only where they cover an elongated word (so "con" never reads as "coon")

Lexicon lines (policies/lexicons/content/*.txt; `#` comments):

    sexual | high | porn, porno*, hardcore sex | unless: porn star wars      category, severity, phrases
    group | minor | child, children, kid, kids, teen*, underage             a named set of phrases
    group | minor | junge | unless: junge frau, junger mann                   a longer phrase covering one voids it
    rule | hate | high | protected_group + dehumanizing | unless: history of   groups within eight words of each other
    rule | sexual_minors | high | @sexual:medium + minor                    @category[:least severity]: anywhere
    intensify | sexual, violence | graphic, explicit, gory                  raise these categories one severity

A phrase is words; `word*` matches any word starting with it. `unless:` phrases within four words of a
match cancel it (those of every line that lists the same phrase, in any language) (the benign senses:
"shooting a three pointer", "killing it on stage", "breast cancer walk"). Matching is on whole words
only, so "Scunthorpe" or "assassin" never match a swear word inside.
A rule's `unless:` phrases anywhere in the text cancel it. A number under 18 before "year old" / "yo" /
"años" / "anni" / "ans" / "jahre" / "anos", the same in words ("a fourteen-year-old", "douze ans",
"zwölfjährige"), or stated as an age ("she is only 15", "aged 12"), counts as the group `minor`.

Stems: each file's phrases (not `word*` ones, nor one-word `unless:` senses) also match in other
inflections: with the Snowball stemmer of the language the file is named after (de.txt -> german), a
phrase and the text's words are both cut to their stems ("cortarse las venas" matches "cortándose las
venas", "hang himself" "hanging himself"). A word that some line lists as written keeps that reading; a
stem shared by lines of one category takes the mildest severity; a stem under four letters stays the
word itself ("mata" never reads "mat"). A text that holds function words only one language has ("the",
"dans", "und", "los", "della", "uma": FUNCTION_WORDS) or common words only one language has ("giacca",
"hombre": WORDS_OF_ONE_LANGUAGE) is read only by those languages' stemmers, so French "mort" never reads as
Portuguese "morto", nor Spanish "violar" the Italian "viola" (purple); a text without any is read by all of them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ahocorasick
import Stemmer

from pipeline.content.signals import Category, Severity, Signal

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
_SYMBOL_IN_WORD = re.compile(r"(?<=\w)[@$!](?=\w)|(?<![\w])[@$](?=\w)")
_SEPARATORS = re.compile(r"[^0-9a-z]+")
_AGE_WORDS = (  # one to seventeen in the six languages, accents stripped
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen"
    "|un|une|deux|trois|quatre|cinq|sept|huit|neuf|dix|onze|douze|treize|quatorze|quinze|seize|dix-sept"
    "|uno|una|dos|tres|cuatro|cinco|seis|siete|ocho|nueve|diez|once|doce|trece|catorce|quince|dieciseis|diecisiete"
    "|due|tre|quattro|sei|sette|otto|nove|dieci|undici|dodici|tredici|quattordici|quindici|sedici|diciassette"
    "|um|uma|dois|duas|sete|oito|dez|onze|doze|treze|catorze|quatorze|quinze|dezesseis|dezessete"
    "|ein|eine|zwei|drei|vier|funf|sechs|sieben|acht|neun|zehn|elf|zwolf|dreizehn|vierzehn|funfzehn|sechzehn|siebzehn")
_UNDER_18_N = r"(?:1[0-7]|[1-9]|%s)" % _AGE_WORDS
_PERSON_OF_N = (r"(?:1[0-7]|[1-9]|diez|once|doce|trece|catorce|quince|dieciseis|diecisiete|dez|onze|doze|treze|"
                r"catorze|quatorze|quinze|dezesseis|dezessete)")
"""After "a girl of": digits and ten to seventeen only ("una chica de una ciudad" is not an age)."""
_UNDER_18 = re.compile(
    # an age, not a duration ("a 1 year anniversary", "dos años después", "il y a deux ans" are not ages):
    r"\b{n}\s*-?\s*(?:years?|yrs?)\s*-?\s*olds?\b|\b{n}\s*-?\s*(?:yo|y/o)\b"  # 14-year-old, 14 yo, 14yo
    r"|(?<!despues )(?<!depois )\b(?:de|tiene|tienen|tenia|tem|tinha|com|con)\s+{n}\s+anos\b"  # es, pt
    r"|\b(?:alumna|alumno|chica|chico|muchacha|muchacho|nina|nino|hija|hijo|sobrina|sobrino|menina|menino|garota|"
    r"garoto|filha|filho|aluna|aluno)\s+de\s+{teen}\b(?!\s*(?:[.,:/-]?\d|%|euros?|kilos?|kg|cm|metros?|reales|pesos|"
    r"horas?|minutos?|dias?|semanas?|meses|centimetros?))"  # es, pt: "su alumna de 14", "uma menina de 12"
    r"|\b(?:di|ha|hanno|aveva)\s+{n}\s+anni\b"  # it
    r"|(?<!apres )(?<!y )\b(?:de|a|avait)\s+{n}\s+ans\b"  # fr
    r"|\b{n}\s*-?\s*(?:jahre\s+alt\b|jahrig)"  # de: 12 Jahre alt, 12-jährige, zwölfjähriges
    # a stated age: "she is only 15", "he's 9", "aged 12"; not a height, a time or a score
    r"|\b(?:aged?|is|ist|was|she's|he's|shes|hes)\s+(?:only\s+|just\s+|barely\s+)?(?:1[0-7]|[1-9])\b"
    r"(?![.,:/-]?\d|\s*(?:%|percent|minutes?|mins?|seconds?|secs?|hours?|hrs?|days?|weeks?|months?|years?|"
    r"feet|foot|ft|inch|inches|meters?|metres?|cm|kg|kilos?|lbs?|pounds?|euros?|dollars?|bucks|"
    r"times|points?|goals?|stars?|o'?clock|am|pm|to\b|out of|of\b|and\b|-))"
    .replace("{n}", _UNDER_18_N).replace("{teen}", _PERSON_OF_N))
"""An age under 18, in digits or words, read on the text with accents stripped."""
CONTEXT_WINDOW = 4
RULE_WINDOW = 8
"""A rule's groups must lie within this many words of the first group's span."""
STEMMER_OF_FILE = {"en": "english", "it": "italian", "es": "spanish", "fr": "french", "de": "german",
                   "pt": "portuguese", "nl": "dutch", "ca": "catalan", "ro": "romanian", "pl": "polish",
                   "sv": "swedish", "da": "danish", "no": "norwegian", "fi": "finnish", "tr": "turkish",
                   "ru": "russian", "el": "greek", "hu": "hungarian", "cs": "czech", "id": "indonesian"}
FUNCTION_WORDS = {
    "english": frozenset("the and with of is are his their who while from this that into for to my your they them him "
                         "she it its were have at by be been being had will would can or out up over after before "
                         "about people we you our what when where how some".split()),
    "german": frozenset("der und mit ist ein eine einem einen einer sich nicht auf zu dem von wie wird sind vom beim "
                        "zum zur seine seiner ihre ihren ihrem er sie auch oder aber".split()),
    "french": frozenset("une dans sur avec pour qui est sont au aux ses cette ce et elle ils elles leur leurs pas nous "
                        "vous".split()),
    "spanish": frozenset("el los las del y sus muy pero unos unas hay mientras hacia desde cuando donde tiene estan ella "
                         "ellos".split()),
    "italian": frozenset("gli della delle dello degli che di nel nella nei sul sulla alla allo dei mentre sono suo "
                         "questo questa hanno anche".split()),
    "portuguese": frozenset("os uma com na nas em seu nao pela ela ele eles elas voce isso esse essa muito "
                            "tambem".split()),
}
"""Short words of one of these languages only (none is a word of another of the six): a prompt holding some
is in those languages, and only their stemmers read it. Without this, a word of one language read through
another's stemmer matched a phrase it never meant: French "mort" as Portuguese "morto" (dead), German
"Spritze" (a syringe) as Italian "spritz"."""

LANGUAGE_WORDS_DIR = Path(__file__).with_name("languages")
"""<language>.txt: common words of that language the other five hardly use ("giacca", "piazza", "hombre"),
written by bench/language_words.py from wordfreq's frequencies. They show a prompt's language as function
words do: a prompt without function words was read by all six stemmers, and Spanish "violar" (to rape) read
"una giacca viola" (a purple jacket), "follar" read "una folla enorme in piazza" (a crowd)."""


def _words_of_one_language() -> dict[str, frozenset[str]]:
    """FUNCTION_WORDS with each language's list from LANGUAGE_WORDS_DIR (a missing list adds nothing)."""
    shown_by = {}
    for name, function_words in FUNCTION_WORDS.items():
        path = LANGUAGE_WORDS_DIR / f"{name}.txt"
        listed = path.read_text(encoding="utf-8").split("\n") if path.exists() else []
        shown_by[name] = function_words | frozenset(word for word in listed if word and not word.startswith("#"))
    return shown_by


WORDS_OF_ONE_LANGUAGE = _words_of_one_language()
_MASKED = re.compile(r"(?<![\w*])[a-z]*\*+[a-z*]*(?![\w*])")
MASKED_CATEGORIES = (Category.PROFANITY, Category.HATE, Category.SEXUAL)  # the words people write as "f***"
MIN_STEM = 4  # shorter stems collide across words and languages ("mata" and "mat" both cut to "mat")


EMOJI_WORDS = str.maketrans({
    "\U0001F346": " emojieggplant ", "\U0001F4A6": " emojisplash ", "\U0001F351": " emojipeach ",
    "\U0001F445": " emojitongue ", "\U0001F52B": " emojigun ", "\U0001F52A": " emojiknife ",
    "\U0001F4A3": " emojibomb ", "\U0001F48A": " emojipill ", "\U0001F489": " emojisyringe ",
    "\U0001F37A": " emojibeer ", "\U0001F37B": " emojibeer ", "\U0001F943": " emojiliquor ",
})
"""Emoji people write instead of the word ("🍆💦"): each becomes a token a lexicon line can list
("emojieggplant"); the lexicon decides what, if anything, it means and with what."""


def _without_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)).casefold()


def fold(text: str) -> str:
    stripped = _without_accents(text.translate(EMOJI_WORDS))
    return _SYMBOL_IN_WORD.sub(lambda m: m.group().translate(_LEET), stripped).translate(_LEET)


def words(text: str) -> list[str]:
    """Folded tokens, with runs of three or more single letters joined into one word."""
    raw = [token for token in _SEPARATORS.split(fold(text)) if token]
    joined: list[str] = []
    run: list[str] = []
    for token in raw + [""]:
        if len(token) == 1:
            run.append(token)
            continue
        if len(run) >= 3:
            joined.append("".join(run))
        else:
            joined.extend(run)
        run = []
        if token:
            joined.append(token)
    return joined


def _squeezed(token: str, keep: int) -> str:
    return re.sub(r"(.)\1{%d,}" % keep, lambda m: m.group(1) * keep, token)


@dataclass(frozen=True)
class _Phrase:
    key: str  # what matched: "line:<n>", "unless:<n>", "group:<name>" or "intensify:<category>"
    text: str  # the phrase as written (evidence)
    size: int  # words
    length: int  # characters of its searched form, leading space included


@dataclass
class LexiconRules:
    lines: list[tuple[Category, Severity, list[str], list[str]]] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)
    group_unless: dict[str, list[str]] = field(default_factory=dict)  # phrases that, covering a group word, void it
    rules: list[tuple[Category, Severity, list[str], list[str]]] = field(default_factory=list)
    intensify: dict[Category, list[str]] = field(default_factory=dict)
    languages: dict[str, set[str]] = field(default_factory=dict)  # phrase -> stemmers of the files listing it


def read_content_lexicon(paths: list[Path]) -> LexiconRules:
    rules = LexiconRules()
    for path in paths:
        language = STEMMER_OF_FILE.get(Path(path).stem)
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = [part.strip() for part in line.split("|")]
            if language is not None:
                phrase_parts = {"group": parts[2:3], "intensify": parts[2:3], "rule": parts[4:]}.get(parts[0], parts[2:])
                for part in phrase_parts:
                    for phrase in _phrases(part.removeprefix("unless:")):
                        rules.languages.setdefault(phrase, set()).add(language)
            try:
                if parts[0] == "group":
                    rules.groups.setdefault(parts[1], []).extend(_phrases(parts[2]))
                    rules.group_unless.setdefault(parts[1], []).extend(
                        p for part in parts[3:] if part.startswith("unless:") for p in _phrases(part.removeprefix("unless:")))
                elif parts[0] == "rule":
                    for part in parts[3].split("+"):
                        if part.strip().startswith("@"):
                            category, _, least = part.strip()[1:].partition(":")
                            Category(category), Severity(least or "low")  # named right, or the line is refused
                    unless = [p for part in parts[4:] if part.startswith("unless:")
                              for p in _phrases(part.removeprefix("unless:"))]
                    rules.rules.append((Category(parts[1]), Severity(parts[2]),
                                        [p.strip() for p in parts[3].split("+")], unless))
                elif parts[0] == "intensify":
                    for category in _phrases(parts[1]):
                        rules.intensify.setdefault(Category(category), []).extend(_phrases(parts[2]))
                else:
                    unless = [p for part in parts[3:] if part.startswith("unless:")
                              for p in _phrases(part.removeprefix("unless:"))]
                    rules.lines.append((Category(parts[0]), Severity(parts[1]), _phrases(parts[2]), unless))
            except (IndexError, ValueError) as exc:
                raise ValueError(f"{path}:{number}: cannot read lexicon line ({exc}): {line}") from None
    return rules


def _phrases(text: str) -> list[str]:
    return [phrase.strip() for phrase in text.split(",") if phrase.strip()]


class LexiconTextClassifier:
    """Every lexicon line in two Aho-Corasick automata (one per squeeze form); the second only runs on text
    with a stretched word."""

    name = "lexicon"

    def __init__(self, rules: LexiconRules, stemming: bool = True) -> None:
        self._rules = rules
        self._automata = {keep: ahocorasick.Automaton() for keep in (2, 1)}
        languages = sorted({name for names in rules.languages.values() for name in names}) if stemming else []
        self._stemmed = {name: (Stemmer.Stemmer(name), ahocorasick.Automaton()) for name in languages}
        self._stem_forms: dict[tuple[str, str], list[_Phrase]] = {}  # (language, stemmed form) -> its phrases
        self._line_info: list[tuple[Category, Severity]] = []
        self._unless_of: dict[str, set[int]] = {}  # phrase -> every line listing it: their unless phrases apply
        for index, (category, severity, phrases, unless) in enumerate(rules.lines):
            self._line_info.append((category, severity))
            for phrase in phrases:
                self._unless_of.setdefault(_base(phrase), set()).add(index)
            for phrase in phrases:
                self._add(f"line:{index}", phrase)
            for phrase in unless:
                self._add(f"unless:{index}", phrase)
        for index, (_, _, _, unless) in enumerate(rules.rules):
            for phrase in unless:
                self._add(f"rule-unless:{index}", phrase)
        for name, phrases in rules.groups.items():
            for phrase in phrases:
                self._add(f"group:{name}", phrase)
        for name, phrases in rules.group_unless.items():
            for phrase in phrases:
                self._add(f"group-unless:{name}", phrase)
        for category, phrases in rules.intensify.items():
            for phrase in phrases:
                self._add(f"intensify:{category.value}", phrase)
        for (language, form), entries in self._stem_forms.items():
            for entry in self._mildest_per_category(entries):
                _add_form(self._stemmed[language][1], form, entry)
        for automaton in [*self._automata.values(), *(automaton for _, automaton in self._stemmed.values())]:
            if len(automaton):
                automaton.make_automaton()
        self.size = len(rules.lines)
        self._maskable = _maskable_words(rules)

    def _add(self, key: str, phrase: str) -> None:
        prefix = phrase.endswith("*")
        parts = words(phrase.rstrip("*"))
        if not parts:
            return
        for keep, automaton in self._automata.items():
            form = " " + " ".join(_squeezed(p, keep) for p in parts) + ("" if prefix else " ")
            _add_form(automaton, form, _Phrase(key, phrase, len(parts), len(form)))
        if prefix or (key.startswith("unless:") and len(parts) == 1):
            return  # a prefix already matches what follows it; a one-word benign sense ("weeding") is that word
        for language in self._rules.languages.get(phrase, ()):
            if language in self._stemmed:
                form = " " + " ".join(_stems(self._stemmed[language][0], [_squeezed(p, 2) for p in parts])) + " "
                self._stem_forms.setdefault((language, form), []).append(
                    _Phrase(key, phrase, len(parts), len(form)))

    def _mildest_per_category(self, entries: list[_Phrase]) -> list[_Phrase]:
        """Of the lines whose phrases share one stem in one category, only the mildest reads through it:
        "sparargli" (shoot him) is listed high, "sparare" (to shoot) medium; "sparano" stems like both and
        must not take the severity the author gave only to the form with its object."""
        def line_of(entry: _Phrase) -> tuple[Category, Severity] | None:
            return self._line_info[int(entry.key[5:])] if entry.key.startswith("line:") else None

        mildest: dict[Category, Severity] = {}
        for line in filter(None, map(line_of, entries)):
            category, severity = line
            if category not in mildest or severity.rank < mildest[category].rank:
                mildest[category] = severity
        return [entry for entry in entries if (line := line_of(entry)) is None or line[1] == mildest[line[0]]]

    def classify(self, text: str) -> list[Signal]:
        tokens = words(self._unmasked(text))
        elongated = {position for position, token in enumerate(tokens) if _squeezed(token, 2) != token}
        hits: dict[str, list[tuple[int, int, str]]] = {}  # key -> [(first word, last word, phrase)]
        for keep, automaton in self._automata.items():
            if not len(automaton) or (keep == 1 and not elongated):
                continue
            forms = [_squeezed(token, keep) for token in tokens]
            line = " " + " ".join(forms) + " "
            starts, offset = {}, 1
            for position, form in enumerate(forms):
                starts[offset] = position
                offset += len(form) + 1
            for end, entries in automaton.iter(line):
                for entry in entries:
                    first = starts[end - entry.length + 2]  # the form starts with the space before its first word
                    last = first + entry.size - 1
                    if keep == 1 and not any(first <= position <= last for position in elongated):
                        continue
                    hits.setdefault(entry.key, []).append((first, last, entry.text))
        if tokens and self._stemmed:
            self._add_stem_hits(tokens, hits)
        return self._signals(text, hits)

    def _unmasked(self, text: str) -> str:
        """The text with each self-censored word ("f***", "s**t", "a**hole") replaced by the first word of
        the masked categories whose letters fit it, one letter per star; a word `fuck*` lists also reads
        "f***ing". Masks that fit no listed word ("***", "a*b") stay as they were."""
        folded = fold(text)
        if "*" not in folded:
            return text

        def restore(match: re.Match[str]) -> str:
            masked = match.group()
            letters = sum(ch != "*" for ch in masked)
            if letters == 0 or len(masked) < 3:
                return masked
            for word, is_prefix in self._maskable:
                if len(masked) == len(word) or (is_prefix and len(masked) > len(word)):
                    head = masked[:len(word)]
                    if all(shown in ("*", wanted) for shown, wanted in zip(head, word)):
                        rest = masked[len(word):]
                        return word + ("" if "*" in rest else rest)
            return masked

        return _MASKED.sub(restore, folded)

    def _add_stem_hits(self, tokens: list[str], hits: dict[str, list[tuple[int, int, str]]]) -> None:
        """Phrases found through stems, where the words were not already read as written: a word some line
        lists literally keeps that line's reading ("bomb" with its benign senses never turns into "bombing")."""
        forms = [_squeezed(token, 2) for token in tokens]
        stemmed: dict[str, list[tuple[int, int, str]]] = {}
        for stemmer, automaton in self._stemmed_for(set(tokens)):
            if len(automaton):
                self._match(automaton, _stems(stemmer, forms), stemmed)
        literal: dict[str, set[int]] = {}  # kind of entry (line, group, ...) -> words it covers as written
        for key, spans in hits.items():
            literal.setdefault(key.split(":", 1)[0], set()).update(
                word for first, last, _ in spans for word in range(first, last + 1))
        for key, spans in stemmed.items():
            covered = literal.get(key.split(":", 1)[0], set())
            for span in spans:
                found = hits.setdefault(key, [])
                if span not in found and not all(word in covered for word in range(span[0], span[1] + 1)):
                    found.append(span)

    def _stemmed_for(self, tokens: set[str]) -> list[tuple[Any, ahocorasick.Automaton]]:
        """The stemmers of the languages the text shows words of one language of (WORDS_OF_ONE_LANGUAGE: function
        words and common words); all of them when it shows none ("wtf kys" has no such word)."""
        shown = {name for name, own_words in WORDS_OF_ONE_LANGUAGE.items() if tokens & own_words}
        return [stemmer for name, stemmer in self._stemmed.items() if not shown or name in shown]

    @staticmethod
    def _match(automaton: ahocorasick.Automaton, forms: list[str],
               hits: dict[str, list[tuple[int, int, str]]]) -> None:
        """Every phrase of the automaton found among the words, by the positions of its first and last word."""
        starts, offset = {}, 1
        for position, form in enumerate(forms):
            starts[offset] = position
            offset += len(form) + 1
        for end, entries in automaton.iter(" " + " ".join(forms) + " "):
            for entry in entries:
                first = starts[end - entry.length + 2]
                hits.setdefault(entry.key, []).append((first, first + entry.size - 1, entry.text))

    def _signals(self, text: str, hits: dict[str, list[tuple[int, int, str]]]) -> list[Signal]:
        found: dict[Category, Signal] = {}

        def add(category: Category, severity: Severity, evidence: list[str]) -> None:
            current = found.get(category)
            if current is None or severity.rank > current.severity.rank:
                found[category] = Signal(category, severity, 1.0, self.name,
                                         {"matched": sorted(set(evidence))})
            elif severity == current.severity:
                merged = sorted(set(current.evidence["matched"]) | set(evidence))
                found[category] = Signal(category, severity, 1.0, self.name, {"matched": merged})

        for index, (category, severity) in enumerate(self._line_info):
            spans = hits.get(f"line:{index}", [])
            kept = [span for span in spans
                    if not any(_near(span, cancel) for line in self._unless_of[_base(span[2])]
                               for cancel in hits.get(f"unless:{line}", []))]
            if kept:
                add(category, severity, [phrase for _, _, phrase in kept])
        groups = _group_hits(hits)
        if _UNDER_18.search(_without_accents(text)):
            groups.setdefault("minor", []).append((-1, -1, "age under 18"))  # anywhere: no position
        for _ in range(2):  # a rule may build on a category another rule added
            for index, (category, severity, parts, _) in enumerate(self._rules.rules):
                if f"rule-unless:{index}" in hits:
                    continue
                needed = [part for part in parts if part.startswith("@")]
                if not all(_has(found, part[1:]) for part in needed):
                    continue
                sets = [groups.get(part, []) for part in parts if not part.startswith("@")]
                if all(sets) and _close_together(sets):
                    add(category, severity, [f"rule: {' + '.join(parts)}"])
        for category, signal in list(found.items()):
            if f"intensify:{category.value}" in hits and signal.severity is not Severity.HIGH:
                found[category] = Signal(category, signal.severity.raised(), 1.0, self.name,
                                         {**signal.evidence, "intensified": True})
        return list(found.values())


def _maskable_words(rules: LexiconRules) -> list[tuple[str, bool]]:
    """(word, whether it is a `word*` prefix) of every one-word phrase of the masked categories, in lexicon order,
    profanity first: "s**t" is "shit" before it is "slut"."""
    found: list[tuple[str, bool]] = []
    for category in MASKED_CATEGORIES:
        for line_category, _, phrases, _ in rules.lines:
            if line_category is not category:
                continue
            for phrase in phrases:
                parts = words(phrase.rstrip("*"))
                if len(parts) == 1 and len(parts[0]) >= 3 and (parts[0], phrase.endswith("*")) not in found:
                    found.append((parts[0], phrase.endswith("*")))
    return found


def _add_form(automaton: ahocorasick.Automaton, form: str, entry: _Phrase) -> None:
    """One searched form may stand for several phrases (and lines): each keeps its own entry."""
    entries = automaton.get(form, []) if form in automaton else []
    automaton.add_word(form, entries + [entry])


def _stems(stemmer: Stemmer.Stemmer, forms: list[str]) -> list[str]:
    return [stem if len(stem) >= MIN_STEM else form for form, stem in zip(forms, stemmer.stemWords(forms))]


def _base(phrase: str) -> str:
    """A phrase's words without the prefix mark: "cocktail*" and "cocktail" are one phrase across languages."""
    return " ".join(words(phrase.rstrip("*")))


def _has(found: dict[Category, Signal], wanted: str) -> bool:
    category, _, least = wanted.partition(":")
    signal = found.get(Category(category))
    return signal is not None and signal.severity.rank >= Severity(least or "low").rank


def _close_together(sets: list[list[tuple[int, int, str]]], window: int = RULE_WINDOW) -> bool:
    """Whether one span from each set lies within `window` words of a span of every other set."""
    if len(sets) < 2:
        return True
    positioned = [[span for span in spans if span[0] >= 0] or spans for spans in sets]
    for anchor in positioned[0]:
        if anchor[0] < 0 or all(any(span[0] < 0 or (abs(span[0] - anchor[0]) <= window) for span in spans)
                                for spans in positioned[1:]):
            return True
    return False


def _group_hits(hits: dict[str, list[tuple[int, int, str]]]) -> dict[str, list[tuple[int, int, str]]]:
    """Each group's words found, less those inside a longer phrase its `unless:` lists."""
    groups = {}
    for key, spans in hits.items():
        if key.startswith("group:"):
            name = key.removeprefix("group:")
            covers = hits.get(f"group-unless:{name}", [])
            kept = [span for span in spans if not any(_overlap(span, cover) for cover in covers)]
            if kept:
                groups[name] = kept
    return groups


def _overlap(span: tuple[int, int, str], cover: tuple[int, int, str]) -> bool:
    """A group word inside a longer phrase that gives it another sense ("junge" in "junge frau")."""
    return cover[0] <= span[1] and span[0] <= cover[1]


def _near(span: tuple[int, int, str], cancel: tuple[int, int, str]) -> bool:
    return cancel[0] - CONTEXT_WINDOW <= span[1] and span[0] <= cancel[1] + CONTEXT_WINDOW
