"""`nmt-prepare`: read, validate, clean and tokenize a corpus into data/prepared/<name>/ (no training).

nmt-prepare                                   # Multi30k de -> en (the default data config)
nmt-prepare data=wmt_news_de_en
nmt-prepare data.tokenizer.vocab_size=4000 data.root=/tmp/data
"""

from __future__ import annotations

import sys
import time

import hydra
from omegaconf import DictConfig

from nmt.config import CONFIG_DIR
from nmt.errors import user_errors

# Preparing writes nothing but the corpus cache, so Hydra's run directory (config copy, log file under
# outputs/<data>/<model>/<time>/) would only litter outputs/ with empty runs. A user's own hydra.* wins.
QUIET_HYDRA = ("hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=none", "hydra/hydra_logging=none")


@user_errors
def run(cfg: DictConfig) -> None:
    # Imported here so that config mistakes and --help answer without loading `datasets`.
    from nmt.data.corpus import describe, prepare_corpus

    start = time.perf_counter()
    corpus = prepare_corpus(cfg.data, log=lambda msg: print(msg, flush=True))
    print(describe(corpus))
    print(f"done in {time.perf_counter() - start:.2f} s")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    given = {arg.split("=", 1)[0].lstrip("+~") for arg in sys.argv[1:]}
    sys.argv += [o for o in QUIET_HYDRA if o.split("=", 1)[0] not in given]
    _hydra_main()


if __name__ == "__main__":
    main()
