"""Small-sample statistics (reports, analysis): mean, standard deviation and Student-t 95 % intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass

# two-sided 95 % quantiles of Student's t for 1 … 30 degrees of freedom
_T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def t975(dof: int) -> float:
    if dof < 1:
        return math.nan
    return _T975[dof - 1] if dof <= len(_T975) else 1.96 + 2.4 / dof  # close to the exact value beyond 30


@dataclass
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (n - 1); 0 for one value
    low: float  # 95 % confidence interval of the mean (nan with one value)
    high: float

    def to_json(self) -> dict:
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {"n": self.n, "mean": self.mean, "std": self.std, "ci95": [clean(self.low), clean(self.high)]}


def summarize(values: list[float]) -> Summary:
    n = len(values)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = t975(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return Summary(n, mean, std, mean - half, mean + half)


def paired_difference(a: list[float], b: list[float]) -> Summary:
    """Summary of a − b over paired values (the same seeds): the interval of the mean gain."""
    if len(a) != len(b):
        raise ValueError("paired values need the same length")
    return summarize([x - y for x, y in zip(a, b, strict=True)])
