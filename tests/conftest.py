"""Shared pytest fixtures."""

from __future__ import annotations

import gzip
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import torch

from nmt.metrics.retention import Retention, RetentionDifference, SystemRetention
from nmt.metrics.scores import LengthRatio


@pytest.fixture
def fail_writes(monkeypatch):
    """`fail_writes("ENOSPC", path)`: in this process, writing a file or making a directory under `path` fails with
    that errno from now to the end of the test (the same replacements the child processes get from fault_env)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nmt_faults", Path(__file__).parent / "faults" / "sitecustomize.py")
    faults = importlib.util.module_from_spec(spec)
    monkeypatch.delenv("NMT_FAULT_WRITE", raising=False)
    monkeypatch.delenv("NMT_FAULT_SIGINT_AT", raising=False)
    spec.loader.exec_module(faults)

    def install(errno_name: str, path: str | Path) -> None:
        for (owner, attr), replacement in faults.write_fault(errno_name, str(path)).items():
            monkeypatch.setattr(owner, attr, replacement)

    return install


@pytest.fixture
def one_thread():
    """Tiny ops are fastest single-threaded, and two threads on a busy 2-core machine mostly wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def made_retention(fixed: float, attention: float, p_fixed: float = 0.001, p_attention: float = 0.5,
                   p_diff: float = 0.001, attention_lo: float | None = None, bleu: float = 30.0,
                   attention_bleu: float | None = None) -> Retention:
    """A hand-made `retention` result for the verdict rules: systems "fixed" and "attn" score `bleu` at k = 1
    (attention `attention_bleu` if given) and keep the given shares, with 95% intervals of share +- 0.05
    (attention's lower end `attention_lo` if given) and the given one-sided p-values."""
    length = LengthRatio(ratio=1.0, brevity_penalty=1.0)

    def system(share: float, lo: float, p: float, k1: float) -> SystemRetention:
        return SystemRetention(k1, k1 * share, share, [lo, share + 0.05], p, length, length)

    lo = attention - 0.05 if attention_lo is None else attention_lo
    return Retention(
        systems={"fixed": system(fixed, fixed - 0.05, p_fixed, bleu),
                 "attn": system(attention, lo, p_attention, bleu if attention_bleu is None else attention_bleu)},
        difference=RetentionDifference(attention - fixed, [attention - fixed - 0.1, attention - fixed + 0.1], p_diff),
        pairs=[], groups=250, n_samples=1000)


def _no_mirror(reason: str) -> NoReturn:
    """Skip a real-corpus test, or fail it where the mirror is promised (NMT_REQUIRE_MIRROR=1, set by .ci/run)."""
    if os.environ.get("NMT_REQUIRE_MIRROR") == "1":
        pytest.fail(f"{reason}, but NMT_REQUIRE_MIRROR=1 promises the corpus mirror", pytrace=False)
    pytest.skip(reason)


# The constructed German-English sample laid out like the mirror's multi30k/ (scripts/make_sample_corpus.py): the
# real corpora may not be redistributed here, so a clone without the mirror runs the pipeline tests on this.
SAMPLE_MIRROR = Path(__file__).parent / "fixtures" / "sample_mirror"
NO_MIRROR = "NMT_DATA_MIRROR is not set (point it at ../shared/data to run the real-corpus tests)"


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The read-only corpus mirror ($NMT_DATA_MIRROR, e.g. ../shared/data). Without it the constructed sample
    corpus stands in (and NMT_DATA_MIRROR points at it for the code under test), unless NMT_REQUIRE_MIRROR=1
    (set by .ci/run) promises the real one: then the test fails."""
    value = os.environ.get("NMT_DATA_MIRROR")
    if not value:
        if os.environ.get("NMT_REQUIRE_MIRROR") == "1":
            _no_mirror(NO_MIRROR)
        os.environ["NMT_DATA_MIRROR"] = str(SAMPLE_MIRROR)
        return SAMPLE_MIRROR
    path = Path(value)
    if not (path / "multi30k").is_dir():
        _no_mirror(f"NMT_DATA_MIRROR={value} has no multi30k/ folder")
    return path


@pytest.fixture(scope="session")
def real_mirror(mirror: Path) -> Path:
    """The mirror of the real corpora, for a test that needs what only they have (their size, WMT news); skips
    on the constructed sample."""
    if mirror == SAMPLE_MIRROR:
        pytest.skip(f"{NO_MIRROR}; the constructed sample corpus cannot stand in here")
    return mirror


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many tests skipped and why, one line per reason (a clone without the corpus mirror skips many)."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section(f"{sum(reasons.values())} tests skipped, by reason")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"{count:4d}  {reason}")
    if os.environ.get("NMT_DATA_MIRROR", "") in ("", str(SAMPLE_MIRROR)):  # set by `mirror` in this process
        terminalreporter.write_line(f"{NO_MIRROR}: tests that read a corpus use the constructed sample in "
                                    f"{SAMPLE_MIRROR}")


# Tiny trained checkpoints (evaluation, translation, averaging) ----------------------------------------------
TINY_TRAIN_PAIRS = 300
TINY_TRAIN_MAX_WORDS = 12  # short training sentences keep the fixture's training steps cheap


@dataclass
class TinyRun:
    """A run directory with checkpoints of a model trained for a few dozen steps on a tiny Multi30k slice.

    run_dir: step-<n>.pt for each n in `steps`, last.pt and best.pt (both the final step).
    files: split -> [source path, target path] of the tiny corpus (train, valid, test).
    data_root: where its prepared corpus is cached (the checkpoints' data.root).
    """

    run_dir: Path
    files: dict[str, list[str]]
    data_root: Path
    steps: list[int]


def _gz_lines(path: Path, keep: Callable[[int], bool], limit: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for i, line in enumerate(f) if keep(i)][:limit]


@pytest.fixture(scope="session")
def tiny_corpus_files(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Multi30k de-en lines of the mirror (or of the sample) in plain files: 300 short train pairs, 30 valid, 60
    test pairs."""
    root = tmp_path_factory.mktemp("tiny_corpus")
    m30k = mirror / "multi30k"
    with gzip.open(m30k / "train.de.gz", "rt", encoding="utf-8") as f:
        short = [i for i, line in zip(range(3000), f, strict=False) if len(line.split()) <= TINY_TRAIN_MAX_WORDS]
    chosen = set(short[:TINY_TRAIN_PAIRS])
    files = {}
    for split, name, keep, limit in [
        ("train", "train", lambda i: i in chosen, TINY_TRAIN_PAIRS),
        ("valid", "val", lambda i: i < 30, 30),
        ("test", "test_2016_flickr", lambda i: i < 60, 60),
    ]:
        files[split] = []
        for lang in ("de", "en"):
            path = root / f"{split}.{lang}"
            path.write_text("\n".join(_gz_lines(m30k / f"{name}.{lang}.gz", keep, limit)) + "\n", encoding="utf-8")
            files[split].append(str(path))
    return files


def train_tiny_run(
    run_dir: Path, files: dict[str, list[str]], data_root: Path, arch: str, steps: int, save_every: int
) -> TinyRun:
    """Train `arch` (tiny sizes) with a plain loop and save checkpoints in the trainer's format."""
    from nmt.config import Config, DataConfig, DecodeConfig, TokenizerConfig, TrainConfig, model_config_class
    from nmt.data.corpus import prepare_corpus

    data = DataConfig(
        name="tiny",
        source="files",
        src_lang="de",
        tgt_lang="en",
        files=files,
        root=str(data_root),
        tokenizer=TokenizerConfig(vocab_size=250),
    )
    own = {"rnn_attention": dict(emb_dim=16, heads=2), "rnn_fixed": dict(emb_dim=16),
           "transformer": dict(heads=2, ff_dim=64, max_positions=128)}[arch]
    model_cfg = model_config_class(arch)(hidden=32, dropout=0.0, **own)
    cfg = Config(
        data=data,
        model=model_cfg,
        train=TrainConfig(device="cpu", max_steps=steps, lr=5e-3),
        decode=DecodeConfig(beam=2, batch_size=32),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the 2 cores are shared: more threads only contend
    try:
        corpus = prepare_corpus(data, log=lambda _: None)
        return _train_and_save(run_dir, cfg, corpus, steps, save_every)
    finally:
        torch.set_num_threads(threads)


def _train_and_save(run_dir: Path, cfg: Any, corpus: Any, steps: int, save_every: int) -> TinyRun:
    """Train with the one training step on fixed 16-pair batches; checkpoints as the trainer writes them."""
    from nmt.data.batching import collate
    from nmt.models import build_model
    from nmt.training.checkpoint import Checkpoint
    from nmt.training.state import TrainState
    from nmt.training.step import train_step

    tok = corpus.tokenizer
    train = corpus.encoded("train")
    src, tgt = train.src, train.tgt
    torch.manual_seed(1)
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    order = torch.randperm(len(src)).tolist()
    saved = []
    for step in range(1, steps + 1):
        start = (step - 1) * 16 % (len(order) - 16)
        rows = order[start : start + 16]
        batch = collate([src[i] for i in rows], [tgt[i] for i in rows], rows)
        train_step(model, optimizer, [batch], torch.device("cpu"), label_smoothing=0.0, clip_norm=0.0)
        names = [f"step-{step}.pt"] if step % save_every == 0 else []
        names += ["last.pt", "best.pt"] if step == steps else []
        for name in names:
            Checkpoint.of_run(cfg, model, tok, optimizer, None, TrainState(step=step, batch_in_epoch=step)).save(
                run_dir / name)
        if step % save_every == 0:
            saved.append(step)
    return TinyRun(run_dir=run_dir, files=dict(cfg.data.files), data_root=Path(cfg.data.root), steps=saved)


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus_files: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """rnn_attention trained 30 steps on the tiny corpus; step-10/20/30.pt, last.pt, best.pt."""
    root = tmp_path_factory.mktemp("tiny_run")
    return train_tiny_run(root / "run", tiny_corpus_files, root / "data", "rnn_attention", steps=30, save_every=10)


@pytest.fixture(scope="session")
def tiny_transformer_run(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """A Transformer on the same tiny corpus (and prepared-data cache), barely trained: 2 steps."""
    root = tmp_path_factory.mktemp("tiny_transformer")
    return train_tiny_run(root / "run", tiny_run.files, tiny_run.data_root, "transformer", steps=2, save_every=2)
