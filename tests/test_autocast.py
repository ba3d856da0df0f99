"""Under bf16 autocast the RNN models' recurrences run in fp32 (parameters, inputs and outputs), while the layers
around them run in bf16; their outputs match an fp32 run closely."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from nmt.models.rnn import AttentionSeq2Seq, FixedContextSeq2Seq

RECURRENT = (nn.RNNBase, nn.RNNCellBase)


def tensors(value):
    """Every tensor in a module's input or output (tuples, LSTM (h, c) pairs, packed sequences)."""
    if isinstance(value, PackedSequence):
        return [value.data]
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors(v)]
    return []


def run_recording(model: nn.Module, autocast: bool) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    """Logits of one teacher-forced forward and, per recurrent module name, its inputs and outputs in call order."""
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = [module.register_forward_hook(lambda m, args, out, name=name: seen.setdefault(name, []).extend(
                 tensors(args) + tensors(out)))
             for name, module in model.named_modules() if isinstance(module, RECURRENT)]
    torch.manual_seed(0)
    src, tgt = torch.randint(4, 30, (3, 9)), torch.randint(4, 30, (3, 7))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(src, torch.tensor([9, 6, 2]), tgt)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, seen


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
@pytest.mark.parametrize("cls", [AttentionSeq2Seq, FixedContextSeq2Seq])
def test_recurrences_run_in_fp32_under_bf16_autocast(cls, rnn_type):
    torch.manual_seed(1)
    model = cls(30, 30, 16, 24, enc_layers=2, dec_layers=2, rnn_type=rnn_type).eval()
    logits, seen = run_recording(model, autocast=True)
    assert logits.dtype == torch.bfloat16  # autocast is on: the projection around the recurrences is bf16 ...
    assert {"encoder.rnn"} < set(seen)
    for name, values in seen.items():  # ... the recurrences themselves are not
        assert {t.dtype for t in values if t.is_floating_point()} == {torch.float32}, name
    recurrent_params = [p for m in model.modules() if isinstance(m, RECURRENT) for p in m.parameters()]
    assert recurrent_params and all(p.dtype == torch.float32 for p in recurrent_params)

    reference, seen_fp32 = run_recording(model, autocast=False)
    # The encoder reads fp32 embeddings either way: exactly the same states.
    for a, b in zip(seen["encoder.rnn"], seen_fp32["encoder.rnn"], strict=True):
        torch.testing.assert_close(a, b)
    # The decoder's recurrence gets bf16-rounded inputs from the bridge and attention: close, not equal.
    for name in set(seen) - {"encoder.rnn"}:
        for a, b in zip(seen[name], seen_fp32[name], strict=True):
            torch.testing.assert_close(a, b, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(logits.float(), reference, atol=5e-2, rtol=5e-2)
