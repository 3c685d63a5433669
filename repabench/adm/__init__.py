"""ADM-exact evaluation: the 2015 Inception-v3 (`inception`), ADM's statistics (`metrics`), image sets
(`images`), streaming features (`features`) and the stages reference_stats / evaluate / collect_metrics."""

from repabench.adm.stages import collect_main, evaluate_main, reference_stats_main

__all__ = ["collect_main", "evaluate_main", "reference_stats_main"]
