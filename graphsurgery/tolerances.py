"""Tolerances, in one place (a bottom module: the command line reads its defaults from here
without importing the comparator). An element is within tolerance when

    |actual - expected| <= atol + rtol * scale + noise

where ``scale`` is the output's largest finite magnitude in the expected values: relative to
the output's scale, not to each element, since kernels (and batched against single runs)
legitimately round near-zero elements differently in relative terms; ``noise`` is the
reference's own measured disagreement with itself, so a change is not blamed for it.
:mod:`graphsurgery.verify` applies them."""

#: the same computation on the same runner (--verify, repair sessions, convert-opset's check)
RTOL, ATOL = 1e-5, 1e-6
#: different backends or optimizer settings (``graphsurgery debug``, :func:`graphsurgery.debug.compare`)
ACROSS_BACKENDS_RTOL, ACROSS_BACKENDS_ATOL = 1e-4, 1e-5
