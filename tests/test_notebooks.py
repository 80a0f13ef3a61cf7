"""The notebooks run headless (nbclient, the venv's ipykernel) on tiny inputs, and print the right numbers.

``correlation_graph.ipynb`` runs on TINY's SynthFace with a checkpoint trained for two steps (every section); then,
in the same kernel, its checkpoint section runs again with ``CHECKPOINT = None`` and must say it is skipped. The
parameters come from FACEINSIGHT_NB_* environment variables, which the kernel inherits.
"""

import copy
import json
import sys
import time
from pathlib import Path

import pytest
import torch
from test_training import ROOT, fit

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("networkx")

from faceinsight.data.synthface import SynthFace  # noqa: E402
from faceinsight.tools.graph import cosine_similarity  # noqa: E402

NOTEBOOK = ROOT / "notebooks" / "correlation_graph.ipynb"
CELL_TIMEOUT = 60  # seconds per cell; the slowest takes a few
PARAMETERS = ("KIND", "ROOT", "OPTIONS", "SAMPLES", "TAU", "OMEGA", "CHECKPOINT", "OUT")
TINY_OPTIONS = {"num_train": 48, "num_val": 16, "num_test": 16, "size": 64}  # test_training.TINY's SynthFace
FIGURES = {"conditional_probability", "threshold_and_reweight", "graph", "degrees", "tau_omega_sweep"}


def printed(cells: list) -> str:
    return "".join(out.get("text", "") for cell in cells if cell.cell_type == "code" for out in cell.get("outputs", []))


def run_notebook(path: Path, monkeypatch: pytest.MonkeyPatch, **parameters: object) -> dict:
    """Execute the notebook with FACEINSIGHT_NB_<NAME> = parameters, then its checkpoint section (from the
    "## 4." heading on) again with ``CHECKPOINT = None``. Both runs' summary.json and printed text, and the seconds
    the first took."""
    for name in PARAMETERS:
        monkeypatch.delenv(f"FACEINSIGHT_NB_{name}", raising=False)
    for name, value in parameters.items():
        monkeypatch.setenv(f"FACEINSIGHT_NB_{name.upper()}", value if isinstance(value, str) else json.dumps(value))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")  # the venv's kernel spec before any user-wide one
    notebook = nbformat.read(path, as_version=4)
    summary_file = Path(str(parameters["out"])) / "summary.json"
    client = nbclient.NotebookClient(
        notebook, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    with client.setup_kernel():
        start = time.perf_counter()
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        run = {"seconds": time.perf_counter() - start, "summary": json.loads(summary_file.read_text()),
               "text": printed(notebook.cells)}  # fmt: skip
        section = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("## 4."))
        again = [nbformat.v4.new_code_cell("CHECKPOINT = None")]
        again += [copy.deepcopy(c) for c in notebook.cells[section:] if c.cell_type == "code"]
        for cell in again:  # appended: nbclient stores each executed cell back at its index
            cell.outputs = []
            notebook.cells.append(cell)
            client.execute_cell(cell, len(notebook.cells) - 1)
        run |= {"summary_without": json.loads(summary_file.read_text()), "text_without": printed(again)}
    return run


def brute_force_edges(rows: list[list[float]], tau: float) -> int:
    """Directed edges of eq. 6 counted pair by pair: P(j | i) = #(i and j) / #i >= tau, i != j (all labelled)."""
    k, edges = len(rows[0]), 0
    for i in range(k):
        n_i = sum(r[i] == 1 for r in rows)
        for j in range(k):
            if i != j and n_i > 0 and sum(r[i] == 1 and r[j] == 1 for r in rows) / n_i >= tau:
                edges += 1
    return edges


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """A checkpoint of TINY's SynthFace after two training steps (no validation, no test), and its model."""
    tmp = tmp_path_factory.mktemp("tiny")
    steps = ("--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "0", "--test_after_fit", "false")
    cli = fit(tmp, *steps)
    return Path(cli.trainer.checkpoint_callback.last_model_path), cli.model.model


def test_kernel_is_this_venv(monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")
    argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
    assert argv0 in ("python", "python3", sys.executable)  # jupyter_client runs a bare "python" as sys.executable


def test_correlation_notebook_on_tiny_synthface(tmp_path, monkeypatch, tiny_checkpoint):
    checkpoint, model = tiny_checkpoint
    run = run_notebook(
        NOTEBOOK, monkeypatch, kind="synthface", options=TINY_OPTIONS, tau="0.4", omega="0.8",
        checkpoint=str(checkpoint), out=str(tmp_path / "figures"),
    )  # fmt: skip
    print(f"correlation_graph.ipynb on TINY's SynthFace with a checkpoint: {run['seconds']:.1f} s")
    summary, text = run["summary"], run["text"]
    assert set(summary["figures"]) == FIGURES | {"embedding_similarity"}
    for file in summary["figures"].values():
        data = Path(file).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, file

    # Sections 1-3: the graph of the 48 training faces, against counts made face by face.
    rows = SynthFace(48, seed=0).label_matrix()[0].tolist()  # TINY's training split
    assert summary["dataset"]["faces"] == 48 and summary["names"] == model.characteristics
    edges = brute_force_edges(rows, 0.4)
    assert summary["edges"] == edges and f"tau = 0.4: {edges} directed edges" in text
    assert sum(summary["out_degree"].values()) == edges
    for tau, count in zip(summary["sweep"]["tau"], summary["sweep"]["edges"], strict=True):
        assert count == brute_force_edges(rows, tau), tau

    # Section 4: the model fitted on the same faces holds the same counts; the embeddings are the model's own.
    ckpt = summary["checkpoint"]
    assert ckpt["same_counts_as_dataset"] is True and ckpt["edges"] == edges
    assert (ckpt["tau"], ckpt["omega"]) == (0.4, 0.8)
    with torch.no_grad():
        t0 = model.prompt_embeddings
        t_hat = model.gcn(t0, model.gcn.adjacency(model.stats))
    c = model.stats.graph(0.4, 0.8)["C"].bool()
    edge = c & ~torch.eye(len(c), dtype=torch.bool)
    assert ckpt["mean_before"]["edges"] == pytest.approx(float(cosine_similarity(t0)[edge].mean()), abs=1e-6)
    assert ckpt["mean_after"]["edges"] == pytest.approx(float(cosine_similarity(t_hat)[edge].mean()), abs=1e-6)
    assert "No checkpoint given" not in text

    # Without a checkpoint, section 4 says so and the summary has no checkpoint part.
    assert "No checkpoint given" in run["text_without"] and run["summary_without"]["checkpoint"] is None
    assert run["summary_without"]["edges"] == edges
