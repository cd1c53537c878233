"""The A/B readout: is the challenger better than the champion, on users?

A module per idea: ``exposures`` (a row per served request, joined to its clicks),
``power`` (how many sessions before starting), ``readout`` (metric per arm, lift, sample
ratio mismatch, guardrails, the decision), ``cuped`` (variance reduction with pre-experiment
activity), ``interleaving`` (team-draft, the more sensitive second method), ``report``
(markdown, HTML, the cumulative lift plot, logged to MLflow) and ``commands`` (what
``ranklab abtest ...`` runs). Experiments on simulated users live with the world, in
``simulation/abtest.py``.
"""
