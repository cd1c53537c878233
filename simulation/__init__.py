"""The simulated world outside the system: the marketplace, its users, their clicks, the
traffic, the drift scenarios, the A/B users, and the graders that read its ground truth.

Nothing in the production path (features, models, serving, monitoring, pipelines) imports
it: `.importlinter` checks so in `make lint`.
"""
