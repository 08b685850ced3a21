"""Physical constants of the Fokker-Planck family, shared by its numpy and torch solvers."""

K_B = 1.380649e-23  # Boltzmann constant, J/K
FP_TEMPERATURE = 300.0  # K
FP_AMPLITUDE = 5e-21  # J, potential U = c cos(x / L)
FP_LENGTH_UM = 0.1  # L in micrometres
FP_RADIUS = 1e-7  # particle radius, m
