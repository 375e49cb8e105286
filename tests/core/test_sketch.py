"""Percentiles of counted values: the one implementation the perplexity cut points, the
classifier bands and the report's rule values read."""

import numpy as np

from pipeline.core.sketch import values_at


def test_values_at_give_numpys_lower_percentile_of_the_expanded_values():
    rng = np.random.default_rng(3)
    values = np.sort(rng.choice([0.0, 0.5, 1.25, 3.0, 40.0], size=997))
    counted = [(float(v), int(n)) for v, n in zip(*np.unique(values, return_counts=True))]
    percentiles = (0.0, 10.0, 50.0, 90.0, 100.0)
    assert values_at(counted, percentiles) == [float(np.percentile(values, p, method="lower")) for p in percentiles]
    assert values_at([(0.0, 5), (2.0, 1)], (50.0, 100.0)) == [0.0, 2.0]  # zero is a value like any other
