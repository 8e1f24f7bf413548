"""Pipelines that chain the stages: the demo (generate → train → export → publish → evaluate)
and its HTML report."""
