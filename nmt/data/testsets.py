"""Standard test sets by their sacreBLEU names: `nmt-evaluate testset=wmt14/full langpair=de-en`.

The German-English WMT news sets are read from the data mirror's unmodified per-set files
($NMT_DATA_MIRROR/wmt-newstest-de-en/by-set/<set>.<direction>.<lang>.gz, see its SOURCE.md) when a mirror is
set; otherwise sacreBLEU downloads them (its own cache, ~/.sacrebleu). Up to 2018 a set is one text in both
directions (the de-en files serve en-de too); from 2019 on each direction has its own source-original text.
The names are sacreBLEU's, with its references: wmt14 is the official 2,737-sentence subset and wmt14/full all
3,003 sentences (the mirror holds the full set only); wmt21 and wmt22 score against reference A.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from nmt.data.sources import mirror_dir
from nmt.errors import NMTError

MIRROR_SUBDIR = Path("wmt-newstest-de-en") / "by-set"
# sacreBLEU name -> the set's file stem in the mirror
MIRRORED = {
    "wmt08": "news-test2008", "wmt09": "newstest2009", "wmt10": "newstest2010", "wmt11": "newstest2011",
    "wmt12": "newstest2012", "wmt13": "newstest2013", "wmt14/full": "newstest2014", "wmt15": "newstest2015",
    "wmt16": "newstest2016", "wmt17": "newstest2017", "wmt18": "newstest2018", "wmt19": "newstest2019",
    "wmt20": "newstest2020", "wmt21": "newstest2021", "wmt22": "generaltest2022",
}
DIRECTIONAL = ("wmt19", "wmt20", "wmt21", "wmt22")  # one text per direction from here on


def _read(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def mirrored_files(name: str, langpair: str) -> tuple[Path, Path] | None:
    """(source, reference) files of the set in the mirror, or None when the mirror or the set is not there."""
    root = mirror_dir()
    src, tgt = langpair.split("-")
    if root is None or name not in MIRRORED or {src, tgt} != {"de", "en"}:
        return None
    direction = langpair if name in DIRECTIONAL else "de-en"
    stem = root / MIRROR_SUBDIR / f"{MIRRORED[name]}.{direction}"
    files = Path(f"{stem}.{src}.gz"), Path(f"{stem}.{tgt}.gz")
    return files if all(f.is_file() for f in files) else None


def load_testset(name: str, langpair: str) -> tuple[list[str], list[str], str]:
    """(sources, references, where they came from) of sacreBLEU test set `name` for `langpair` (e.g. "de-en")."""
    if langpair.count("-") != 1:
        raise NMTError(f"langpair must look like de-en, got {langpair!r}")
    files = mirrored_files(name, langpair)
    if files is not None:
        sources, refs = _read(files[0]), _read(files[1])
        where = f"{files[0].parent}/{files[0].name.rsplit('.', 2)[0]}.*"
    else:
        sources, refs, where = _from_sacrebleu(name, langpair)
    if len(sources) != len(refs) or not sources:
        raise NMTError(f"test set {name} {langpair}: {len(sources)} sources and {len(refs)} references")
    return sources, refs, where


def _from_sacrebleu(name: str, langpair: str) -> tuple[list[str], list[str], str]:
    """The set through sacreBLEU's downloader (the network, or its cache)."""
    from sacrebleu.dataset import DATASETS

    dataset = DATASETS.get(name)
    if dataset is None or langpair not in dataset.langpairs:
        mirrored = ", ".join(MIRRORED)
        raise NMTError(f"unknown test set {name} for {langpair} (sacreBLEU names; the mirror holds {mirrored} "
                       f"for de-en and en-de)")
    try:
        dataset.process_to_text(langpair)
        source = Path(dataset.get_source_file(langpair))
        (reference, *_) = dataset.get_reference_files(langpair)
        return (source.read_text(encoding="utf-8").splitlines(),
                Path(reference).read_text(encoding="utf-8").splitlines(), f"sacreBLEU {name}")
    except Exception as e:  # the downloader raises for a missing network in several ways
        hint = " (the data mirror holds wmt14/full, not the 2,737-sentence wmt14)" if name == "wmt14" else ""
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NMTError(f"cannot get test set {name} {langpair}: not in the data mirror (NMT_DATA_MIRROR) and "
                       f"sacreBLEU could not download it{hint}: {reason}") from None
