"""The JoeyNMT side-by-side benchmark (scripts/peer/bench.py; JoeyNMT itself in scripts/peer/joey.py): our configs
translated to JoeyNMT 2.3 YAML with every unmatched option reported, its outputs scored by our pipeline, its
training clock read from its log. No JoeyNMT install is needed: these tests stop short of running it."""

from __future__ import annotations

import datetime
import json
import math
import signal
import sys
import time

import pytest
import torch
import yaml
from torch.optim import lr_scheduler

from nmt.config import DataConfig, DecodeConfig, TokenizerConfig
from nmt.data.corpus import prepare_corpus
from nmt.data.tokenizer import Tokenizer
from nmt.errors import NMTError
from nmt.metrics.scores import corpus_scores

from peer import joeynmt_launch
from peer.bench import (
    end_curve,
    load_reference,
    minutes_to_reach,
    open_bench_dir,
    our_checkpoint,
    our_config,
    pool_runs,
    render_markdown,
    run_peer_bench,
    score_outputs,
    steady_curve,
)
from peer.joey import (
    DECODES,
    JoeyClock,
    JoeyPaths,
    export_corpus,
    joey_config,
    joey_decode_config,
    joey_validations,
    spm_pieces,
    start_interruptible,
)


@pytest.fixture
def paths(tmp_path):
    return JoeyPaths(tmp_path / "data", tmp_path / "data" / "spm.model", tmp_path / "data" / "vocab.txt",
                     tmp_path / "joeynmt")


def option_names(unmatched: list[str]) -> set[str]:
    return {line.split(":", 1)[0] for line in unmatched}


def test_transformer_config_matches_ours_option_by_option(paths):
    cfg = our_config("transformer")
    joey, _ = joey_config(cfg, paths)
    enc, dec, train = joey["model"]["encoder"], joey["model"]["decoder"], joey["training"]
    for stack, layers in ((enc, cfg.model.enc_layers), (dec, cfg.model.dec_layers)):
        assert stack["type"] == "transformer" and stack["num_layers"] == layers
        assert stack["hidden_size"] == stack["embeddings"]["embedding_dim"] == cfg.model.hidden == 256
        assert (stack["num_heads"], stack["ff_size"], stack["dropout"]) == (cfg.model.heads, cfg.model.ff_dim, 0.0)
        assert stack["layer_norm"] == "pre" and stack["embeddings"]["scale"] is True
    assert joey["model"]["tied_embeddings"] is True and joey["model"]["tied_softmax"] is True
    assert (train["batch_type"], train["batch_size"]) == ("token", cfg.train.batch_tokens // 2)
    assert train["scheduling"] == "warmupinversesquareroot"
    assert (train["learning_rate"], train["learning_rate_warmup"]) == (cfg.train.lr, cfg.train.warmup_steps)
    assert train["adam_betas"] == list(cfg.train.betas) and train["optimizer"] == cfg.train.optimizer
    assert (train["label_smoothing"], train["clip_grad_norm"]) == (cfg.train.label_smoothing, cfg.train.clip_norm)
    assert train["validation_freq"] == cfg.train.eval_every and train["validation_freq"] % train["logging_freq"] == 0
    assert train["keep_best_ckpts"] == -1 and train["early_stopping_metric"] == "bleu"
    assert joey["data"]["src"]["tokenizer_cfg"]["model_file"] == str(paths.spm_model)
    assert joey["data"]["src"]["voc_file"] == joey["data"]["trg"]["voc_file"] == str(paths.vocab)


def test_transformer_reports_every_unmatched_option(paths):
    _, unmatched = joey_config(our_config("transformer"), paths)
    assert option_names(unmatched) == {"train.batch_tokens", "train.label_smoothing", "train.max_minutes",
                                       "train.schedule", "train.ema_decay", "decode.max_len"}
    assert all(" vs " in line for line in unmatched)


def test_rnn_config_is_a_bidirectional_gru_with_additive_attention_of_our_sizes(paths):
    cfg = our_config("rnn")
    joey, _ = joey_config(cfg, paths)
    enc, dec, train = joey["model"]["encoder"], joey["model"]["decoder"], joey["training"]
    assert (enc["type"], enc["rnn_type"], enc["bidirectional"]) == ("recurrent", "gru", True)
    assert enc["hidden_size"] == dec["hidden_size"] == cfg.model.hidden
    assert enc["embeddings"]["embedding_dim"] == dec["embeddings"]["embedding_dim"] == cfg.model.emb_dim
    assert (dec["attention"], dec["init_hidden"], dec["input_feeding"]) == ("bahdanau", "bridge", True)
    assert enc["dropout"] == dec["dropout"] == dec["hidden_dropout"] == cfg.model.dropout
    assert joey["model"]["tied_softmax"] is True  # emb_dim == hidden
    assert (train["scheduling"], train["decrease_factor"], train["patience"]) == (
        "plateau", cfg.train.plateau_factor, cfg.train.plateau_patience)


def test_rnn_reports_every_unmatched_option(paths):
    _, unmatched = joey_config(our_config("rnn"), paths)
    assert option_names(unmatched) == {
        "model.input_feeding", "readout", "model.dropout", "weight init", "train.min_lr", "plateau threshold",
        "train.batch_tokens", "train.label_smoothing", "train.max_minutes", "train.ema_decay", "decode.max_len"}
    assert all(" vs " in line for line in unmatched)


@pytest.mark.parametrize(("arch", "override", "reported"), [
    ("transformer", "model.positions=learned", "model.positions"),
    ("rnn", "model.scorer=dot", "model.scorer"),
    ("rnn", "model.heads=4", "model.heads/temperature/hard/attention_dim"),
    ("rnn", "train.warmup_steps=100", "train.warmup_steps"),
    ("transformer", "train.cooldown=0.2", "train.cooldown"),
    ("rnn", "train.cooldown=0.2", "train.cooldown"),
    ("rnn", "model.hidden=512", "model.tie_embeddings"),
])
def test_an_option_joeynmt_lacks_is_reported(paths, arch, override, reported):
    assert reported not in option_names(joey_config(our_config(arch), paths)[1])
    assert reported in option_names(joey_config(our_config(arch, [override]), paths)[1])


def test_fixed_context_model_has_no_joeynmt_counterpart(paths):
    with pytest.raises(NMTError, match="no JoeyNMT counterpart"):
        joey_config(our_config("rnn", ["model=rnn_fixed"]), paths)


def test_our_searches_are_the_decode_presets_and_beam5_is_the_default():
    assert DECODES["greedy"]["beam"] == 1
    assert DECODES["beam5"] == {key: getattr(DecodeConfig(), key) for key in DECODES["beam5"]}


def test_config_survives_yaml_and_decode_settings(paths, tmp_path):
    joey, _ = joey_config(our_config("transformer"), paths)
    assert yaml.safe_load(yaml.safe_dump(joey)) == joey
    beam = joey_decode_config(joey, tmp_path / "latest.ckpt", 5)["testing"]
    greedy = joey_decode_config(joey, tmp_path / "latest.ckpt", 1)["testing"]
    assert (beam["beam_size"], beam["beam_alpha"], beam["load_model"]) == (5, 1.0, str(tmp_path / "latest.ckpt"))
    assert greedy["beam_size"] == 1 and "beam_alpha" not in greedy
    assert joey["testing"]["beam_size"] == 1  # the training config itself is untouched


def test_joeynmt_outputs_are_scored_by_our_pipeline(tmp_path):
    refs = ["A man is riding a bike.", "Two dogs play in the snow.", "A girl reads a book."]
    hyps = ["A man rides a bike.", "Two dogs play in the snow.", "A child reads a book."]
    out = tmp_path / "joeynmt-beam5.test"
    out.write_text("\n".join(hyps) + "\n", encoding="utf-8")
    scores = score_outputs(out, refs)
    assert scores == corpus_scores(hyps, refs).to_dict()
    assert 0 < scores["bleu"] < 100 and scores["signatures"]["bleu"].startswith("nrefs:1")
    out.write_text("\n".join(refs) + "\n", encoding="utf-8")
    assert score_outputs(out, refs)["bleu"] == pytest.approx(100.0)


def test_a_short_output_file_is_an_error(tmp_path):
    out = tmp_path / "joeynmt-greedy.dev"
    out.write_text("one line\n", encoding="utf-8")
    with pytest.raises(NMTError, match="1 hypotheses but 2 references"):
        score_outputs(out, ["one line", "two lines"])
    with pytest.raises(NMTError, match="does not exist"):
        score_outputs(tmp_path / "missing.test", ["x"])


def stamp(seconds: float) -> str:
    t = datetime.datetime(2026, 1, 1, 12, 0, 0) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%d %H:%M:%S,") + f"{t.microsecond // 1000:03d}"


def test_joeynmt_clock_counts_training_time_only():
    t0 = datetime.datetime(2026, 1, 1, 12, 0, 0).timestamp()
    clock = JoeyClock()
    clock.feed(f"{stamp(0)} - INFO - joeynmt.training - EPOCH 1")
    clock.feed(f"{stamp(30)} - INFO - joeynmt.training - Epoch   1, Step:       20, Batch Loss: 1.0, Tokens per Sec: 9")
    clock.feed(f"{stamp(40)} - INFO - joeynmt.prediction - Predicting 1014 example(s)... (Greedy decoding)")
    assert clock.train_seconds(t0 + 55) == pytest.approx(40)  # frozen while validating
    clock.feed(f"{stamp(60)} - INFO - joeynmt.training - Checkpoint saved in m/40.ckpt.")
    assert clock.train_seconds(t0 + 100) == pytest.approx(80)
    assert (clock.last_step, clock.validations, clock.valid_seconds) == (40, 1, pytest.approx(20))
    clock.feed("a line without a time stamp")
    assert clock.last_step == 40


def test_curves_minutes_and_time_to_bleu(tmp_path):
    (tmp_path / "validations.txt").write_text(
        "Steps: 20\tloss: 5.0\tbleu: 2.50000\tLR: 0.001\t*\nSteps: 40\tloss: 4.0\tbleu: 6.50000\tLR: 0.001\t*\n")
    points = joey_validations(tmp_path)
    assert points == [{"step": 20, "bleu": 2.5}, {"step": 40, "bleu": 6.5}]
    curve = steady_curve(points, train_seconds=240, steps=40)
    assert [p["minutes"] for p in curve] == [pytest.approx(2.0), pytest.approx(4.0)]
    assert minutes_to_reach(curve, 4.5) == pytest.approx(3.0)
    assert minutes_to_reach(curve, 7.0) is None


def test_the_end_of_budget_score_ends_a_curve_once():
    validations = [{"step": 20, "minutes": 2.0, "bleu": 2.5}, {"step": 40, "minutes": 4.0, "bleu": 6.5}]
    final = {"step": 40, "minutes": 4.0, "bleu": 6.4, "final": True}  # the trainer also validated at step 40
    assert end_curve(validations, final) == [validations[0], final]
    later = dict(final, step=45, minutes=4.5)  # JoeyNMT: no validation at its last step
    assert end_curve(validations, later) == validations + [later]


def test_spm_pieces_are_in_id_order_with_our_specials_first():
    tok = Tokenizer.train(["ein Hund läuft", "zwei Katzen"] * 20, ["a dog runs", "two cats"] * 20,
                          model_type="unigram", vocab_size=40, character_coverage=1.0, joint=True)
    pieces = spm_pieces(tok.src_model)
    assert pieces[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and len(pieces) == tok.src_vocab_size


def test_export_cuts_valid_and_test_to_the_first_sentences_and_keeps_train(tiny_corpus_files, tmp_path):
    data = DataConfig(name="tiny", source="files", src_lang="de", tgt_lang="en", files=tiny_corpus_files,
                      root=str(tmp_path / "cache"), tokenizer=TokenizerConfig(vocab_size=250))
    corpus = prepare_corpus(data, log=lambda _: None)
    paths = export_corpus(corpus, tmp_path / "joey-data", tmp_path / "joeynmt", sentences=5)
    lines = {f.name: f.read_text(encoding="utf-8").splitlines() for f in paths.data_dir.glob("*.[de][en]")}
    assert lines["valid.de"] == list(corpus.split("valid")["src"][:5]) and len(lines["valid.en"]) == 5
    assert len(lines[f"{paths.test_set}.de"]) == len(lines[f"{paths.test_set}.en"]) == 5
    assert len(lines["train.de"]) == len(corpus.split("train")) > 5


def test_sigint_stops_the_peer_even_when_this_process_ignores_it(tmp_path):
    """Started in the background of a script, the driver inherits SIGINT ignored; the peer must not."""
    child = ("import time\nprint('ready', flush=True)\ntry:\n    time.sleep(30)\n"
             "except KeyboardInterrupt:\n    print('interrupted', flush=True)\n")
    log = tmp_path / "out.log"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with log.open("w") as out:
            proc = start_interruptible([sys.executable, "-c", child], out, {})
        deadline = time.monotonic() + 20
        while "ready" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        signal.signal(signal.SIGINT, previous)
    assert log.read_text() == "ready\ninterrupted\n"


def test_the_launcher_lets_joeynmt_build_its_plateau_scheduler_on_this_torch():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    original = lr_scheduler.ReduceLROnPlateau.__init__
    try:
        joeynmt_launch.patch_plateau()
        scheduler = lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=0, verbose=False)
    finally:
        lr_scheduler.ReduceLROnPlateau.__init__ = original
    scheduler.step(1.0)
    scheduler.step(0.5)
    assert optimizer.param_groups[0]["lr"] == 0.5


def test_a_reference_report_must_hold_the_architecture_and_match_the_scoring(tmp_path):
    """A JoeyNMT-only run compares against an earlier report's nmt side: only one scored alike."""
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"sentences": 500, "checkpoint": "last", "results": [{"arch": "rnn"}]}))
    assert set(load_reference(path, ["rnn"], 500, "last")) == {"rnn"}
    with pytest.raises(NMTError, match="has no transformer results"):
        load_reference(path, ["transformer"], 500, "last")
    with pytest.raises(NMTError, match="sentences=500, this run with sentences=None"):
        load_reference(path, ["rnn"], None, "last")
    with pytest.raises(NMTError, match="checkpoint=last, this run with checkpoint=best"):
        load_reference(path, ["rnn"], 500, "best")
    with pytest.raises(NMTError, match="cannot read the reference report"):
        load_reference(tmp_path / "missing.json", ["rnn"], 500, "last")


def _run_result(arch: str, difference: float, p_value: float, curve: list[float]) -> dict:
    """One architecture's part of a run's results, as run_arch writes it, with made-up numbers."""
    scores = {"bleu": 30.0, "signatures": {"bleu": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"}}
    by_split = {"greedy": {"valid": scores, "test": scores}, "beam5": {"valid": scores, "test": scores}}
    system = {"steps": 100, "train_minutes": 20.0, "target_tokens_per_s": 1000.0, "target_tokens_estimated": False,
              "parameters": 1000}
    paired = {name: {"difference": difference + (0.5 if name == "beam5" else 0.0),
                     "difference_ci": [difference - 1, difference + 1], "p_value": p_value} for name in DECODES}
    return {"arch": arch, "our_overrides": ["model=transformer"], "systems": {"nmt": system, "joeynmt": system},
            "scores": {"nmt": by_split, "joeynmt": by_split},
            "curves": {"nmt": [{"step": i, "minutes": i, "bleu": b} for i, b in enumerate(curve)],
                       "joeynmt": [{"step": 1, "minutes": 1.0, "bleu": 20.0}]},
            "minutes_to_other_final_valid_bleu": {"nmt_to_joeynmt_final": 5.0, "joeynmt_to_nmt_final": None},
            "unmatched": ["train.schedule: inverse_sqrt vs warmupinversesquareroot"], "paired": paired}


def test_runs_pool_into_a_mean_difference_with_a_t_interval_over_runs():
    """Three runs' paired differences 1, 2, 4: mean 7/3, SD sqrt(7/3), interval mean +- t(2) SD / sqrt(3)."""
    runs = [{"seed": k, "results": [_run_result("transformer", d, p, [30.0, 33.0, end])]}
            for k, (d, p, end) in enumerate([(1.0, 0.2, 32.0), (2.0, 0.04, 33.0), (4.0, 1 / 1001, 32.5)], start=1)]
    pooled = pool_runs(runs)["transformer"]
    greedy = pooled["greedy"]
    sd = math.sqrt(7 / 3)
    assert greedy["differences"] == [1.0, 2.0, 4.0] and greedy["p_values"] == [0.2, 0.04, 1 / 1001]
    assert greedy["mean"] == pytest.approx(7 / 3) and greedy["sd"] == pytest.approx(sd)
    assert greedy["ci"] == pytest.approx([7 / 3 - 4.303 * sd / math.sqrt(3), 7 / 3 + 4.303 * sd / math.sqrt(3)])
    assert pooled["beam5"]["mean"] == pytest.approx(7 / 3 + 0.5)
    assert pooled["end_minus_best_valid"]["per_run"] == [-1.0, 0.0, -0.5]
    report = {"command": "scripts/peer_bench.py --runs 3", "hardware_line": "a machine", "hardware": {"torch": "x"},
              "peer_versions": {"joeynmt": "2.3.0", "torch": "x"}, "minutes": 20.0, "checkpoint": "last",
              "sentences": 500, "reference": None, "plot": "valid_bleu.png", "runs": runs, "pooled": pool_runs(runs),
              "beam5": {"beam": 5, "alpha": 1.4, "length_norm": "gnmt"}}
    md = render_markdown(report)
    assert "Beam 5: ours alpha 1.4, length_norm gnmt (configs/decode/beam5.yaml)" in md
    assert "## Pooled over 3 runs (seeds 1-3)" in md and "## Run 3 (seed 3)" in md
    assert f"| transformer | greedy | 1.00 (0.2000), 2.00 (0.0400 *), 4.00 (< 0.001 *) | 2.33 | {sd:.2f} |" in md
    one = dict(report, runs=runs[:1], pooled=pool_runs(runs[:1]))
    assert "| - | -0.50 |" not in render_markdown(one) and "| 1.00 | - | - | -1.00 |" in render_markdown(one)


def test_a_benchmark_directory_is_continued_only_with_the_same_settings(tmp_path):
    settings = {"minutes": 20.0, "archs": ["rnn"], "eval_every": 500, "checkpoint": "last", "sentences": 500,
                "reference": None, "runs": 3}
    out = open_bench_dir(tmp_path / "peer", settings)
    assert json.loads((out / "settings.json").read_text()) == settings
    assert open_bench_dir(out, dict(settings, runs=5)) == out  # more runs continue the same benchmark
    with pytest.raises(NMTError, match="other settings \\(minutes=20.0 there, 10.0 here\\)"):
        open_bench_dir(out, dict(settings, minutes=10.0))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("x")
    with pytest.raises(NMTError, match="already exists and is not empty"):
        open_bench_dir(tmp_path / "other", settings)


def test_several_runs_against_a_reference_are_refused_before_anything_is_installed(tmp_path):
    with pytest.raises(NMTError, match="use --runs 1"):
        run_peer_bench(tmp_path / "out", 20.0, ["rnn"], tmp_path / "venv", reference=tmp_path / "r.json", runs=3)
    assert not (tmp_path / "venv").exists()


def test_a_reference_report_of_several_runs_gives_its_first_run(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"sentences": 500, "checkpoint": "last",
                                "runs": [{"seed": 1, "results": [{"arch": "rnn", "run": 1}]},
                                         {"seed": 2, "results": [{"arch": "rnn", "run": 2}]}]}))
    assert load_reference(path, ["rnn"], 500, "last")["rnn"]["run"] == 1


def test_our_end_of_budget_checkpoint_is_the_moving_average_only_where_it_validated_higher(tmp_path):
    metrics = {"best_bleu": 31.5, "history": [{"step": 100, "bleu": 31.5}, {"step": 200, "bleu": 31.0}]}
    for name in ("last.pt", "best.pt", "ema.pt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert our_checkpoint(tmp_path, "last") == tmp_path / "last.pt"  # no moving average kept
    assert our_checkpoint(tmp_path, "best") == tmp_path / "best.pt"
    (tmp_path / "metrics.json").write_text(json.dumps(dict(metrics, ema={"step": 200, "bleu": 31.2})))
    assert our_checkpoint(tmp_path, "last") == tmp_path / "ema.pt"  # above the raw weights at the end
    assert our_checkpoint(tmp_path, "best") == tmp_path / "best.pt"  # not above the best raw validation
    (tmp_path / "metrics.json").write_text(json.dumps(dict(metrics, ema={"step": 200, "bleu": 32.0})))
    assert our_checkpoint(tmp_path, "best") == tmp_path / "ema.pt"
    (tmp_path / "metrics.json").write_text(json.dumps(dict(metrics, ema={"step": 200, "bleu": 30.5})))
    assert our_checkpoint(tmp_path, "last") == tmp_path / "last.pt"  # the raw weights validated higher
