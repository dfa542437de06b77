"""A member config is validated and split into (bucket spec, numeric row) before any compile."""

import math

import pytest

from jaxnn import member


@pytest.mark.parametrize("config,message", [
    (dict(model="transformer"), "model: got 'transformer'; allowed: fastnet, lenet5, mlp"),
    (dict(activation="swish2"), "activation: got 'swish2'; allowed: elu, gelu"),
    (dict(kernel_init="orthogonal"), "kernel_init: got 'orthogonal'; allowed: constant"),
    (dict(bias_init="ones"), "bias_init: got 'ones'; allowed: constant, zeros"),
    (dict(optimizer="lion"), "optimizer: got 'lion'; allowed: adadelta, adagrad, adam"),
    (dict(schedule="poly"), "schedule: got 'poly'; allowed: constant, cosine, cyclic"),
    (dict(lr=-0.1), "lr: got -0.1; allowed: a finite number >= 0"),
    (dict(lr=math.inf), "lr: got inf; allowed: a finite number >= 0"),
    (dict(lr=math.nan), "lr: got nan; allowed: a finite number >= 0"),
    (dict(dropout=1.0), "dropout: got 1.0; allowed: a number in [0.0, 1.0)"),
    (dict(dropout=-0.1), "dropout: got -0.1; allowed: a number in [0.0, 1.0)"),
    (dict(momentum=1.0), "momentum: got 1.0; allowed: a number in [0.0, 1.0)"),
    (dict(widths=[]), "widths: got []; allowed: a non-empty list of positive integers"),
    (dict(widths=[64, 0]), "widths: got [64, 0]; allowed: a non-empty list of positive integers"),
    (dict(batch_size=0), "batch_size: got 0; allowed: an integer >= 1"),
    (dict(schedule="multistep"), "milestones: got None; allowed: a non-empty list"),
    (dict(dropout=[0.1, 0.2, 0.3]), "dropout: got [0.1, 0.2, 0.3]; allowed: one rate or a list of 2"),
    (dict(lr_rate=0.1), "lr_rate: unknown field; known:"),
    (dict(model="lenet5", widths=[3]), "widths: got [3]; allowed: not an option of model lenet5"),
])
def test_bad_values_fail_with_one_line_naming_the_field(config, message):
  with pytest.raises(member.ConfigError) as info:
    member.resolve(config, num_classes=10)
  text = str(info.value)
  assert "\n" not in text
  assert text.startswith(message), text


def test_numbers_are_the_row_and_kinds_are_the_spec():
  spec_a, row_a = member.resolve(dict(lr=0.1, momentum=0.9, dropout=0.2, seed=3), num_classes=10)
  spec_b, row_b = member.resolve(dict(lr=0.01, l2=1e-4, dropout=[0.1, 0.5]), num_classes=10)
  assert spec_a == spec_b and hash(spec_a) == hash(spec_b)
  assert row_a["lr"] == 0.1 and row_b["lr"] == 0.01 and row_a["seed"] == 3
  assert row_a["dropout"] == [0.2, 0.2] and row_b["dropout"] == [0.1, 0.5]
  assert set(row_a) == set(row_b)
  spec_c, _ = member.resolve(dict(optimizer="adam"), num_classes=10)
  assert spec_c != spec_a


def test_defaults_follow_the_chosen_kinds():
  _, row = member.resolve(dict(optimizer="adam", kernel_init="normal", activation="leaky_relu"),
                          num_classes=10)
  assert row["lr"] == 1e-3 and row["beta2"] == 0.999
  assert row["init_scale"] == 0.05 and row["act_param"] == 0.01
  spec, _ = member.resolve(dict(model="lenet5"), num_classes=10)
  assert dict(spec.model_kwargs)["activation"] == "tanh"   # LeNet-5's own default


def test_zeros_and_constant_initializers_share_a_program():
  a, row_a = member.resolve(dict(bias_init="zeros"), num_classes=10)
  b, row_b = member.resolve(dict(bias_init="constant", bias_value=0.5), num_classes=10)
  assert a == b and row_a["bias_value"] == 0.0 and row_b["bias_value"] == 0.5


def test_per_step_schedule_lengths_default_to_steps():
  config = dict(schedule="cosine", schedule_per="step", batch_size=50, epochs=3)
  _, row = member.resolve(config, num_classes=2, num_train=500)   # 10 steps per epoch
  assert (row["horizon"], row["step_size"], row["gamma"]) == (30.0, 10.0, 0.1)
  _, row = member.resolve({**config, "schedule": "exponential"}, num_classes=2, num_train=500)
  assert row["gamma"] == pytest.approx(0.1 ** 0.1)
  _, row = member.resolve({**config, "horizon": 7}, num_classes=2)   # set: no size needed
  assert row["horizon"] == 7.0
  with pytest.raises(member.ConfigError, match="horizon: schedule_per=step needs it in steps"):
    member.resolve(config, num_classes=2)
