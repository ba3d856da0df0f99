"""`nmt-bench` (nmt/bench/benchmark.py) on tiny settings: report fields and values, Transformer FLOP count."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nmt.bench import benchmark
from nmt.cli import bench as bench_cli
from nmt.config import PAD_ID, DataConfig, TokenizerConfig
from nmt.data.batching import collate
from nmt.errors import NMTError
from nmt.models import Transformer


@pytest.mark.slow
def test_benchmark_report_has_every_field(tiny_corpus_files, tmp_path, one_thread, capsys):
    data = DataConfig(name="bench_tiny", source="files", files=tiny_corpus_files, root=str(tmp_path / "data"),
                      tokenizer=TokenizerConfig(vocab_size=250))
    out = tmp_path / "bench.json"
    args = bench_cli.parse_args([
        "--small", "--device", "cpu", "--threads", "1", "--steps", "2", "--warmup", "1", "--batch-tokens", "600",
        "--decode-sentences", "3", "--compare-threads", "1", "2", "--rounds", "1", "--out", str(out),
    ])  # fmt: skip
    run = benchmark.run_benchmark(args, data)
    report = run.report
    saved = json.loads(out.read_text())
    assert run.path == out and saved == json.loads(json.dumps(asdict(report)))
    assert benchmark.BenchReport.read(out) == report  # the JSON reads back as the report
    assert run.vocab == (report.config.vocab.src, report.config.vocab.tgt) == (saved["config"]["vocab"]["src"],
                                                                                saved["config"]["vocab"]["tgt"])
    assert len(run.batches) == 1 + 2  # warm-up + timed

    assert saved["device"] == "cpu" and saved["threads"] == 1 and saved["torch"] == torch.__version__
    hw = saved["hardware"]
    assert hw["cpu"] and hw["cpu_count"] >= 1 and hw["gpu"] is None
    cfg = saved["config"]
    assert cfg["models"] == ["rnn_fixed_small", "rnn_attention_small", "transformer_small"]
    assert cfg["steps"] == 2 and cfg["decode_sentences"] == 3 and cfg["batch_tokens"] == 600
    assert 0 < cfg["real_tokens_per_batch"] <= 600

    assert [r["model"] for r in saved["results"]] == cfg["models"]
    for row in saved["results"]:
        for key in ("tokens_per_s", "tokens_per_cpu_s", "ms_per_step", "peak_memory_mib", "greedy_sent_per_s",
                    "beam5_sent_per_s", "beam5_single_sent_per_s", "beam5_batched_speedup", "parameters"):
            assert row[key] > 0 and math.isfinite(row[key]), (row["model"], key, row[key])
        assert 0.0 <= row["padding"] < 1.0
        assert row["peak_memory_mib"] >= row["memory_before_mib"] > 0  # a peak never falls below a reading
        assert row["mfu"] is None  # CPU: no MFU
        assert row["beam5_batched_speedup"] == pytest.approx(row["beam5_sent_per_s"] / row["beam5_single_sent_per_s"])

    assert set(saved["comparisons"]) == {"threads"}
    cmp = saved["comparisons"]["threads"]
    assert cmp["model"] == "transformer_small" and set(cmp["tokens_per_s"]) == {"1", "2"}
    assert all(rate > 0 for rate in cmp["tokens_per_s"].values()) and cmp["ratio_vs_first"]["1"] == 1.0

    table = benchmark.markdown(report)
    assert table.count("\n| ") >= 3 + 2  # header + a row per model, a row per thread count
    for name in cfg["models"]:
        assert f"| {name} |" in table


def test_unknown_model_preset_is_a_clear_error(tmp_path):
    args = bench_cli.parse_args(["--models", "rnn_fancy", "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="unknown model preset 'rnn_fancy'"):
        benchmark.run_benchmark(args, DataConfig(root=str(tmp_path / "never")))
    assert not (tmp_path / "x.json").exists()


def _math_sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
    """Attention as plain matmuls, so FlopCounterMode counts them (the fused CPU kernel is not counted)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    if is_causal:
        scores = scores.masked_fill(torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1) @ v


def test_transformer_flops_match_a_flop_counter(monkeypatch):
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", _math_sdpa)
    torch.manual_seed(0)
    model = Transformer(50, 50, dim=32, ff_dim=64, heads=2, enc_layers=2, dec_layers=1, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    # Equal lengths: no padding, so the counter's padded work equals the model FLOPs of real tokens.
    src = [torch.randint(4, 50, (7,), generator=g).tolist() for _ in range(3)]
    tgt = [torch.randint(4, 50, (5,), generator=g).tolist() for _ in range(3)]
    batch = collate(src, tgt, [0, 1, 2])
    with FlopCounterMode(display=False) as counter:
        model(batch.src, batch.src_lens, batch.tgt_in).sum().backward()
    assert model.train_flops(batch.src_lens, (batch.tgt_out != PAD_ID).sum(1)) == counter.get_total_flops()
    assert benchmark.train_flops(model, [batch, batch]) == 2 * counter.get_total_flops()


def test_bf16_peak_lookup():
    assert benchmark.bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert benchmark.bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert benchmark.bf16_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert benchmark.bf16_peak_tflops("Some Future GPU") is None
    assert benchmark.bf16_peak_tflops(None) is None


@pytest.mark.slow
def test_benchmark_times_decoding_of_trained_checkpoints(tiny_run, tmp_path, one_thread):
    data = DataConfig(name="bench_tiny", source="files", files=tiny_run.files, root=str(tiny_run.data_root),
                      tokenizer=TokenizerConfig(vocab_size=250))
    ckpt = tiny_run.run_dir / "best.pt"
    args = bench_cli.parse_args([
        "--models", "rnn_fixed_small", "--device", "cpu", "--threads", "1", "--steps", "1", "--warmup", "0",
        "--batch-tokens", "600", "--decode-sentences", "3", "--checkpoints", str(ckpt),
        "--out", str(tmp_path / "b.json"),
    ])  # fmt: skip
    report = benchmark.run_benchmark(args, data).report
    [row] = report.trained_decoding
    assert row.checkpoint == str(ckpt) and row.arch == "rnn_attention"
    for key in ("greedy_sent_per_s", "beam5_sent_per_s", "beam5_single_sent_per_s", "beam5_batched_speedup"):
        assert getattr(row, key) > 0 and math.isfinite(getattr(row, key))
    assert f"| {ckpt} (rnn_attention, step" in benchmark.markdown(report)


def test_engine_batches_are_sorted_by_length_and_cut_by_size_tokens_or_limit():
    from nmt.inference.export import plan_batches

    lengths = [5, 2, 9, 2, 7, 3]
    limits = [2 * n for n in lengths]
    assert plan_batches(lengths, limits, "examples", 4) == [[1, 3, 5, 0], [4, 2]]  # shortest first, stable
    # tokens: sentences x the longest in the batch at most 12; a sentence over the budget goes alone
    assert plan_batches(lengths, limits, "tokens", 12) == [[1, 3, 5], [0], [4], [2]]
    assert plan_batches([20, 1], [0, 0], "tokens", 12) == [[1], [0]]
    # one_limit: beam search batches also end where the length limit changes
    assert plan_batches(lengths, [0, 1, 0, 1, 0, 0], "examples", 3, one_limit=True) == [[1, 3], [5, 0, 4], [2]]
    with pytest.raises(NMTError, match="batch_type"):
        plan_batches(lengths, limits, "sentences", 4)
