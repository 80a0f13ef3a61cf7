"""The correlation graph (paper eq. 5-8) for inspection: from a checkpoint, or straight from a dataset's labels.

A *graph* is the dict of :meth:`faceinsight.model.correlation.CooccurrenceStats.graph`: names, counts ``m`` and ``n``,
``P`` (eq. 5), ``C`` (eq. 6) and ``C_hat`` (eq. 7) at a ``tau`` and ``omega``. :func:`load_graph` reads it from a
checkpoint, :func:`dataset_graph` computes it from a dataset's training split without any training. The rest
serves ``notebooks/correlation_graph.ipynb``: edges and degrees, communities (networkx), a sweep over tau and
omega, the prompt embeddings before and after the GCN (eq. 8), and the plots. Row i of ``C`` lists the
characteristics j that i gathers from in the GCN (``C_ij = 1`` when ``P(j | i) >= tau``).

matplotlib and networkx are imported inside the functions that need them (both are in the ``dev`` extra), so
``faceinsight graph export`` needs neither.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from faceinsight.model.correlation import CooccurrenceStats, CorrelationConfig, CorrelationGCN, binarize, reweight

if TYPE_CHECKING:
    import networkx as nx
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Graph = dict[str, Any]
SINGLETON_COLOR = "#9e9e9e"  # characteristics in no cluster (no edge, or a cluster of one)


# ----------------------------------------------------------------------------------------------- graphs
def _read_checkpoint(checkpoint: str | Path) -> tuple[dict[str, Any], CooccurrenceStats, CorrelationConfig]:
    """The checkpoint, its co-occurrence statistics and its correlation config (the model's tau and omega)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    names = ckpt["hyper_parameters"]["characteristics"]
    config = ckpt["hyper_parameters"].get("correlation") or CorrelationConfig()
    if isinstance(config, dict):  # saved through the CLI as plain values
        config = CorrelationConfig(**config)
    stats = CooccurrenceStats(names)
    stats.load_state_dict({k.removeprefix("model.stats."): v for k, v in ckpt["state_dict"].items()
                           if k.startswith("model.stats.")})  # fmt: skip
    return ckpt, stats, config


def load_graph(checkpoint: str | Path, tau: float | None = None, omega: float | None = None) -> Graph:
    """Names, counts, ``P`` (eq. 5), ``C`` (eq. 6) and ``C_hat`` (eq. 7) saved in a checkpoint.

    ``tau`` and ``omega`` default to the model's own; pass others to see how the graph would change.
    """
    _, stats, config = _read_checkpoint(checkpoint)
    return stats.graph(config.tau if tau is None else tau, config.omega if omega is None else omega)


def graph_from_labels(labels: Tensor, mask: Tensor, names: Sequence[str], tau: float, omega: float) -> Graph:
    """The graph of a label matrix ``[N, K]`` with its mask, as the model computes it when fitting starts."""
    stats = CooccurrenceStats(list(names))
    stats.update(labels, mask)
    return stats.graph(tau, omega)


def train_labels(
    kind: str = "synthface",
    root: str | Path | None = None,
    options: dict[str, Any] | None = None,
    max_samples: int | None = None,
) -> tuple[Tensor, Tensor, list[str]]:
    """Labels ``[N, K]``, mask and names of a dataset's TRAINING split, the rows ``fit`` counts (eq. 5).

    ``kind`` is a dataset kind (``synthface``, ``celebamaskhq``, ...), ``root`` its folder in its native layout
    (unused for SynthFace), ``options`` the loader's options (as ``DatasetSpec.options``: SynthFace's ``num_train``,
    CelebAMask-HQ's ``split_by``, ...). ``max_samples`` keeps the first N training rows. Only the label files are
    read: no image is decoded, and a labels-only folder (e.g. CelebA's text files alone) works.
    """
    from faceinsight.data.module import DatasetSpec, open_split

    spec = DatasetSpec(kind=kind, root=None if root is None else str(root), options=dict(options or {}))
    dataset = open_split(spec, "train")
    if len(dataset) == 0:
        raise ValueError(f"{kind} at {root}: the training split is empty; check the folder and the split options")
    labels, mask = dataset.label_matrix()
    if max_samples is not None:
        labels, mask = labels[:max_samples], mask[:max_samples]
    # One dataset: the model's characteristics are its schema's, in order (FaceDataModule.characteristics).
    return labels.float(), mask.bool(), list(spec.schema.characteristics)


def dataset_graph(
    kind: str = "synthface",
    root: str | Path | None = None,
    options: dict[str, Any] | None = None,
    tau: float = CorrelationConfig.tau,
    omega: float = CorrelationConfig.omega,
    max_samples: int | None = None,
) -> Graph:
    """The graph (same dict as :func:`load_graph`) of a dataset's training split, without training a model.

    A model fitted on this dataset alone starts from exactly these statistics (see :func:`train_labels`), unless
    its parsing maps come from a parser with ``no_face: drop``, which also drops the faces the parser missed.
    """
    labels, mask, names = train_labels(kind, root, options, max_samples)
    return graph_from_labels(labels, mask, names, tau, omega)


def with_threshold(graph: Graph, tau: float | None = None, omega: float | None = None) -> Graph:
    """The same statistics at another ``tau`` (eq. 6) and/or ``omega`` (eq. 7)."""
    tau = graph["tau"] if tau is None else tau
    omega = graph["omega"] if omega is None else omega
    c = binarize(graph["P"], tau)
    return {**graph, "tau": tau, "omega": omega, "C": c, "C_hat": reweight(c, omega)}


# -------------------------------------------------------------------------------- edges, degrees, sweep
def edges_table(graph: Graph) -> list[dict[str, Any]]:
    """Every directed edge ``i -> j`` of ``C`` (eq. 6), strongest ``P(j | i)`` first.

    Each row: source, target, ``P`` = P(target | source), ``P_reverse`` = P(source | target), ``m`` (faces with
    both), ``n`` (faces with the source, labelled for both) and ``weight`` = ``C_hat_ij`` (eq. 7).
    """
    names, p, c_hat = graph["names"], graph["P"], graph["C_hat"]
    rows = [
        {"source": names[i], "target": names[j], "P": float(p[i, j]), "P_reverse": float(p[j, i]),
         "m": int(graph["m"][i, j]), "n": int(graph["n"][i, j]), "weight": float(c_hat[i, j])}
        for i, j in graph["C"].nonzero().tolist()
    ]  # fmt: skip
    return sorted(rows, key=lambda r: (-r["P"], r["source"], r["target"]))


def degrees(graph: Graph) -> dict[str, Any]:
    """Out-degree (row sums of ``C``: how many characteristics node i gathers from) and in-degree per node.

    A node of out-degree 0 keeps all its weight on itself in ``C_hat`` (eq. 7), so the GCN leaves it unchanged
    except for ``W``.
    """
    c = graph["C"]
    out, into = c.sum(1).long(), c.sum(0).long()
    isolated = [n for n, d, e in zip(graph["names"], out.tolist(), into.tolist(), strict=True) if d == e == 0]
    return {"names": list(graph["names"]), "out": out, "in": into, "isolated": isolated}


def sweep(graph: Graph, taus: Sequence[float], omegas: Sequence[float], layers: int = 2) -> dict[str, Any]:
    """How tau (eq. 6) and omega (eq. 7) shape the graph, over a grid.

    Per tau: directed edges, mutual pairs (both directions), nodes with no out-edge, mean and max out-degree,
    clusters of two or more (:func:`communities`) and the out-degree histogram ``degree_counts[t][d]``. omega does
    not change the edges, only their weights; per (tau, omega), ``self_share`` is the mean diagonal of
    ``C_hat^layers``: how much of a node's own embedding survives ``layers`` propagations of eq. 8 (ignoring W
    and rho). It is 1 for omega = 0.
    """
    p, k = graph["P"], len(graph["names"])
    out: dict[str, Any] = {"tau": [float(t) for t in taus], "omega": [float(w) for w in omegas], "layers": layers,
                           "edges": [], "mutual": [], "no_out_edge": [], "mean_degree": [], "max_degree": [],
                           "clusters": [], "degree_counts": [], "self_share": []}  # fmt: skip
    for tau in taus:
        c = binarize(p, tau)
        deg = c.sum(1).long()
        out["edges"].append(int(c.sum()))
        out["mutual"].append(int((c * c.T).sum()) // 2)
        out["no_out_edge"].append(int((deg == 0).sum()))
        out["mean_degree"].append(float(deg.double().mean()))
        out["max_degree"].append(int(deg.max()))
        out["clusters"].append(sum(len(g) > 1 for g in communities({"names": graph["names"], "C": c})))
        out["degree_counts"].append(torch.bincount(deg, minlength=k).tolist())
        row = []
        for omega in omegas:
            propagated = torch.linalg.matrix_power(reweight(c, omega), layers)
            row.append(float(propagated.diagonal().mean()))
        out["self_share"].append(row)
    return out


# ------------------------------------------------------------------------------------------ communities
def to_networkx(graph: Graph) -> nx.DiGraph:
    """``C`` as a networkx DiGraph: one node per characteristic, an edge ``i -> j`` where ``C_ij = 1``."""
    import networkx as nx

    names = graph["names"]
    g = nx.DiGraph()
    g.add_nodes_from(names)
    g.add_edges_from((names[i], names[j]) for i, j in graph["C"].nonzero().tolist())
    return g


def communities(graph: Graph) -> list[list[str]]:
    """Clusters of ``C`` by greedy modularity (Clauset-Newman-Moore, directed), largest first.

    Members keep the graph's order; clusters of one (e.g. characteristics without edges) come last.
    """
    from networkx.algorithms.community import greedy_modularity_communities

    names = list(graph["names"])
    position = {n: i for i, n in enumerate(names)}
    found = [sorted(c, key=position.__getitem__) for c in greedy_modularity_communities(to_networkx(graph))]
    groups = sorted((c for c in found if len(c) > 1), key=lambda c: (-len(c), position[c[0]]))
    singles = sorted((c[0] for c in found if len(c) == 1), key=position.__getitem__)
    return groups + [[n] for n in singles]


def community_colors(groups: list[list[str]]) -> dict[str, str]:
    """A colour per characteristic: one per cluster of two or more (tab20), grey for clusters of one."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    palette = colormaps["tab20"].colors
    colors: dict[str, str] = {}
    for i, group in enumerate(g for g in groups if len(g) > 1):
        colors |= dict.fromkeys(group, to_hex(palette[(2 * i) % 20 + (2 * i) // 20 % 2]))
    for group in groups:
        if len(group) == 1:
            colors[group[0]] = SINGLETON_COLOR
    return colors


# -------------------------------------------------------------------------------- prompt embeddings
def prompt_embeddings(checkpoint: str | Path) -> dict[str, Any]:
    """The characteristic embeddings of a checkpoint before the GCN (``t0``, the frozen text encoder's T0) and after
    it (``t_hat`` = T0 + T^L, eq. 8), over the graph the model runs with (its own tau and omega).

    Only the saved T0 buffer, the statistics and the GCN weights are read: no encoder or LLM is built. The adapter
    A_t that projects ``t_hat`` into the LLM comes after and is not applied.
    """
    ckpt, stats, config = _read_checkpoint(checkpoint)
    state = ckpt["state_dict"]
    if "model.prompt_embeddings" not in state:
        raise ValueError(f"{checkpoint} holds no prompt embeddings (model.prompt_embeddings): not a FaceInsight model")
    gcn_state = {k.removeprefix("model.gcn."): v for k, v in state.items() if k.startswith("model.gcn.")}
    if not gcn_state:
        raise ValueError(f"{checkpoint} has no GCN (trained with use_correlation false): its T_hat is T0")
    t0 = state["model.prompt_embeddings"].float()
    gcn = CorrelationGCN(t0.shape[1], config)
    gcn.load_state_dict(gcn_state)
    with torch.no_grad():
        t_hat = gcn.eval()(t0, gcn.adjacency(stats))
    graph = stats.graph(config.tau, config.omega)
    return {"names": stats.names, "tau": config.tau, "omega": config.omega, "C": graph["C"], "t0": t0, "t_hat": t_hat}


def cosine_similarity(t: Tensor) -> Tensor:
    """``[K, K]`` cosine similarity between the rows of ``t [K, D]``."""
    unit = torch.nn.functional.normalize(t.double(), dim=1)
    return unit @ unit.T


def similarity_change(embeddings: dict[str, Any]) -> dict[str, Any]:
    """Cosine similarities before (T0) and after (T_hat) the GCN, their change, and their means over the pairs
    that are edges of ``C`` and over those that are not (i != j; NaN when there are none)."""
    before, after = cosine_similarity(embeddings["t0"]), cosine_similarity(embeddings["t_hat"])
    c = embeddings["C"].bool()
    off = ~torch.eye(len(c), dtype=torch.bool)
    edge, other = c & off, ~c & off

    def mean(x: Tensor, where: Tensor) -> float:
        return float(x[where].mean()) if where.any() else float("nan")

    return {
        "before": before, "after": after, "change": after - before,
        "edges": int(edge.sum()),
        "mean_before": {"edges": mean(before, edge), "non_edges": mean(before, other)},
        "mean_after": {"edges": mean(after, edge), "non_edges": mean(after, other)},
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ plots
def heatmap_figure(panels: int, k: int) -> tuple[Figure, list[Axes]]:
    """A row of ``panels`` square heatmaps, each big enough for ``k`` readable tick labels (about 0.2 in each)."""
    import matplotlib.pyplot as plt

    side = max(5.0, 0.2 * k + 2.5)
    fig, axes = plt.subplots(1, panels, figsize=(side * panels, side), squeeze=False, layout="constrained")
    return fig, list(axes[0])


def plot_heatmap(
    ax: Axes,
    matrix: Tensor,
    names: Sequence[str],
    title: str,
    groups: list[list[str]] | None = None,
    **imshow: Any,
) -> None:
    """``matrix [K, K]`` (row i, column j) with the characteristic names as ticks.

    With ``groups`` (:func:`communities`), rows and columns are ordered cluster by cluster, lines separate the
    clusters and tick labels take their cluster's colour, so blocks of co-occurring characteristics show.
    """
    names = list(names)
    order = list(range(len(names)))
    colors: dict[str, str] = {}
    if groups is not None:
        position = {n: i for i, n in enumerate(names)}
        order = [position[n] for g in groups for n in g]
        colors = community_colors(groups)
    m = matrix.double()[order][:, order].numpy()
    ordered = [names[i] for i in order]
    image = ax.imshow(m, interpolation="nearest", **imshow)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    ax.set_xticks(range(len(names)), ordered, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), ordered, fontsize=7)
    for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        label.set_color(colors.get(label.get_text(), "black"))
    if groups is not None:
        edge = 0
        for g in groups:
            if len(g) == 1:
                break
            edge += len(g)
            ax.axhline(edge - 0.5, color="0.55", lw=1.0)
            ax.axvline(edge - 0.5, color="0.55", lw=1.0)
    ax.set_title(title)
    ax.set_xlabel("j")
    ax.set_ylabel("i")


def _clustered_layout(g, groups: list[list[str]], seed: int) -> dict[str, tuple[float, float]]:
    """Each cluster laid out by springs around its own centre on a circle; clusters of one in rows below."""
    import networkx as nx

    clusters = [c for c in groups if len(c) > 1]
    singles = [c[0] for c in groups if len(c) == 1]
    radii = [0.6 * math.sqrt(len(c)) for c in clusters]
    ring = 1.6 * sum(2 * r for r in radii) / (2 * math.pi) if len(clusters) > 1 else 0.0
    pos: dict[str, tuple[float, float]] = {}
    for i, (cluster, r) in enumerate(zip(clusters, radii, strict=True)):
        angle = 2 * math.pi * i / len(clusters)
        centre = (ring * math.cos(angle), ring * math.sin(angle))
        sub = g.subgraph(cluster).to_undirected()
        pos |= {n: tuple(xy) for n, xy in nx.spring_layout(sub, seed=seed, scale=r, center=centre).items()}
    if singles:
        width = max(2 * (ring + max(radii, default=1.0)), 4.0)
        per_row = max(1, int(width / 0.9))
        top = min((y for _, y in pos.values()), default=0.0) - 0.8
        for i, n in enumerate(singles):
            row, col = divmod(i, per_row)
            count = min(per_row, len(singles) - row * per_row)
            pos[n] = (-width / 2 + width * (col + 0.5) / count, top - 0.6 * row)
    return pos


def draw_graph(graph: Graph, groups: list[list[str]] | None = None, ax: Axes | None = None, seed: int = 0) -> Figure:
    """The graph ``C`` (eq. 6) with its clusters in colour: an arrow ``i -> j`` where ``P(j | i) >= tau`` (node i
    gathers j in the GCN); node size grows with degree. Clusters of one (grey) sit in rows below."""
    import matplotlib.pyplot as plt
    import networkx as nx
    from matplotlib.lines import Line2D

    groups = communities(graph) if groups is None else groups
    colors = community_colors(groups)
    g = to_networkx(graph)
    if ax is None:
        side = max(8.0, 0.22 * len(graph["names"]) + 4)
        _, ax = plt.subplots(figsize=(side, side), layout="constrained")
    pos = _clustered_layout(g, groups, seed)
    inside = [(a, b) for a, b in g.edges if colors[a] == colors[b] and colors[a] != SINGLETON_COLOR]
    across = [e for e in g.edges if e not in set(inside)]
    arrows = {"arrows": True, "arrowstyle": "-|>", "arrowsize": 8, "node_size": 300, "connectionstyle": "arc3,rad=0.08"}
    nx.draw_networkx_edges(g, pos, edgelist=across, edge_color="#bbbbbb", width=0.6, alpha=0.6, ax=ax, **arrows)
    nx.draw_networkx_edges(g, pos, edgelist=inside, edge_color=[colors[a] for a, _ in inside], width=1.0,
                           alpha=0.8, ax=ax, **arrows)  # fmt: skip
    sizes = [80 + 10 * g.degree(n) for n in g.nodes]
    nx.draw_networkx_nodes(g, pos, node_color=[colors[n] for n in g.nodes], node_size=sizes, ax=ax,
                           edgecolors="white", linewidths=0.8)  # fmt: skip
    nx.draw_networkx_labels(g, pos, font_size=7, ax=ax, verticalalignment="bottom")
    clusters = [c for c in groups if len(c) > 1]
    handles = [Line2D([], [], marker="o", ls="", color=colors[c[0]], label=f"cluster {i + 1} ({len(c)})")
               for i, c in enumerate(clusters)]  # fmt: skip
    if len(clusters) < len(groups):
        handles.append(Line2D([], [], marker="o", ls="", color=SINGLETON_COLOR,
                              label=f"no cluster ({len(groups) - len(clusters)})"))  # fmt: skip
    if handles:
        ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False)
    ax.set_title(f"C at tau = {graph['tau']:g} (eq. 6): {g.number_of_edges()} directed edges, "
                 f"{len(clusters)} clusters; arrow i -> j: P(j | i) >= tau")  # fmt: skip
    ax.set_axis_off()
    return ax.figure


def plot_degrees(graph: Graph) -> Figure:
    """Out- and in-degree of every characteristic at the graph's tau, sorted by out-degree."""
    import matplotlib.pyplot as plt

    d = degrees(graph)
    order = sorted(range(len(d["names"])), key=lambda i: (-int(d["out"][i]), -int(d["in"][i]), d["names"][i]))
    x = torch.arange(len(order)).numpy()
    fig, ax = plt.subplots(figsize=(max(8.0, 0.2 * len(order) + 2), 4), layout="constrained")
    ax.bar(x - 0.2, d["out"][order].numpy(), width=0.4, label="out-degree (gathers from)")
    ax.bar(x + 0.2, d["in"][order].numpy(), width=0.4, label="in-degree (gathered by)")
    ax.set_xticks(x, [d["names"][i] for i in order], rotation=90, fontsize=7)
    ax.set_ylabel("edges")
    ax.set_title(f"degrees at tau = {graph['tau']:g}")
    ax.legend(frameon=False)
    return fig


def plot_sweep(result: dict[str, Any], tau: float | None = None, omega: float | None = None) -> Figure:
    """Four panels of :func:`sweep`: edges, degrees and clusters against tau, the out-degree histogram over tau,
    and the self share of ``C_hat^L`` over (tau, omega). The chosen tau and omega are marked."""
    import matplotlib.pyplot as plt

    taus, omegas = result["tau"], result["omega"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 10), layout="constrained")
    a = axes[0, 0]
    a.plot(taus, result["edges"], marker="o", label="directed edges")
    a.plot(taus, result["mutual"], marker="s", label="mutual pairs")
    a.set(xlabel="tau", ylabel="count", title="edges of C (eq. 6) against tau")
    b = axes[0, 1]
    b.plot(taus, result["mean_degree"], marker="o", label="mean out-degree")
    b.plot(taus, result["max_degree"], marker="^", label="max out-degree")
    b.plot(taus, result["no_out_edge"], marker="x", label="nodes with no out-edge")
    b.plot(taus, result["clusters"], marker="d", label="clusters (2+ nodes)")
    b.set(xlabel="tau", ylabel="count", title="degrees and clusters against tau")
    for ax in (a, b):
        if tau is not None:
            ax.axvline(tau, color="red", lw=0.8, ls="--", label=f"tau = {tau:g}")
        ax.grid(True, alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    counts = torch.tensor(result["degree_counts"], dtype=torch.float64)
    used = max(int((counts.sum(0) > 0).nonzero().max()) + 1, 2)
    c = axes[1, 0]
    image = c.imshow(counts[:, :used].numpy(), aspect="auto", origin="lower", cmap="magma",
                     extent=(-0.5, used - 0.5, -0.5, len(taus) - 0.5))  # fmt: skip
    fig.colorbar(image, ax=c, label="characteristics")
    c.set_yticks(range(len(taus)), [f"{t:g}" for t in taus], fontsize=7)
    c.set(xlabel="out-degree", ylabel="tau", title="out-degree histogram against tau")
    d = axes[1, 1]
    share = torch.tensor(result["self_share"]).numpy()
    image = d.imshow(share, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(image, ax=d, label=f"mean diagonal of C_hat^{result['layers']}")
    d.set_xticks(range(len(omegas)), [f"{w:g}" for w in omegas], fontsize=7)
    d.set_yticks(range(len(taus)), [f"{t:g}" for t in taus], fontsize=7)
    d.set(xlabel="omega (eq. 7)", ylabel="tau (eq. 6)",
          title=f"own share after {result['layers']} propagations (eq. 8, without W and rho)")  # fmt: skip
    if tau is not None and omega is not None:
        ti = min(range(len(taus)), key=lambda i: abs(taus[i] - tau))
        wi = min(range(len(omegas)), key=lambda i: abs(omegas[i] - omega))
        d.plot(wi, ti, marker="o", mfc="none", mec="red", ms=12, mew=2)
    return fig


def save_figure(fig: Figure, out_dir: str | Path, name: str, dpi: int = 110) -> Path:
    """Write ``fig`` to ``out_dir/name.png`` (the folder is created) and return the path."""
    path = Path(out_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


# ------------------------------------------------------------------------------------------------ CLI
def export_main(argv: list[str]) -> None:
    """``faceinsight graph export <ckpt> [--out graph.json] [--tau T] [--omega W]``."""
    parser = argparse.ArgumentParser(prog="faceinsight graph export", description=export_main.__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default="graph.json")
    parser.add_argument("--tau", type=float)
    parser.add_argument("--omega", type=float)
    args = parser.parse_args(argv)
    graph = load_graph(args.checkpoint, args.tau, args.omega)
    as_json = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in graph.items()}
    Path(args.out).write_text(json.dumps(as_json))
    c = graph["C"]
    print(
        f"{len(graph['names'])} characteristics, {int(c.sum())} directed edges (tau={graph['tau']}); wrote {args.out}"
    )
