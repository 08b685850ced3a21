"""Tests of the physics-informed subsystem (lemon_pl.pinn)."""
