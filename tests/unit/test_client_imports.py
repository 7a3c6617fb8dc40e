"""A deployed SuperNode starts a fresh ClientApp process for every message: loading the app must not pay for
torch, Opacus or scikit-learn, which only training and evaluation need (benchmarks/deployed_rounds.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_loading_the_client_app_imports_no_training_or_evaluation_library() -> None:
    probe = "import sys, client.app; print(sorted(m for m in ('torch', 'opacus', 'sklearn', 'scipy') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_a_secure_aggregation_stage_and_a_delivery_need_none_of_them_either() -> None:
    probe = (
        "import sys, client.app, client.secure_aggregation, client.delivery, shared.ledger, shared.plan;"
        "print(sorted(m for m in ('torch', 'opacus', 'sklearn') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
