"""The local backend's helpers: metrics path re-rooting."""

from __future__ import annotations

import pytest

from katib.controller.local import path_rewriter

REWRITE = path_rewriter({"/katib/mnist.log": "/r/t1/katib/mnist.log", "/katib": "/r/t1/katib"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/katib/mnist.log", "/r/t1/katib/mnist.log"),
        ("--log=/katib/mnist.log", "--log=/r/t1/katib/mnist.log"),
        ("python t.py > /katib/mnist.log 2>&1", "python t.py > /r/t1/katib/mnist.log 2>&1"),
        ("mkdir -p /katib && x", "mkdir -p /r/t1/katib && x"),
        ("--dir=/katib/", "--dir=/r/t1/katib/"),
        ("'/katib/mnist.log'", "'/r/t1/katib/mnist.log'"),
        ("a:/katib/mnist.log,b", "a:/r/t1/katib/mnist.log,b"),
        # other paths that merely contain the directory or the file name stay as they are
        ("/tmp/x/proj/katib/fw.py", "/tmp/x/proj/katib/fw.py"),
        ("/katib/fw.py", "/katib/fw.py"),
        ("/katib/mnist.log.bak", "/katib/mnist.log.bak"),
        ("/katibx", "/katibx"),
        ("/data/katib/mnist.log", "/data/katib/mnist.log"),
    ],
)
def test_path_rewriter_rewrites_whole_tokens_only(text: str, expected: str) -> None:
    assert REWRITE(text) == expected


def test_tmp_metrics_file_does_not_rewrite_other_tmp_paths() -> None:
    rewrite = path_rewriter({"/tmp/metrics.log": "/r/tmp/metrics.log", "/tmp": "/r/tmp"})
    assert rewrite("/tmp/x/train.py") == "/tmp/x/train.py"
    assert rewrite("/tmp/metrics.log") == "/r/tmp/metrics.log"
