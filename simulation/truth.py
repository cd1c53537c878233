"""The ground truth of the simulated world, and the only names it goes by.

These columns exist only on the simulator's side of the wall: the world draws them, keeps
them in its own folder (``simulation/world.py``) and grades the system with them
(``simulation/grading.py``). No module of the production path knows these names; the import
contract in ``.importlinter`` and the blind test (``tests/integration/test_blind.py``) keep
it so.
"""

from __future__ import annotations

TRUE_UTILITY = "true_utility"  # the utility the user felt: expected utility plus region noise
# Ground-truth grade 0-4 from fixed cut-points of true_utility: the gain for NDCG on the truth.
TRUE_RELEVANCE = "true_relevance"
# The utility without the noise no feature can explain: what a model that knew every latent
# could predict. Ranking by it is the honest oracle (the noisy one knows the dice).
EXPECTED_UTILITY = "expected_utility"
IMPRESSION_TRUTH = (TRUE_UTILITY, TRUE_RELEVANCE, EXPECTED_UTILITY)
LATENT_PREFIX = "latent_"


def is_truth_column(name: str) -> bool:
    """Whether ``name`` is one of the world's ground-truth columns (the blind test's rule)."""
    return name in IMPRESSION_TRUTH or name.startswith(LATENT_PREFIX)
