"""Launchers: a population's members spread over every device and host (no training logic).

`mesh` places populations and data with JAX's sharding; `multihost` joins processes into one
runtime and says which one writes files.
"""

from launch.mesh import MEMBERS, member_mesh, place_data, place_population, population_sharding
from launch.multihost import initialize_from_env, is_primary, to_host

__all__ = ["MEMBERS", "member_mesh", "place_data", "place_population", "population_sharding",
           "initialize_from_env", "is_primary", "to_host"]
