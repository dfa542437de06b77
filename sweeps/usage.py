"""`--help` of the sweep entry points, written from the option table and the registries.

Every list of names here (models, optimizers, schedules, activations, initializers, strategies,
samplers, data sets, member fields) is read from the registry that resolves those names, so the
help cannot go stale when an entry is added.
"""

from __future__ import annotations

import textwrap

from sweeps import config as config_lib

_GROUPS = ("sweep", "data", "output", "checkpoints", "device")


def registry_names() -> dict[str, list[str]]:
  """What each registry knows, by the space field (or flag) that takes its names."""
  from jaxnn import activations, initializers, member, models, optim, schedules
  from jaxnn.data import registry as data_registry
  from sweeps import strategies
  return {
      "model": list(models.list_models()),
      "optimizer": sorted(optim.OPTIMIZERS),
      "schedule": sorted(schedules.SCHEDULES),
      "activation": sorted(activations.ACTIVATIONS),
      "kernel_init": sorted(initializers.KERNEL_INITS),
      "bias_init": sorted(initializers.BIAS_INITS),
      "--strategy": sorted(strategies.STRATEGIES),
      "--dataset": data_registry.list_datasets() + ["folder:PATH", "any tfds name"],
      "space fields": sorted(member.known_fields()),
  }


def _wrap(text: str, indent: int) -> str:
  return textwrap.fill(text, width=100, initial_indent=" " * indent,
                       subsequent_indent=" " * indent)


def option_lines(default_dataset: str | None = None) -> list[str]:
  lines = []
  for group in _GROUPS:
    options = [o for o in config_lib.OPTIONS if o.group == group]
    if not options:
      continue
    lines.append(f"{group} flags:")
    for o in options:
      default = default_dataset if o.name == "dataset" and default_dataset else o.default
      shown = ("--[no]" + o.name) if o.type is bool else f"--{o.name}"
      extra = [f"default: {default!r}"]
      allowed = o.allowed()
      if allowed is not None:
        extra.append("one of: " + ", ".join(allowed))
      elif o.low is not None or o.high is not None:
        extra.append(o.describe())
      if o.multi:
        extra.append("repeatable")
      if o.search:
        extra.append("kept on resume")
      lines.append(f"  {shown}")
      lines.append(_wrap(f"{o.help} ({'; '.join(extra)})", 6))
  return lines


def help_text(doc: str | None, default_dataset: str | None = None) -> str:
  """The whole `--help`: the entry point's docstring, our flags, the space syntax, the names."""
  from sweeps import space as space_lib
  parts = [(doc or "").strip(), ""] + option_lines(default_dataset)
  parts += ["", "search space (--space):"]
  parts += ["  " + line if line else "" for line in (space_lib.__doc__ or "").strip().splitlines()]
  parts += ["", "names known to the registries:"]
  for field, names in registry_names().items():
    parts.append(_wrap(f"{field}: {', '.join(names)}", 2))
  parts += ["", "Flags of the libraries (absl, jax): --helpfull."]
  return "\n".join(parts)
