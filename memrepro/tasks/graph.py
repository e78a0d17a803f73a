"""Graph traversal and shortest path on random graphs (Graves et al. 2016, "Hybrid computing using
a neural network with dynamic external memory", Nature 538; Methods "Graph task descriptions",
"Random graph generation", "Traversal", "Shortest path"; curricula in Extended Data Tables 3 and 5),
tested without retraining on the London Underground (Fig. 2b; `memrepro.data.london`).

Encoding (Methods): a triple (source, edge, destination) of labels 0–999; each label is three
10-way one-hot digits (30 inputs), the all-zero vector is the blank label "_"; a triple takes 90
inputs. Two flags follow: input 90 marks the first step of each phase after the description,
input 91 is on through the answer phase. The 90 outputs are nine 10-way softmaxes, one per digit
(output kind "classes", targets [B, T, 9]); only answer steps are scored.

A sequence is: description (every triple of the graph, in random order), query, planning (shortest
path only: 10 blank steps), answer. Example, traversal of 2 steps on a 3-node graph:

    description  (17, 4, 503) (503, 9, 17) (503, 4, 88) (88, 9, 503)    flags 00
    query        (17, 4, _)  (_, 4, _)                                  flags 10, 00
    answer       -> (17, 4, 503)  -> (503, 4, 88)                       flags 11, 01

Random graphs: N points uniform in the unit square, each linked to its K nearest neighbours with
K drawn per node; node labels are N distinct draws from 0–999; N distinct edge labels are drawn
from 0–999 and each node's outbound edges take distinct ones of them, so edge labels are unique
per source node (a traversal query then names exactly one path). ``seq_error`` is the paper's
measure turned into an error: the share of sequences not answered entirely right (for shortest
path: whose predicted triples do not form a shortest path from source to destination).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from memrepro.data.london import zone1_interchange_graph
from memrepro.errors import ConfigError
from memrepro.tasks.base import Batch, Task, check_positive

BLANK = -1
NUM_LABELS = 1000
TRIPLE_SIZE = 90
TRANSITION, ANSWER = 90, 91  # flag channels
PLACES = torch.tensor([100, 10, 1])

# (nodes, out-degree, path length) ranges per lesson: Extended Data Table 3 (traversal) ...
TRAVERSAL_LESSONS = (
    ((3, 10), (2, 4), (1, 1)), ((3, 10), (2, 4), (1, 2)), ((5, 10), (2, 4), (1, 3)),
    ((5, 10), (2, 4), (1, 4)), ((10, 15), (2, 4), (1, 4)), ((10, 15), (2, 4), (1, 5)),
    ((10, 20), (2, 4), (1, 5)), ((10, 20), (2, 4), (1, 6)), ((10, 30), (2, 4), (1, 6)),
    ((10, 30), (2, 4), (1, 7)), ((10, 30), (2, 4), (1, 8)), ((10, 30), (2, 4), (1, 9)),
    ((10, 40), (2, 6), (1, 10)), ((10, 40), (2, 6), (1, 20)),
)
# ... and Extended Data Table 5 (shortest path).
SHORTEST_PATH_LESSONS = (
    ((5, 10), (1, 2), (2, 2)), ((5, 20), (1, 2), (2, 2)), ((10, 20), (1, 2), (2, 2)),
    ((10, 20), (1, 2), (2, 3)), ((10, 20), (1, 3), (2, 3)), ((10, 20), (2, 3), (2, 3)),
    ((10, 20), (2, 3), (2, 4)), ((10, 20), (2, 4), (2, 4)), ((10, 25), (2, 4), (2, 4)),
    ((10, 25), (2, 4), (2, 5)), ((10, 25), (2, 4), (2, 5)), ((15, 25), (2, 4), (2, 5)),
    ((15, 25), (2, 5), (2, 5)), ((20, 25), (2, 5), (2, 5)), ((20, 25), (2, 6), (2, 5)),
)


# --- encoding ---------------------------------------------------------------------------------
def triple_digits(triples: Tensor) -> Tensor:
    """[..., 3] labels -> [..., 9] decimal digits, hundreds first (blank -> -1 digits)."""
    digits = (triples.clamp_min(0).unsqueeze(-1) // PLACES.to(triples.device)) % 10
    digits = torch.where(triples.unsqueeze(-1) == BLANK, -1, digits)
    return digits.flatten(-2)


def digits_to_triples(digits: Tensor) -> Tensor:
    """[..., 9] digits -> [..., 3] labels (inverse of `triple_digits`)."""
    groups = digits.unflatten(-1, (3, 3))
    labels = (groups * PLACES.to(digits.device)).sum(-1)
    return torch.where((groups < 0).any(-1), BLANK, labels)


def encode_triples(triples: Tensor) -> Tensor:
    """[..., 3] labels -> [..., 90] one-hot digits; a blank label is 30 zeros."""
    digits = triple_digits(triples)
    return (F.one_hot(digits.clamp_min(0), 10) * (digits >= 0).unsqueeze(-1)).flatten(-2).float()


def decode_triples(vectors: Tensor) -> Tensor:
    """[..., 90] one-hot digits (or digit scores) -> [..., 3] labels; all-zero labels -> blank."""
    scores = vectors[..., :TRIPLE_SIZE].unflatten(-1, (9, 10))
    digits = torch.where(scores.abs().sum(-1) > 0, scores.argmax(-1), -1)
    return digits_to_triples(digits)


# --- graphs -----------------------------------------------------------------------------------
def randint(lo: int, hi: int, generator: torch.Generator, size=()) -> Tensor:
    """Uniform integers in [lo, hi], both included."""
    return torch.randint(lo, hi + 1, size, generator=generator)


def random_graph(nodes: tuple[int, int], out_degree: tuple[int, int], generator: torch.Generator) -> Tensor:
    """Triples [E, 3] of a random K-nearest-neighbour graph (DNC Methods, "Random graph generation")."""
    n = int(randint(*nodes, generator))
    points = torch.rand(n, 2, generator=generator)
    labels = torch.randperm(NUM_LABELS, generator=generator)[:n]
    edge_labels = torch.randperm(NUM_LABELS, generator=generator)[:n]
    degree = randint(*out_degree, generator, (n,)).clamp_max(n - 1)
    distances = torch.cdist(points, points).fill_diagonal_(float("inf"))
    nearest = distances.argsort(dim=1)[:, : n - 1]
    label_choice = torch.rand(n, n, generator=generator).argsort(dim=1)[:, : n - 1]  # distinct per row
    keep = torch.arange(n - 1) < degree.unsqueeze(1)
    source = labels.unsqueeze(1).expand(n, n - 1)
    return torch.stack([source[keep], edge_labels[label_choice][keep], labels[nearest][keep]], dim=1)


def hop_distances(triples: Tensor) -> tuple[Tensor, Tensor]:
    """Node labels [n] and the matrix [n, n] of fewest hops from node i to node j (-1 if none)."""
    nodes = torch.unique(triples[:, [0, 2]])
    src, dst = torch.searchsorted(nodes, triples[:, 0].contiguous()), torch.searchsorted(nodes, triples[:, 2].contiguous())
    n = len(nodes)
    adjacency = torch.zeros(n, n)
    adjacency[src, dst] = 1
    hops = torch.full((n, n), -1, dtype=torch.long)
    hops.fill_diagonal_(0)
    frontier = torch.eye(n)
    for k in range(1, n):  # breadth-first search from every node at once
        frontier = ((frontier @ adjacency) > 0) & (hops < 0)
        if not frontier.any():
            break
        hops[frontier] = k
        frontier = frontier.float()
    return nodes, hops


def pick(candidates: Tensor, generator: torch.Generator) -> Tensor:
    return candidates[int(torch.randint(len(candidates), (), generator=generator))]


# --- tasks ------------------------------------------------------------------------------------
class GraphTask(Task):
    """Common body: sequences from (graph, query, answer), curriculum lessons, London evaluation."""

    input_size = TRIPLE_SIZE + 2
    output_size = TRIPLE_SIZE
    output_kind = "classes"
    num_classes = 10
    LESSONS: tuple = ()
    planning_steps = 0

    def __init__(self, lessons: int | None = None, eval_size: int = 256):
        super().__init__(eval_size=eval_size)
        if lessons is not None and not (isinstance(lessons, int) and 1 <= lessons <= len(self.LESSONS)):
            raise ConfigError(f"task.lessons={lessons!r}: must be null (all) or an integer in [1, {len(self.LESSONS)}]")
        self.num_lessons = lessons or len(self.LESSONS)

    # -- to implement: a query on a graph, or None when the graph has none of the wanted length
    def query(self, triples: Tensor, length: tuple[int, int], generator: torch.Generator) -> tuple[Tensor, Tensor] | None:
        raise NotImplementedError  # abstract

    def london_queries(self, triples: Tensor, generator: torch.Generator) -> list[tuple[Tensor, Tensor]]:
        raise NotImplementedError  # abstract

    def sequence(self, triples: Tensor, query: Tensor, answer: Tensor, generator: torch.Generator) -> Batch:
        """One unbatched sequence: inputs [T, 92], targets [T, 9], mask [T]."""
        description = triples[torch.randperm(len(triples), generator=generator)]
        starts = [len(description), len(description) + len(query)]
        if self.planning_steps:
            starts.append(starts[-1] + self.planning_steps)
        answer_start, T = starts[-1], starts[-1] + len(answer)
        inputs = torch.zeros(T, self.input_size)
        inputs[: starts[1], :TRIPLE_SIZE] = encode_triples(torch.cat([description, query]))
        inputs[starts, TRANSITION] = 1
        inputs[answer_start:, ANSWER] = 1
        targets = torch.zeros(T, 9, dtype=torch.long)
        targets[answer_start:] = triple_digits(answer)
        mask = torch.zeros(T)
        mask[answer_start:] = 1
        return Batch(inputs, targets, mask)

    @staticmethod
    def collate(sequences: list[Batch]) -> Batch:
        """Stack sequences, padding the shorter ones at the end with unscored zeros."""
        return Batch(*(pad_sequence([getattr(s, f) for s in sequences], batch_first=True) for f in ("inputs", "targets", "mask")))

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        nodes, out_degree, length = self.LESSONS[self.lesson]
        sequences = []
        while len(sequences) < batch_size:
            triples = random_graph(nodes, out_degree, generator)
            qa = self.query(triples, length, generator)
            if qa is not None:
                sequences.append(self.sequence(triples, *qa, generator))
        return self.collate(sequences)

    def extra_eval_sets(self, generator: torch.Generator) -> dict[str, Batch]:
        triples = zone1_interchange_graph()
        return {"london": self.collate([self.sequence(triples, q, a, generator) for q, a in self.london_queries(triples, generator)])}

    def predicted_triples(self, outputs: Tensor) -> Tensor:
        return digits_to_triples(outputs.unflatten(-1, (9, self.num_classes)).argmax(-1))

    def describe(self) -> str:
        return f"{super().describe()} lessons={self.num_lessons}"


class GraphTraversal(GraphTask):
    """Follow a start node and a list of edge labels (DNC Methods, "Traversal"; Ext. Data Table 3).

    Query: (source, edge, _), then (_, edge, _) per further step; the answer is the walk's complete
    triples, with no inputs. London: ``london_size`` random 7-step walks (Fig. 2b: DNC 98.8%)."""

    LESSONS = TRAVERSAL_LESSONS

    def __init__(self, london_size: int = 256, london_steps: int = 7, **kwargs):
        super().__init__(**kwargs)
        check_positive("task.london_size", london_size)
        check_positive("task.london_steps", london_steps)
        self.london_size, self.london_steps = london_size, london_steps

    def query(self, triples, length, generator):
        steps = int(randint(*length, generator))
        node = pick(triples[:, 0], generator)
        walk = []
        for _ in range(steps):  # a random walk; every node of these graphs has an outbound edge
            walk.append(pick(triples[triples[:, 0] == node], generator))
            node = walk[-1][2]
        answer = torch.stack(walk)
        query = torch.full_like(answer, BLANK)
        query[:, 1] = answer[:, 1]
        query[0, 0] = answer[0, 0]
        return query, answer

    def london_queries(self, triples, generator):
        return [self.query(triples, (self.london_steps, self.london_steps), generator) for _ in range(self.london_size)]

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        wrong = (self.predicted_triples(outputs) != digits_to_triples(batch.targets)).any(-1) & batch.mask.bool()
        return {"seq_error": wrong.any(-1).float().mean().item()}


class ShortestPath(GraphTask):
    """Name a fewest-hop path between two nodes (DNC Methods, "Shortest path"; Ext. Data Table 5).

    Query: (source, _, destination), then 10 planning steps, then the path's triples. The target
    is one shortest path, ties broken at random (the paper's optimal policy π* likewise picks "one
    possible shortest path"); any shortest path counts as correct in ``seq_error``. London: every
    pair of stations 4 hops apart (Fig. 2b: DNC 55.3%)."""

    LESSONS = SHORTEST_PATH_LESSONS
    planning_steps = 10

    def __init__(self, london_hops: int = 4, **kwargs):
        super().__init__(**kwargs)
        check_positive("task.london_hops", london_hops)
        self.london_hops = london_hops

    def path(self, triples: Tensor, nodes: Tensor, hops: Tensor, source: int, target: int, generator) -> tuple[Tensor, Tensor]:
        """Query and a random shortest path from node index ``source`` to ``target``."""
        steps, node, end = [], nodes[source], nodes[target]
        to_end = hops[:, target]
        remaining = int(to_end[source])
        for _ in range(remaining):
            out = triples[triples[:, 0] == node]
            closer = out[to_end[torch.searchsorted(nodes, out[:, 2].contiguous())] == remaining - 1]
            steps.append(pick(closer, generator))
            node, remaining = steps[-1][2], remaining - 1
        query = torch.tensor([[nodes[source], BLANK, end]])
        return query, torch.stack(steps)

    def query(self, triples, length, generator):
        nodes, hops = hop_distances(triples)
        pairs = ((hops >= length[0]) & (hops <= length[1])).nonzero()
        if len(pairs) == 0:
            return None
        source, target = pick(pairs, generator).tolist()
        return self.path(triples, nodes, hops, source, target, generator)

    def london_queries(self, triples, generator):
        nodes, hops = hop_distances(triples)
        return [self.path(triples, nodes, hops, s, t, generator) for s, t in (hops == self.london_hops).nonzero().tolist()]

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        """A prediction is right when its answer triples form a path of graph edges from the query's
        source to its destination; it has as many steps as the shortest path, so it is shortest."""
        predicted, target = self.predicted_triples(outputs), digits_to_triples(batch.targets)
        scored = batch.mask.bool()
        first = scored & ~F.pad(scored, (1, 0))[:, :-1]
        last = scored & ~F.pad(scored, (0, 1))[:, 1:]
        previous_destination = F.pad(predicted[:, :-1, 2], (1, 0), value=BLANK)
        linked = torch.where(first, predicted[:, :, 0] == target[:, :, 0], predicted[:, :, 0] == previous_destination)
        arrives = ~last | (predicted[:, :, 2] == target[:, :, 2])
        # The graph is the description phase: the steps before the first transition flag.
        described = (batch.inputs[:, :, TRANSITION].cumsum(1) == 0) & (batch.inputs[:, :, :TRIPLE_SIZE].sum(-1) > 0)
        edges = torch.where(described, self.code(decode_triples(batch.inputs)), -1)
        exists = (self.code(predicted).unsqueeze(2) == edges.unsqueeze(1)).any(-1)
        right = linked & arrives & exists
        return {"seq_error": (scored & ~right).any(-1).float().mean().item()}

    @staticmethod
    def code(triples: Tensor) -> Tensor:
        """One integer per triple, for set membership."""
        return (triples[..., 0] * NUM_LABELS + triples[..., 1]) * NUM_LABELS + triples[..., 2]
