"""Pure functions of the physics, one module each: arrays in, arrays out, units and shapes
in the docstrings; no configuration, no I/O."""
