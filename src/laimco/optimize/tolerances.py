"""Every numerical tolerance of the joint design, one name per meaning (docs/theory.md §4.4).

Relative tolerances are fractions of the quantity compared; absolute ones carry their unit
in the name or the comment."""

from __future__ import annotations

# A decision breaks a limit only when it uses more than (1 + LIMIT_TOL) of it: costs are
# recomputed from the system model through a few roundings of the solver's 1e-13 roots.
LIMIT_TOL = 1e-9

# A limit binds (is "active") when a decision uses at least (1 − ACTIVE_TOL) of it; also what
# "equal objectives" means when strategies are compared (the solver's tolerance, §4.4).
ACTIVE_TOL = 1e-6

# Objectives within TIE_TOL (relative) of the least are tied; the tie-break then applies
# (least device energy, then the lowest split and the first rule pair: §4.3).
TIE_TOL = 1e-12

# A value recomputed through a few float operations may cross its bound by this much
# (relative) and still count as on it: ρ ≤ ρ_max, a capacity meeting its need, a time
# within what the server leaves, the energy left after the fastest upload.
ROUNDING_TOL = 1e-12

# A ratio at most this far (absolute) below its memory floor still counts as on the floor.
RATIO_FLOOR_TOL = 1e-15

# A capacity may fall short of the cycles it must hold by this many cycles (absolute): a
# billionth of a cycle, far below any real count, absorbs the rounding of C*(T) at C ≈ 0.
CYCLES_ABS_TOL = 1e-9

# Relative accuracy of the ratio searches along the capacity curve (eq. 4.11, 4.16).
SEARCH_REL_TOL = 1e-13

# Absolute floor of the joint search's accuracy, as a fraction of the largest device time:
# near the junction x = 0 a purely relative tolerance would ask for ever smaller steps.
SEARCH_ABS_TOL_PER_TIME = 1e-18

# Relative accuracy of a capacity at a given time (the curve parameter of T(x) = T).
CAPACITY_REL_TOL = 1e-15

# Relative accuracy of the operating point's upload time (§4.5): the energy is at its minimum
# there, so the error costs O(1e-24) relative energy.
OPERATING_POINT_REL_TOL = 1e-12

# Not a tolerance: the least positive scale used as a divisor floor, so that 0/0 reads as 0
# and a zero objective still has a (tiny) relative tie band.
TINY = 1e-300
