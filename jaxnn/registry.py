"""A name -> factory table with one-line errors.

Every pluggable piece (losses, optimizers, schedules, models, strategies...) is looked up by name
so configs stay plain strings; an unknown name must fail at the door with the list of known ones.
"""

from __future__ import annotations

from typing import Generic, Iterator, Mapping, TypeVar

T = TypeVar("T")


class Registry(Generic[T], Mapping[str, T]):
  """An immutable mapping whose lookups fail with a message naming the field and the choices."""

  def __init__(self, field: str, entries: Mapping[str, T]):
    self.field = field
    self._entries = dict(entries)

  def get(self, name: str) -> T:  # type: ignore[override]
    try:
      return self._entries[name]
    except (KeyError, TypeError):
      raise ValueError(
          f"{self.field}: unknown {name!r}; known: {', '.join(sorted(self._entries))}") from None

  def check(self, name: str) -> str:
    """Returns `name` if registered, else raises the one-line ValueError."""
    self.get(name)
    return name

  def __getitem__(self, name: str) -> T:
    return self.get(name)

  def __contains__(self, name: object) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self._entries)

  def __len__(self) -> int:
    return len(self._entries)
