"""The trial programs end to end on digits: Katib's flags in, Katib StdOut metrics out."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from katib.nas.darts import search
from katib.nas.enas import trial

ARC = "[[0], [2, 1], [1, 0, 1]]"
NN_CONFIG = (
    "{'num_layers': 3, 'input_sizes': [8, 8, 1], 'output_sizes': [10], 'embedding': {"
    "'0': {'opt_id': 0, 'opt_type': 'convolution', 'opt_params': {'filter_size': '3', "
    "'num_filter': '8', 'stride': '1'}}, "
    "'1': {'opt_id': 1, 'opt_type': 'separable_convolution', 'opt_params': {'filter_size': '3', "
    "'num_filter': '16', 'stride': '1'}}, "
    "'2': {'opt_id': 2, 'opt_type': 'reduction', 'opt_params': {'reduction_type': "
    "'avg_pooling', 'pool_size': 2}}}}"
)


def test_enas_trial_trains_the_child_and_reports_each_epoch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Katib's YAML wraps the values in double quotes that reach the program verbatim.
    code = trial.main([f'--architecture="{ARC}"', f'--nn_config="{NN_CONFIG}"', "--num_epochs=2"])
    assert code == 0
    values = [
        float(v)
        for v in re.findall(r"^Validation-Accuracy=([0-9.]+)$", capsys.readouterr().out, re.M)
    ]
    assert len(values) == 2 and values[-1] > 0.5  # chance is 0.1


def test_enas_trial_rejects_an_op_missing_from_nn_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert trial.main(["--architecture=[[7]]", f"--nn_config={NN_CONFIG}"]) == 2
    assert "op id 7" in capsys.readouterr().err


def test_darts_trial_prints_best_genotype_last(capsys: pytest.CaptureFixture[str]) -> None:
    settings = (
        "{'num_epochs': '1', 'init_channels': 4, 'num_nodes': 1, 'stem_multiplier': 1, "
        "'batch_size': 64, 'w_lr': 0.05, 'alpha_lr': 0.003, 'print_step': 50}"
    )
    code = search.main(
        [
            f'--algorithm-settings="{settings}"',
            "--search-space=\"['max_pooling_3x3', 'skip_connection']\"",
            '--num-layers="1"',
        ]
    )
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"Best-Genotype=Genotype\(normal=\[\[\('\w+',0\),\('\w+',1\)\]\].*", last)


def test_darts_trial_rejects_unknown_primitives(capsys: pytest.CaptureFixture[str]) -> None:
    assert search.main(["--search-space=['warp_3x3']"]) == 2
    assert "unknown DARTS primitive" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["enas", "darts"])
def test_examples_run_end_to_end(name: str, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    katib = shutil.which("katib", path=str(Path(sys.executable).parent))
    assert katib is not None
    subprocess.run(
        [katib, "run", "--quiet", "--results", str(tmp_path), str(root / f"examples/{name}.yaml")],
        check=True,
        timeout=1200,
    )
    out = subprocess.run(
        [katib, "trials", "--best", str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    best = max(float(v) for v in re.findall(r"0\.\d+", out))
    assert best > 0.5, out
