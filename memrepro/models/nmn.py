"""Neural memory network (NMN) — Biggs & Nuttall, "Neural Memory Networks", §III (eqs. 1, 2, 11)
and §VI (eq. 12).

A feed-forward net of sigmoid layers in which every hidden neuron j owns a memory bank M_j. The
neuron's output switches its memories on and off; the layer's output is augmented as in eq. (2):

    x  = σ(W a + b)                                                        (1)
    a' = [x_1, x_1 M_1ᵀ, …, x_k, x_k M_kᵀ]                                  (2)

and the next layer reads a'. Memories are *stored*, never learned by gradient: after the step's
output, every neuron that fires (round(x_j) = 1) decays its bank and adds a new memory (eq. 11):

    M_j := γ^{round(x_j)} M_j + round(x_j) · g(round([x_{j−τ/2}, …, x_j, …, x_{j+τ/2}]))     (11)

where g maps the τ+1 binarised neighbour outputs to the one-hot vector of their pattern in
2^{τ+1} dimensions, so the memories in a bank are orthogonal and their sum (the "composite memory")
keeps them all; γ decays older memories only when the neuron fires. Choices (docs/models/nmn.md):

* ``write``: ``nearest_neighbor`` (eq. 11) or ``input``, which records the network's input vector
  instead of g(·) when the neuron fires (§IV.C "external writing").
* ``write_when``: ``fire`` (the text of §III.C: "when a node fires … the new memory is added") or
  ``always`` (eq. 11 as printed: g is added at every step, the decay still needs a firing).
* ``addressing``: ``orthogonal`` (eq. 11, the bank is read whole) or ``learned`` (eq. 12): the
  bank has 2^τ slots addressed by the τ neighbours through the differentiable binary-to-linear map
  a_k = Π_b x_b^{bit_b(k)} (1 − x_b)^{1 − bit_b(k)}; the memory node outputs x_j Σ_k a_k M_{j,k},
  writes add to the slot of the binarised neighbours. A slot holds a scalar (nearest_neighbor: a
  unit, as in eq. 12) or the input vector (input), so a layer's output grows linearly, not as 2^τ.
* Decay (§III.C): ``decay_train`` while training (fast, for plasticity) and ``decay_eval`` in use
  (1 = keep forever); magnitudes above ``decay_floor`` decay towards it, those below stay (an
  asymptotic schedule).
* The memory lives in the state: it starts empty with every sequence, which is the paper's stream.
* ``memory=false`` is the paper's FFNN baseline: the same sigmoid layers, no banks.

The output layer is linear: the task's loss (cross-entropy or MSE) replaces the paper's sigmoid
outputs with squared error (eq. 3). Gradients flow through x_j in eq. (2) (and through the
addresses a_k), the two paths of eq. (8); the stored contents are constants, as in eq. (8).
"""
from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from memrepro.errors import ConfigError
from memrepro.models.base import SequenceModel
from memrepro.tasks.base import check_positive

WRITES = ("nearest_neighbor", "input")
ADDRESSINGS = ("orthogonal", "learned")
WRITE_WHEN = ("fire", "always")


def decay(memory: Tensor, gamma: float, floor: float) -> Tensor:
    """Scale magnitudes above ``floor`` towards it by ``gamma`` (floor 0: plain γ·M)."""
    if floor == 0:
        return gamma * memory
    excess = (memory.abs() - floor).clamp_min(0)
    return memory - (1 - gamma) * memory.sign() * excess


class MemoryLayer(nn.Module):
    """One hidden layer of neurons with memory banks. A bank is [K slots, S values]:

    | write / addressing       | K         | S | read of neuron j            |
    | nearest_neighbor / orth. | 2^{τ+1}   | 1 | x_j · M_j (all K)           |
    | input / orthogonal       | 1         | I | x_j · M_j                   |
    | nearest_neighbor / learn | 2^τ       | 1 | x_j · Σ_k a_k M_{j,k}       |
    | input / learned          | 2^τ       | I | x_j · Σ_k a_k M_{j,k}       |
    """

    def __init__(self, in_size: int, size: int, input_size: int, write: str, addressing: str, neighbours: int):
        super().__init__()
        self.linear = nn.Linear(in_size, size)
        self.learned = addressing == "learned"
        half = neighbours // 2
        if write == "input" and not self.learned:
            offsets = []  # one slot: the input vector is stored as it is
        elif self.learned:
            offsets = [o for o in range(-half, half + 1) if o != 0]  # the τ neighbours address, j switches
        else:
            offsets = list(range(-half, half + 1))  # the τ+1 outputs of j's neighbourhood, eq. (11)
        self.slots = 2 ** len(offsets)
        self.width = input_size if write == "input" else 1
        # neighbour indices on a ring, so every neuron has a full neighbourhood
        self.register_buffer("neighbours", (torch.arange(size)[:, None] + torch.tensor(offsets, dtype=torch.long)) % size, persistent=False)
        self.register_buffer("powers", 2 ** torch.arange(len(offsets)), persistent=False)
        bits = torch.tensor(list(itertools.product((0, 1), repeat=len(offsets)))).flip(-1).bool()  # [K, n]: bit b of k
        self.register_buffer("bits", bits.reshape(self.slots, len(offsets)), persistent=False)
        self.write_input = write == "input"

    @property
    def read_size(self) -> int:
        return self.width if self.learned else self.slots * self.width

    def zero_memory(self, batch_size: int) -> Tensor:
        return self.linear.weight.new_zeros(batch_size, self.linear.out_features, self.slots, self.width)

    def addresses(self, x: Tensor) -> Tensor:
        """Eq. (12): a_k = Π_b (x_b if bit b of k else 1 − x_b) over the neighbours b; [..., H] -> [..., H, K]."""
        xn = x[..., self.neighbours].unsqueeze(-2)  # [..., H, 1, τ]
        return torch.where(self.bits, xn, 1 - xn).prod(-1)

    def read(self, x: Tensor, memory: Tensor) -> Tensor:
        """The augmented output of eq. (2): x [..., H], memory [..., H, K, S] -> [..., H·(1 + read_size)]."""
        if self.learned:
            r = torch.einsum("...hk,...hks->...hs", self.addresses(x), memory)
        else:
            r = memory.flatten(-2)
        return torch.cat([x.unsqueeze(-1), x.unsqueeze(-1) * r], dim=-1).flatten(-2)

    @torch.no_grad()
    def new_memories(self, x: Tensor, inputs: Tensor, always: bool) -> tuple[Tensor, Tensor]:
        """Who fires and what each bank stores at each step (any leading dims): x [..., H] and the
        network's inputs [..., I] -> fire [..., H, 1, 1], new [..., H, K, S]. Memory-independent,
        so a whole sequence is prepared at once."""
        fire = (x > 0.5).to(x.dtype)[..., None, None]
        new = x.new_ones(*x.shape, 1, 1)
        if self.slots > 1:  # g(·): the one-hot of the binarised neighbourhood's pattern
            slot = ((x[..., self.neighbours] > 0.5).long() * self.powers).sum(-1)
            new = nn.functional.one_hot(slot, self.slots).to(x.dtype).unsqueeze(-1)
        if self.write_input:
            new = new * inputs[..., None, None, :]
        return fire, new if always else fire * new

    @staticmethod
    def write(memory: Tensor, fire: Tensor, new: Tensor, gamma: float, floor: float) -> Tensor:
        """Eq. (11): M := γ^{round(x)} M + new (decay only where the neuron fires)."""
        return memory + fire * (decay(memory, gamma, floor) - memory) + new


class NMN(SequenceModel):
    """Sigmoid layers with per-neuron memory banks (see the module docstring) and a linear output."""
    scans = False  # no Python time loop carries gradients (compile=true: nothing to compile)

    def __init__(self, input_size: int, output_size: int, hidden_sizes=(32, 32), memory: bool = True, write: str = "nearest_neighbor",
                 addressing: str = "orthogonal", neighbours: int = 2, write_when: str = "fire", decay_train: float = 0.5,
                 decay_eval: float | None = None, decay_floor: float = 0.0):
        super().__init__(input_size, output_size)
        if write not in WRITES:
            raise ConfigError(f"model.write={write!r}: choose one of {', '.join(WRITES)}")
        if addressing not in ADDRESSINGS:
            raise ConfigError(f"model.addressing={addressing!r}: choose one of {', '.join(ADDRESSINGS)}")
        if not isinstance(neighbours, int) or neighbours < 0 or neighbours % 2:
            raise ConfigError(f"model.neighbours={neighbours!r}: must be an even number ≥ 0 (τ/2 on each side)")
        if write_when not in WRITE_WHEN:
            raise ConfigError(f"model.write_when={write_when!r}: choose one of {', '.join(WRITE_WHEN)}")
        decay_eval = decay_train if decay_eval is None else decay_eval
        for name, value in (("decay_train", decay_train), ("decay_eval", decay_eval)):
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"model.{name}={value!r}: must be in [0, 1]")
        check_positive("model.decay_floor", decay_floor, allow_zero=True)
        self.memory, self.write_always = memory, write_when == "always"
        self.decay_train, self.decay_eval, self.decay_floor = decay_train, decay_eval, decay_floor
        layers, last = [], input_size
        for i, h in enumerate(hidden_sizes):
            check_positive(f"model.hidden_sizes[{i}]", h)
            layer = MemoryLayer(last, h, input_size, write, addressing, neighbours)
            if memory and layer.slots > 1 and h <= neighbours:  # a neighbourhood must not wrap onto itself
                raise ConfigError(f"model.hidden_sizes[{i}]={h}: needs more units than model.neighbours={neighbours}")
            layers.append(layer)
            last = h * (1 + layer.read_size) if memory else h
        self.layers = nn.ModuleList(layers)
        self.output = nn.Linear(last, output_size)

    @property
    def gamma(self) -> float:
        return self.decay_train if self.training else self.decay_eval

    def initial_state(self, batch_size: int) -> tuple[Tensor, ...]:
        return tuple(layer.zero_memory(batch_size) for layer in self.layers) if self.memory else ()

    def step(self, x_t: Tensor, state):
        a, new_state = x_t, []
        for i, layer in enumerate(self.layers):
            x = torch.sigmoid(layer.linear(a))
            if self.memory:
                a = layer.read(x, state[i])  # read what was stored up to the previous step, then store
                fire, new = layer.new_memories(x, x_t, self.write_always)
                new_state.append(layer.write(state[i], fire, new, self.gamma, self.decay_floor))
            else:
                a = x
        return self.output(a), tuple(new_state)

    def forward(self, x: Tensor, state=None, return_states: bool = False):
        """Layer by layer: a layer's x for the whole sequence in one matmul (its memory never feeds
        its own pre-activations); only the gradient-free memory update loops over time."""
        if return_states:
            return super().forward(x, state, return_states=True)
        if state is None:
            state = self.initial_state(x.shape[0])
        a = x
        for i, layer in enumerate(self.layers):
            h = torch.sigmoid(layer.linear(a))
            if self.memory:
                fire, new = layer.new_memories(h, x, self.write_always)
                memory, before = state[i], []
                for fire_t, new_t in zip(fire.unbind(1), new.unbind(1)):
                    before.append(memory)
                    memory = layer.write(memory, fire_t, new_t, self.gamma, self.decay_floor)
                h = layer.read(h, torch.stack(before, dim=1))
            a = h
        return self.output(a)

    def trace(self, state) -> dict[str, Tensor]:
        """Every bank of every layer, flattened per sequence: [B, Σ_layers H·K·S]."""
        return {"memory": torch.cat([m.flatten(1) for m in state], dim=1)} if state else {}
