"""The exact tests against a base rate, with p-values worked out by hand."""

import math

import pytest

from r1lit.eval.base_rate import binomial_sf, compare_to_base, fisher_greater


def test_binomial_tail_by_hand():
    # P(X >= 2), X ~ Bin(4, 1/2) = (C(4,2) + C(4,3) + C(4,4)) / 16 = (6 + 4 + 1) / 16
    assert binomial_sf(2, 4, 0.5) == pytest.approx(11 / 16, rel=1e-12)
    # P(X >= 3), X ~ Bin(3, 0.1) = 0.001
    assert binomial_sf(3, 3, 0.1) == pytest.approx(1e-3, rel=1e-9)
    assert binomial_sf(0, 5, 0.3) == 1.0 and binomial_sf(6, 5, 0.3) == 0.0 and binomial_sf(1, 5, 0.0) == 0.0


def test_the_chance_of_one_sighting_in_300_samples_at_half_a_percent():
    """1 - 0.995^300 = 1 - e^(300 ln 0.995) = 1 - e^(-1.50376) = 0.7777: the 78 % of the issue."""
    assert binomial_sf(1, 300, 0.005) == pytest.approx(1 - 0.995 ** 300, rel=1e-12)
    assert round(binomial_sf(1, 300, 0.005), 3) == 0.778


def test_fisher_by_hand():
    # base 0/4, now 3/4: N = 8, K = 3 hits in all; P(X >= 3) = C(3,3) C(5,1) / C(8,4) = 5/70
    assert fisher_greater(3, 4, 0, 4) == pytest.approx(5 / 70, rel=1e-12)
    # base 1/3, now 2/3: N = 6, K = 3; P(X >= 2) = (C(3,2) C(3,1) + C(3,3) C(3,0)) / C(6,3) = (9 + 1) / 20
    assert fisher_greater(2, 3, 1, 3) == pytest.approx(0.5, rel=1e-12)
    # base 1/10, now 5/10: N = 20, K = 6; P(X >= 5) = (C(6,5) C(14,5) + C(6,6) C(14,4)) / C(20,10)
    expected = (6 * math.comb(14, 5) + math.comb(14, 4)) / math.comb(20, 10)  # (12012 + 1001) / 184756
    assert fisher_greater(5, 10, 1, 10) == pytest.approx(expected, rel=1e-12)
    assert fisher_greater(0, 10, 3, 10) == 1.0
    with pytest.raises(ValueError):
        fisher_greater(5, 4, 0, 4)


def test_the_report_sentence():
    rose = compare_to_base("reflection", 30, 1000, 1, 500)
    assert rose.rose and rose.sentence().startswith("reflection rose from 0.2% to 3.0% (p = ")
    flat = compare_to_base("reflection", 2, 1000, 1, 500)
    assert not flat.rose and "no rise detectable" in flat.sentence()
    # the same rates in samples ten times smaller: a rise that the test cannot tell from chance
    # K = 3: P(X >= 3) = C(3,3) C(147,97) / C(150,100) = (100 · 99 · 98) / (150 · 149 · 148) = 0.294
    small = compare_to_base("reflection", 3, 100, 0, 50)
    assert not small.rose and small.p_value == pytest.approx(100 * 99 * 98 / (150 * 149 * 148), rel=1e-9)
