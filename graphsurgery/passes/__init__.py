"""Composable passes over the editing API. See :mod:`graphsurgery.passes.registry` for the list."""

from .base import Option, Pass, PassError, PassResult, RulePass
from .pipeline import Pipeline, PipelineResult, parse, run
from .registry import PASSES, create, describe_all

__all__ = ["Option", "PASSES", "Pass", "PassError", "PassResult", "Pipeline", "PipelineResult", "RulePass",
           "create", "describe_all", "parse", "run"]
