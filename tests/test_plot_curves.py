"""scripts/plot_curves.py: valid BLEU against training minutes, with reference runs drawn dashed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "plot_curves.py"


def _run_dir(tmp_path: Path, name: str, bleus: list[float]) -> Path:
    run = tmp_path / name
    run.mkdir()
    history = [{"step": 200 * (i + 1), "bleu": b} for i, b in enumerate(bleus)]
    metrics = {"arch": "transformer", "num_parameters": 3_660_800, "step": 200 * len(bleus),
               "train_seconds": 60.0 * len(bleus), "history": history}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


@pytest.mark.slow
def test_plot_with_reference_run(tmp_path):
    new, old = _run_dir(tmp_path, "new", [5.0, 20.0, 30.0]), _run_dir(tmp_path, "old", [4.0, 15.0, 25.0])
    out = tmp_path / "curves.png"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(new), "--labels", "new default",
                           "--reference", str(old), "previous default", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_labels_must_match_runs(tmp_path):
    run = _run_dir(tmp_path, "run", [5.0])
    proc = subprocess.run([sys.executable, str(SCRIPT), str(run), "--labels", "a", "b", "--out",
                           str(tmp_path / "x.png")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--labels needs one label per run" in proc.stderr
