"""How close two numbers must be: a tolerance relative to the gold's magnitude, not math-verify's absolute one.

math-verify compares a float by rounding both sides to ``float_rounding`` decimals (6 by default) and an exact
number by ``(gold - pred).evalf(n=numeric_precision, chop=True)``, which chops anything below about
``10**-numeric_precision`` (15 by default) to zero. Both are absolute: ``0.0000014`` and ``0.000001`` round to the
same 6 decimals, and ``1/2**99 - 1/2**98`` is chopped to 0. math-verify's documentation says to raise the
precision for small values; ``verify_precision`` does that from the gold's smallest non-zero magnitude ``m``:
with ``k = max(0, -floor(log10 m) - 1)`` extra digits, floats are rounded at ``6 + k`` decimals (about six
significant digits for golds below 0.1; math-verify's own 6 decimals for larger ones) and exact values are
evaluated at ``15 + k`` digits. Integers and fractions still compare exactly; big numbers are unchanged.

Before math-verify is asked, two single numbers whose relative difference exceeds ``RELATIVE_GAP`` (1e-5) are
different (``differ_relatively``): this needs no precision setting, so it also holds far below 1e-1000
(``1/2004!`` against ``1/2006!``). It never rejects a pair math-verify's rounding would accept (that rounding keeps
about six significant digits, a relative gap under 5e-6). Percentages are left to math-verify (it equates 28% and 28).
"""

from __future__ import annotations

FLOAT_ROUNDING = 6  # math-verify's default: decimals kept when a float is compared
NUMERIC_PRECISION = 15  # math-verify's default: digits of an exact difference evaluated before chopping
MAX_EXTRA_DIGITS = 1000  # bounds the evalf work; beyond it ``differ_relatively`` still separates values
RELATIVE_GAP = 1e-5  # single numbers further apart than this (relative) differ, whatever their magnitude


def smallest_exponent(expr) -> int | None:
    """``floor(log10 |v|)`` of the smallest non-zero value ``v`` among the numbers that make up a parsed gold (its
    numeric sub-expressions, set and tuple elements, interval ends, matrix entries, sides of an equation); None
    when there is none. Exact even where a float would underflow (``10^{-400}``)."""
    import mpmath
    from sympy import Abs, Basic
    from sympy.matrices import MatrixBase

    found: list[int] = []
    stack, seen = [expr], 0
    while stack and seen < 1000:  # a gold is small; the cap bounds a pathological one
        node = stack.pop()
        seen += 1
        if isinstance(node, MatrixBase):
            stack.extend(node)
        elif isinstance(node, Basic):
            if node.is_number:
                try:
                    value = mpmath.mpf(Abs(node).evalf(30))
                except (TypeError, ValueError, OverflowError, ZeroDivisionError):
                    continue
                if value > 0 and mpmath.isfinite(value):
                    found.append(int(mpmath.floor(mpmath.log10(value))))
            else:
                stack.extend(node.args)
    return min(found) if found else None


def verify_precision(gold) -> tuple[int, int]:
    """``(float_rounding, numeric_precision)`` for math-verify's ``verify``, scaled to the gold (module docstring)."""
    exponent = smallest_exponent(gold)
    extra = 0 if exponent is None else min(MAX_EXTRA_DIGITS, max(0, -exponent - 1))
    return FLOAT_ROUNDING + extra, NUMERIC_PRECISION + extra


def differ_relatively(gold, pred) -> bool:
    """True when ``gold`` and ``pred`` are both single numbers (no symbols, sets or relations; not percentages) and
    ``|gold - pred| > RELATIVE_GAP * max(|gold|, |pred|)``, evaluated at 30 significant digits."""
    from sympy import Abs, Basic, UnevaluatedExpr

    if not (isinstance(gold, Basic) and isinstance(pred, Basic) and gold.is_number and pred.is_number):
        return False
    if gold.has(UnevaluatedExpr) or pred.has(UnevaluatedExpr):  # percentages: 28% == 28 is math-verify's rule
        return False
    try:
        g, p = gold.evalf(30), pred.evalf(30)
        gap, scale = Abs(g - p), max(Abs(g), Abs(p))
        return bool(scale.is_finite and gap.is_finite and gap > RELATIVE_GAP * scale)
    except (TypeError, ValueError, ArithmeticError):
        return False
