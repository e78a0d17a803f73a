"""The baselines: fused forward == step loop, the LSTM's forget-gate initialisation, FFNN
memorylessness, and one-line errors for impossible sizes."""
import pytest
import torch

from memrepro.errors import ConfigError
from memrepro.models.recurrent import FFNN, GRU, LSTM, RNN


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
@pytest.mark.parametrize("layers", [1, 2])
def test_fused_forward_equals_step_loop(cls, layers):
    torch.manual_seed(0)
    m = cls(3, 2, hidden_size=5, num_layers=layers)
    x = torch.randn(4, 7, 3)
    fused = m(x)
    stepped, states = m(x, return_states=True)
    torch.testing.assert_close(fused, stepped)
    assert len(states) == 7 and m.trace(states[-1])["hidden"].shape == (4, 5)


def test_lstm_forget_bias_is_set_once_on_the_summed_bias():
    m = LSTM(3, 2, hidden_size=4, forget_bias=1.0)
    b = m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0  # PyTorch adds the two; gates ordered (i, f, g, o)
    torch.testing.assert_close(b[4:8], torch.ones(4))
    assert torch.all(m.rnn.bias_hh_l0[4:8] == 0)


def test_ffnn_has_no_memory():
    torch.manual_seed(0)
    m = FFNN(3, 2, hidden_sizes=[6, 5])
    x = torch.randn(2, 5, 3)
    y = m(x)
    x2 = x.clone()
    x2[:, :2] = torch.randn(2, 2, 3)  # change the past only
    torch.testing.assert_close(m(x2)[:, 2:], y[:, 2:])
    torch.testing.assert_close(m.step(x[:, 3], ())[0], y[:, 3])


def test_parameter_count_of_elman_rnn():
    # W (h x i) + U (h x h) + two biases (PyTorch keeps b_ih and b_hh) + read-out (o x h + o)
    assert RNN(3, 2, hidden_size=4).num_parameters() == 4 * 3 + 4 * 4 + 2 * 4 + 2 * 4 + 2


@pytest.mark.parametrize("make, field", [
    (lambda: LSTM(3, 2, hidden_size=0), "model.hidden_size"),
    (lambda: RNN(3, 2, num_layers=-1), "model.num_layers"),
    (lambda: GRU(3, 2, dropout=1.5), "model.dropout"),
    (lambda: FFNN(3, 2, hidden_sizes=[4, 0]), "model.hidden_sizes[1]"),
    (lambda: FFNN(3, 2, activation="swish"), "model.activation"),
])
def test_impossible_sizes_name_the_field(make, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        make()
