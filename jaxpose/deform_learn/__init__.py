"""Deform-and-learn: body shape and pose from dense correspondences, registration alternated with a ConvNet.

Reserved for that system; nothing is implemented here yet. Its design is in docs/deform_learn.md; it will
be built on `jaxpose.optim` and shares the fitting terms and synthetic renders of `jaxpose.fitting`.
"""
