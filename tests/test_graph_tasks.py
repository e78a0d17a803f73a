"""Graph tasks (DNC paper): encoding, random graphs, answers checked against networkx, London map."""
import networkx as nx
import pytest
import torch
import torch.nn.functional as F

from memrepro.data.london import HEADINGS, load_network, zone1_interchange_graph
from memrepro.errors import ConfigError
from memrepro.tasks.graph import (
    ANSWER, BLANK, TRANSITION, TRIPLE_SIZE, GraphTraversal, ShortestPath, decode_triples, digits_to_triples,
    encode_triples, random_graph, triple_digits,
)


def test_encoding_by_hand():
    vector = encode_triples(torch.tensor([17, BLANK, 503]))
    # 017 -> digits 0,1,7 at 0+0, 10+1, 20+7; blank -> nothing; 503 -> 60+5, 70+0, 80+3
    assert vector.nonzero().flatten().tolist() == [0, 11, 27, 65, 70, 83]
    assert triple_digits(torch.tensor([17, BLANK, 503])).tolist() == [0, 1, 7, -1, -1, -1, 5, 0, 3]


def test_encoding_round_trip():
    g = torch.Generator().manual_seed(0)
    triples = torch.randint(-1, 1000, (500, 3), generator=g)
    assert torch.equal(decode_triples(encode_triples(triples)), triples)
    assert torch.equal(digits_to_triples(triple_digits(triples)), triples)


def graph_of(triples):
    graph = nx.MultiDiGraph()
    graph.add_edges_from((s, d, {"label": e}) for s, e, d in triples.tolist())
    return graph


def test_random_graph_follows_the_recipe():
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        triples = random_graph((5, 12), (2, 4), g)
        sources = triples[:, 0].tolist()
        nodes = set(sources) | set(triples[:, 2].tolist())
        assert 5 <= len(nodes) <= 12 and all(0 <= x < 1000 for x in triples.flatten().tolist())
        for node in nodes:
            out = triples[triples[:, 0] == node]
            assert 2 <= len(out) <= 4  # every node is a source: K >= 2 outbound edges
            assert len(set(out[:, 1].tolist())) == len(out)  # edge labels unique per source
            assert len(set(out[:, 2].tolist())) == len(out) and node not in out[:, 2].tolist()
        assert len(set(triples[:, 1].tolist())) <= len(nodes)  # drawn from N labels


def phases(batch, i):
    """Description triples, query triples and answer triples of sequence i."""
    inputs, mask = batch.inputs[i], batch.mask[i].bool()
    flags = inputs[:, TRANSITION].nonzero().flatten().tolist()
    description = decode_triples(inputs[: flags[0]])
    query = decode_triples(inputs[flags[0] : flags[1]])
    answer = digits_to_triples(batch.targets[i][mask])
    assert inputs[mask, ANSWER].eq(1).all() and inputs[~mask, ANSWER].eq(0).all()
    assert inputs[mask, :TRIPLE_SIZE].eq(0).all()  # no inputs during the answer phase
    return description, query, answer


@pytest.mark.parametrize("lesson", [0, 6, 13])
def test_traversal_answers_follow_the_query(lesson):
    task = GraphTraversal()
    task.set_lesson(lesson)
    batch = task.sample(12, torch.Generator().manual_seed(lesson))
    low, high = task.LESSONS[lesson][2]
    for i in range(len(batch)):
        description, query, answer = phases(batch, i)
        edges = set(map(tuple, description.tolist()))
        assert low <= len(answer) <= high and len(query) == len(answer)
        assert query[0, 0] == answer[0, 0] and torch.equal(query[:, 1], answer[:, 1])
        assert query[1:, [0, 2]].eq(BLANK).all() and query[0, 2] == BLANK
        assert all(tuple(t) in edges for t in answer.tolist())
        assert torch.equal(answer[1:, 0], answer[:-1, 2])


@pytest.mark.parametrize("lesson", [0, 7, 14])
def test_shortest_path_answers_are_shortest(lesson):
    task = ShortestPath()
    task.set_lesson(lesson)
    batch = task.sample(12, torch.Generator().manual_seed(lesson))
    low, high = task.LESSONS[lesson][2]
    for i in range(len(batch)):
        description, query, answer = phases(batch, i)
        source, _, target = query[0].tolist()
        assert query.shape == (1, 3) and query[0, 1] == BLANK
        graph = graph_of(description)
        assert low <= len(answer) == nx.shortest_path_length(graph, source, target) <= high
        assert answer[0, 0] == source and answer[-1, 2] == target and torch.equal(answer[1:, 0], answer[:-1, 2])
        assert all(graph.has_edge(s, d) and e in [a["label"] for a in graph[s][d].values()] for s, e, d in answer.tolist())


def logits_for(triples_per_step, like):
    """Confident outputs [B, T, 90] that predict the given triples at the answer steps."""
    digits = triple_digits(triples_per_step).clamp_min(0)
    return F.one_hot(digits, 10).flatten(-2).float() * 10 + like.new_zeros(like.shape[:2] + (90,))


def test_shortest_path_metric_accepts_any_shortest_path():
    # A diamond: 1 -> 2 -> 4 and 1 -> 3 -> 4, plus a dead end 1 -> 5.
    triples = torch.tensor([[1, 10, 2], [1, 11, 3], [2, 12, 4], [3, 13, 4], [1, 14, 5]])
    task = ShortestPath()
    g = torch.Generator().manual_seed(0)
    query = torch.tensor([[1, BLANK, 4]])
    batch = task.collate([task.sequence(triples, query, torch.tensor([[1, 10, 2], [2, 12, 4]]), g)] * 4)
    steps = digits_to_triples(batch.targets).clone()
    answers = batch.mask.bool()
    candidates = [
        [[1, 10, 2], [2, 12, 4]],  # the target path
        [[1, 11, 3], [3, 13, 4]],  # the other shortest path: also right
        [[1, 11, 3], [2, 12, 4]],  # not a path
        [[1, 14, 5], [5, 12, 4]],  # an edge that does not exist
    ]
    steps[answers] = torch.tensor(candidates).flatten(0, 1)
    assert task.metrics(logits_for(steps, batch.inputs), batch) == {"seq_error": 0.5}


def test_traversal_metric_counts_whole_sequences():
    task = GraphTraversal()
    batch = task.sample(8, torch.Generator().manual_seed(3))
    perfect = logits_for(digits_to_triples(batch.targets), batch.inputs)
    assert task.metrics(perfect, batch) == {"seq_error": 0.0}
    t = batch.mask[2].nonzero()[0, 0]
    perfect[2, t] = perfect[2, t].roll(1)  # one wrong digit in one sequence
    assert task.metrics(perfect, batch) == {"seq_error": 1 / 8}


def test_lessons_option():
    assert GraphTraversal().num_lessons == 14 and ShortestPath().num_lessons == 15
    assert GraphTraversal(lessons=3).num_lessons == 3
    for bad in (0, 15, 2.5):
        with pytest.raises(ConfigError, match="task.lessons"):
            GraphTraversal(lessons=bad)


def test_london_network_loads_whole():
    network = load_network()
    assert len(network.stations) == 302 and len(network.lines) == 13 and len(network.connections) == 406
    assert {line for _, _, line in network.connections} == set(network.lines)
    assert network.lines[2] == "Central Line" and network.stations[2].name == "Aldgate"
    graph = nx.Graph((a, b) for a, b, _ in network.connections)
    assert graph.number_of_nodes() == 302 and nx.is_connected(graph)


def test_zone1_interchange_map():
    network = load_network()
    triples = zone1_interchange_graph(network)
    stations = set(triples[:, 0].tolist()) | set(triples[:, 2].tolist())
    expected = {i for i, s in network.stations.items() if s.zone == 1 and s.total_lines >= 2}
    assert stations == expected and len(stations) == 40
    assert nx.is_strongly_connected(graph_of(triples))
    for station in stations:  # edge labels unique per source, each naming a line and a heading
        labels = triples[triples[:, 0] == station, 1].tolist()
        assert len(labels) == len(set(labels))
        assert all(label // 10 in network.lines and label % 10 < len(HEADINGS) for label in labels)
    # Every edge is travelled both ways on the same line.
    pairs = {(s, d, e // 10) for s, e, d in triples.tolist()}
    assert all((d, s, line) in pairs for s, d, line in pairs)
    # Spot check: Oxford Circus -> Tottenham Court Road heads east on the Central line (Fig. 3).
    ids = {s.name: i for i, s in network.stations.items()}
    assert [ids["Oxford Circus"], 21, ids["Tottenham Court Road"]] in triples.tolist()


def test_london_evaluation_sets():
    g = torch.Generator().manual_seed(0)
    traversal = GraphTraversal(london_size=20).extra_eval_sets(g)["london"]
    assert len(traversal) == 20 and traversal.mask.sum(1).eq(7).all()
    shortest = ShortestPath().extra_eval_sets(g)["london"]
    graph = graph_of(zone1_interchange_graph())
    hops = dict(nx.all_pairs_shortest_path_length(graph))
    assert len(shortest) == sum(d == 4 for row in hops.values() for d in row.values()) == 304
    assert shortest.mask.sum(1).eq(4).all()
    for i in range(0, len(shortest), 37):
        _, query, answer = phases(shortest, i)
        assert hops[int(query[0, 0])][int(query[0, 2])] == 4 and torch.equal(answer[1:, 0], answer[:-1, 2])


@pytest.mark.parametrize("name, cls", [("graph_traversal", GraphTraversal), ("shortest_path", ShortestPath)])
def test_config_composes_and_builds_at_smoke_scale(name, cls):
    from hydra.utils import instantiate

    from memrepro.config import compose

    task = instantiate(compose(["scale=smoke", f"task={name}"]).task)
    assert type(task) is cls and task.eval_size == 50 and task.online
    assert len(task.sample(2, torch.Generator().manual_seed(0))) == 2
