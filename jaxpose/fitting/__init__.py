"""Personalized 3D human pose and shape refinement (renders -> displacement CNN -> dense SMPLify).

Reserved for that system; nothing is implemented here yet. Its design is in docs/fitting.md; it will be
built on `jaxpose.optim` (per-sample optimisation) and `jaxpose.render`.
"""
