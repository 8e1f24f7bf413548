"""The component physics the classical baselines, their tests and their benchmark use,
imported in ONE place: when the physics moves out of ``data_gen.components`` (into
``data_gen.physics.*``), only this import block changes."""

from data_gen.components import (
    add_fog,
    blur_image,
    check_depth,
    coc_radius_px,
    composite_layers,
    defocus_layers,
    depth_from_disparity,
    disc_kernel,
    draw_fog,
    draw_relight,
    gain_map,
    relight,
    remove_fog,
    shake_trajectory,
    trajectory_kernel,
    transmission,
)
from data_gen.sources import linear_to_srgb, srgb_to_linear

__all__ = [
    "add_fog",
    "blur_image",
    "check_depth",
    "coc_radius_px",
    "composite_layers",
    "defocus_layers",
    "depth_from_disparity",
    "disc_kernel",
    "draw_fog",
    "draw_relight",
    "gain_map",
    "linear_to_srgb",
    "relight",
    "remove_fog",
    "shake_trajectory",
    "srgb_to_linear",
    "trajectory_kernel",
    "transmission",
]
