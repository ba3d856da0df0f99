"""Write the constructed German-English sample corpus the tests fall back on without the corpus mirror.

    .venv/bin/python scripts/make_sample_corpus.py [OUT_DIR]   (default tests/fixtures/sample_mirror)

The real corpora (Multi30k, WMT newstest) may not be redistributed in this repository, so the sample is made
here: short image-caption-like sentences ("Ein Mann in einer roten Jacke sitzt auf einer Bank." / "A man in a
red jacket sits on a bench.") built from a small lexicon with German agreement and word order, laid out like
the mirror's multi30k/ folder (train, val, test_2016_flickr; .de.gz / .en.gz, line-aligned). It exercises the
pipeline (tokenizer, batching, training, decoding, scoring, reports); it says nothing about translation quality
on real data. The output is byte-for-byte reproducible (fixed seed, gzip without timestamps).
"""

from __future__ import annotations

import gzip
import random
import sys
from pathlib import Path

# (German, English, plural?) — German with a capitalised article, as at the start of a sentence.
SUBJECTS = [
    ("Ein Mann", "A man", False), ("Eine Frau", "A woman", False), ("Ein Junge", "A boy", False),
    ("Ein Mädchen", "A girl", False), ("Ein Kind", "A child", False), ("Ein Hund", "A dog", False),
    ("Ein älterer Mann", "An older man", False), ("Eine junge Frau", "A young woman", False),
    ("Ein kleiner Junge", "A little boy", False), ("Ein kleines Mädchen", "A little girl", False),
    ("Ein Radfahrer", "A cyclist", False), ("Ein Arbeiter", "A worker", False), ("Eine Musikerin", "A musician", False),
    ("Zwei Männer", "Two men", True), ("Zwei Frauen", "Two women", True), ("Drei Kinder", "Three children", True),
    ("Mehrere Leute", "Several people", True), ("Zwei Hunde", "Two dogs", True), ("Vier Freunde", "Four friends", True),
]
COLOURS = [("rot", "red"), ("blau", "blue"), ("grün", "green"), ("schwarz", "black"), ("weiß", "white"),
           ("gelb", "yellow"), ("grau", "gray")]
CLOTHES = [("einem", "Hemd", "shirt"), ("einer", "Jacke", "jacket"), ("einem", "Mantel", "coat"),
           ("einem", "Kleid", "dress"), ("einem", "Pullover", "sweater"), ("einer", "Mütze", "hat")]
VERBS = [("sitzt", "sitzen", "sits", "sit"), ("steht", "stehen", "stands", "stand"),
         ("läuft", "laufen", "walks", "walk"), ("spielt", "spielen", "plays", "play"),
         ("wartet", "warten", "waits", "wait"), ("arbeitet", "arbeiten", "works", "work"),
         ("tanzt", "tanzen", "dances", "dance"), ("rennt", "rennen", "runs", "run"),
         ("singt", "singen", "sings", "sing"), ("lacht", "lachen", "laughs", "laugh")]
WITH = [("mit einem Ball", "with a ball"), ("mit einer Kamera", "with a camera"), ("mit einem Buch", "with a book"),
        ("mit einer Tasche", "with a bag"), ("mit einem Regenschirm", "with an umbrella")]
PLACES = [("auf einer Bank", "on a bench"), ("vor einem Gebäude", "in front of a building"),
          ("im Park", "in the park"), ("auf der Straße", "on the street"), ("am Strand", "on the beach"),
          ("im Schnee", "in the snow"), ("neben einem Auto", "next to a car"), ("in einer Küche", "in a kitchen"),
          ("auf einem Feld", "in a field"), ("an einem See", "by a lake"), ("auf einer Bühne", "on a stage"),
          ("im Wasser", "in the water"), ("in der Stadt", "in the city"),
          ("vor einer Menschenmenge", "in front of a crowd")]
SPLITS = {"train": 3000, "val": 300, "test_2016_flickr": 300}


def clause(rng: random.Random, subordinate: bool = False) -> tuple[str, str]:
    """One clause: subject, optional clothing, verb, optional object phrase, place. A subordinate clause starts
    in lower case and puts the German verb last."""
    de_subj, en_subj, plural = rng.choice(SUBJECTS)
    de, en = [de_subj], [en_subj]
    if rng.random() < 0.5:
        article, noun, en_noun = rng.choice(CLOTHES)
        colour, en_colour = rng.choice(COLOURS)
        de.append(f"in {article} {colour}en {noun}")
        en.append(f"in a {en_colour} {en_noun}")
    de_sg, de_pl, en_sg, en_pl = rng.choice(VERBS)
    verb = de_pl if plural else de_sg
    if not subordinate:
        de.append(verb)
    en.append(en_pl if plural else en_sg)
    de_place, en_place = rng.choice(PLACES)
    if rng.random() < 0.4:
        de_with, en_with = rng.choice(WITH)
        de.append(de_with)
        en += [en_place, en_with]
    else:
        en.append(en_place)
    de.append(de_place)
    if subordinate:
        de.append(verb)
    de_text, en_text = " ".join(de), " ".join(en)
    if subordinate:
        de_text, en_text = de_text[0].lower() + de_text[1:], en_text[0].lower() + en_text[1:]
    return de_text, en_text


def sentence(rng: random.Random) -> tuple[str, str]:
    """A caption: one clause, or two joined by "while" (German "während", verb last in the second)."""
    de, en = clause(rng)
    if rng.random() < 0.3:
        de2, en2 = clause(rng, subordinate=True)
        de, en = f"{de}, während {de2}", f"{en} while {en2}"
    return de + ".", en + "."


def main(out: Path) -> None:
    rng = random.Random(30)
    pairs: dict[str, str] = {}
    total = sum(SPLITS.values())
    while len(pairs) < total:
        de, en = sentence(rng)
        pairs.setdefault(de, en)
    items = list(pairs.items())
    folder = out / "multi30k"
    folder.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, count in SPLITS.items():
        chunk = items[start:start + count]
        start += count
        for lang, column in (("de", 0), ("en", 1)):
            text = "".join(pair[column] + "\n" for pair in chunk).encode("utf-8")
            (folder / f"{split}.{lang}.gz").write_bytes(gzip.compress(text, mtime=0))
    print(f"{total} pairs in {folder}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tests" / "fixtures"
         / "sample_mirror")
