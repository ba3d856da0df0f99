"""`nmt-prepare`: read, validate, clean and tokenize a corpus into data/prepared/<name>/ (no training).

nmt-prepare                                   # Multi30k de -> en (the default data config)
nmt-prepare data=wmt_news_de_en
nmt-prepare data.tokenizer.vocab_size=4000 data.root=/tmp/data
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from nmt.cli.entry import hydra_command
from nmt.errors import user_errors
from nmt.io import undo_on_failure


@user_errors
def prepare_command(cfg: DictConfig) -> None:
    # Imported here so that config mistakes and --help answer without loading `datasets`.
    from nmt.data.corpus import describe, prepare_corpus, prepared_dir

    start = time.perf_counter()
    # A failure (a full disk, Ctrl-C during SentencePiece training) removes what this run added to the corpus's
    # prepared directory (a half-written dataset.tmp ...); what an earlier run prepared stays.
    with undo_on_failure(prepared_dir(cfg.data)):
        corpus = prepare_corpus(cfg.data, log=lambda msg: print(msg, flush=True))
    print(describe(corpus))
    print(f"done in {time.perf_counter() - start:.2f} s")


@hydra_command("prepare")  # configs/prepare.yaml: the training config without a run directory
def main(cfg: DictConfig) -> None:
    prepare_command(cfg)


if __name__ == "__main__":
    main()
