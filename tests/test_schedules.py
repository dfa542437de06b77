"""Each schedule against the values its PyTorch scheduler gives (or its closed formula).

The reference lists were produced with torch 2.13 by stepping the scheduler once per epoch
around an SGD optimizer with lr=0.1 and reading param_groups[0]['lr'] before each step, e.g.
    s = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnn import schedules

TORCH_REFERENCE = {
    # name: (hyperparameters, values for t = 0, 1, 2, ...)
    "exponential": (dict(gamma=0.9), [
        0.1, 0.09, 0.081, 0.0729, 0.06561, 0.059049, 0.0531441, 0.04782969, 0.043046721,
        0.0387420489, 0.034867844, 0.0313810596]),
    "step": (dict(step_size=3, gamma=0.5), [
        0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125, 0.0125, 0.0125]),
    "multistep": (dict(milestones=[2, 5, 9], gamma=0.1), [
        0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001, 0.0001, 0.0001, 0.0001]),
    "cosine": (dict(horizon=10, lr_min=0.001), [
        0.1, 0.0975772976, 0.0905463412, 0.07959537, 0.0657963412, 0.0505, 0.0352036588,
        0.02140463, 0.0104536588, 0.0034227024, 0.001]),
    # OneCycleLR(max_lr=0.1, total_steps=12, pct_start=0.3), defaults div 25 / final div 1e4.
    "one_cycle": (dict(horizon=12, pct_start=0.3, div_factor=25.0, final_div_factor=1e4), [
        0.004, 0.0349789654, 0.0879285159, 0.0994415435, 0.093301297, 0.0811745654,
        0.0647378998, 0.0462637103, 0.0283060998, 0.013347753, 0.0034566987, 4e-07]),
    # CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=3, mode='triangular').
    "cyclic": (dict(lr_min=0.01, step_size=3), [
        0.01, 0.04, 0.07, 0.1, 0.07, 0.04, 0.01, 0.04, 0.07, 0.1, 0.07, 0.04]),
}


def _hp(**kwargs):
  return {k: jnp.asarray(v, jnp.float32) for k, v in {"lr": 0.1, **kwargs}.items()}


@pytest.mark.parametrize("name", sorted(TORCH_REFERENCE))
def test_matches_pytorch(name):
  hparams, expected = TORCH_REFERENCE[name]
  fn = schedules.learning_rate_fn(name, _hp(**hparams), per="step", steps_per_epoch=1)
  got = [float(fn(t)) for t in range(len(expected))]
  np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-9)


def test_linear_with_floor_and_exp_decay_formulas():
  t = np.arange(20, dtype=np.float32)
  lin = schedules.learning_rate_fn("linear_floor", _hp(decay=0.01, lr_min=0.02), per="step",
                                   steps_per_epoch=1)
  np.testing.assert_allclose(jax.vmap(lin)(t), np.maximum(0.1 - 0.01 * t, 0.02), rtol=1e-6)
  exp = schedules.learning_rate_fn("exp_decay", _hp(decay=0.3), per="step", steps_per_epoch=1)
  np.testing.assert_allclose(jax.vmap(exp)(t), 0.1 * np.exp(-0.3 * t), rtol=1e-5)


def test_warmup_cosine_matches_optax():
  ours = schedules.learning_rate_fn("warmup_cosine", _hp(warmup=5, horizon=20, lr_min=0.001),
                                    per="step", steps_per_epoch=1)
  reference = optax.warmup_cosine_decay_schedule(0.0, 0.1, 5, 20, 0.001)
  for t in range(25):
    np.testing.assert_allclose(float(ours(t)), float(reference(t)), rtol=1e-5, atol=1e-8)


def test_per_epoch_holds_the_rate_within_an_epoch():
  fn = schedules.learning_rate_fn("exponential", _hp(gamma=0.5), per="epoch", steps_per_epoch=4)
  got = [float(fn(count)) for count in range(12)]
  assert got == pytest.approx([0.1] * 4 + [0.05] * 4 + [0.025] * 4)


def test_numbers_are_traced_not_baked():
  """Different members' numbers go through one vmapped function (no Python branching on them)."""
  hp = {"lr": jnp.array([0.1, 0.2]), "gamma": jnp.array([0.5, 0.9]), "step_size": jnp.array([1., 2.])}
  values = jax.jit(jax.vmap(lambda h: schedules.learning_rate_fn(
      "step", h, per="step", steps_per_epoch=1)(3)))(hp)
  np.testing.assert_allclose(values, [0.1 * 0.5 ** 3, 0.2 * 0.9 ** 1], rtol=1e-6)


def test_unknown_names_fail_with_the_known_ones():
  with pytest.raises(ValueError, match="schedule: unknown 'bogus'; known: .*cosine"):
    schedules.learning_rate_fn("bogus", _hp(), per="epoch", steps_per_epoch=1)
  with pytest.raises(ValueError, match="schedule_per"):
    schedules.learning_rate_fn("constant", _hp(), per="minute", steps_per_epoch=1)
