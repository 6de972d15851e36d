"""Diffusion models (posts 9119, 9152, 9164, 9181, 9209, 9228, 9245, 9246).

Notation (NOTATION.md): DDPM's. abar[t] = ᾱ_t = ∏_{i≤t}(1 − β_i) for t = 0..N with abar[0] = 1, so
x_t = √ᾱ_t·x0 + √β̄_t·ε with β̄_t = 1 − ᾱ_t. Su's blog writes ᾱ_t for √ᾱ_t (his ᾱ_t² + β̄_t² = 1), and the
DDIM paper writes α_t for ᾱ_t. Timesteps are 1-based: t = 1..N are noisy, t = 0 is the data.

Modules: schedules (ᾱ and trajectories), ddpm (forward process, posterior, L_simple, the ε-model),
ddim (the reverse-step family and its samplers, inversion), dpm_solver (DPM-Solver++(2M)), analytic
(Analytic-DPM: ms_eps, optimal variance, optimal trajectory), extended (NPR-/SN-DPM heads), likelihood (the
discrete-decoder ELBO along a trajectory), sde (VP / sub-VP / VE SDEs, Euler–Maruyama, predictor–corrector,
probability-flow ODE), ode_likelihood (exact NLL through the PF-ODE), oracle (closed-form ε* for
Gaussian-mixture data).
"""
